"""How the tests find ../shared/data: one helper, PNEUMOVIEW_TEST_DATA, the shared_data marker.

``.ci/run`` runs the tests marked ``shared_data`` a second time with the data hidden; that pass
only means something if hiding works and no test looks at the data unmarked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import shared_data

TESTS = Path(__file__).resolve().parent

INNER = textwrap.dedent('''
    import pytest
    from tests.support.shared_data import chest_dicoms

    @pytest.mark.shared_data("dicom")
    def test_needs_dicom():
        assert chest_dicoms(), "ran, with the dicom folder"

    @pytest.mark.shared_data
    def test_either_way(shared_data):
        print("DATA", shared_data)

    def test_fixture_implies_the_marker(shared_data):
        pass

    def test_unmarked_lookup():
        chest_dicoms()

    def test_unrelated():
        pass
''')


@pytest.mark.shared_data  # looks the folder up (under several values of the variable)
def test_env_var_hides_or_replaces_the_folder(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setenv(shared_data.ENV_VAR, "none")
    assert shared_data.shared_data_dir() is None
    assert shared_data.shared_path("dicom") is None and shared_data.chest_dicoms() == []
    assert "PNEUMOVIEW_TEST_DATA=none" in shared_data.absent_reason("dicom")
    monkeypatch.setenv(shared_data.ENV_VAR, "NONE ")
    assert shared_data.shared_data_dir() is None
    (tmp_path / "dicom").mkdir()
    (tmp_path / "dicom" / "a.dcm").write_bytes(b"")
    monkeypatch.setenv(shared_data.ENV_VAR, str(tmp_path))
    assert shared_data.shared_data_dir() == tmp_path
    assert shared_data.chest_dicoms() == [tmp_path / "dicom" / "a.dcm"]
    assert shared_data.shared_path("kermany") is None
    monkeypatch.setenv(shared_data.ENV_VAR, str(tmp_path / "missing"))
    assert shared_data.shared_data_dir() is None
    monkeypatch.delenv(shared_data.ENV_VAR)
    expected = shared_data.DEFAULT if shared_data.DEFAULT.is_dir() else None
    assert shared_data.shared_data_dir() == expected
    assert shared_data.DEFAULT == TESTS.parent.parent / "shared" / "data"


def _run_inner(tmp_path: Path, data: str, *args: str) -> str:
    """Run INNER under this directory's conftest in a fresh pytest, data set to ``data``."""
    root = tmp_path / f"inner-{len(list(tmp_path.iterdir()))}"
    root.mkdir()
    shutil.copy(TESTS / "conftest.py", root / "conftest.py")
    (root / "test_inner.py").write_text(INNER)
    path = os.pathsep.join(p for p in (str(TESTS.parent), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, shared_data.ENV_VAR: data, "QT_QPA_PLATFORM": "offscreen",
           "PYTHONPATH": path}
    done = subprocess.run([sys.executable, "-m", "pytest", "-rA", "-s", "-p", "no:cacheprovider",
                           "-o", "addopts=", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    return done.stdout + done.stderr


@pytest.mark.slow
def test_marker_skips_hidden_data_and_unmarked_lookups_fail(tmp_path: Path) -> None:
    hidden = _run_inner(tmp_path, "none")
    assert "SKIPPED" in hidden and "shared data hidden (PNEUMOVIEW_TEST_DATA=none): needs dicom" \
        in hidden, hidden
    assert "DATA None" in hidden
    assert "test_unmarked_lookup looks for the shared data" in hidden, hidden
    assert "1 failed, 3 passed, 1 skipped" in hidden, hidden

    # the second CI pass: marked tests only (the fixture marks a test by itself)
    marked = _run_inner(tmp_path, "none", "-m", "shared_data")
    assert "2 passed, 1 skipped, 2 deselected" in marked, marked

    # with a data folder the marked test runs, and sees that folder
    data = tmp_path / "data"
    (data / "dicom").mkdir(parents=True)
    (data / "dicom" / "x.dcm").write_bytes(b"")
    present = _run_inner(tmp_path, str(data), "-m", "shared_data")
    assert f"DATA {data}" in present and "3 passed, 2 deselected" in present, present
