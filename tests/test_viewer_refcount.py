"""PySide6 6.12 on Python 3.11 leaks references to None/True/False; the package guards them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("PySide6")

CALLS = r"""
import sys
{prelude}
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QLabel, QTreeWidgetItem
app = QApplication([])
label, item = QLabel(), QTreeWidgetItem()


class S(QObject):
    sig = Signal(object)


s = S()
for i in range(30000):  # each kind alone would exhaust None's or True's count on 3.11
    label.setText("x")
    item.setData(0, Qt.ItemDataRole.UserRole, i)
    s.sig.emit(i)
print("survived")
"""


def _run(prelude: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, "-c", CALLS.format(prelude=prelude)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_many_void_qt_calls_survive_with_the_package_imported():
    done = _run("import pneumoview.qt")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "survived" in done.stdout


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None/True/False are immortal on 3.12+")
def test_the_guard_is_what_makes_the_difference():
    """Without the guard the same calls abort (documents why the guard exists; if a fixed
    PySide6 is installed this test fails and the guard can go)."""
    done = _run("")
    assert done.returncode != 0 and "dealloc" in done.stderr
