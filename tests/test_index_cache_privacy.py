"""The index cache with hostile names and its privacy (issues 13.1 cache/GUI part and 13.16).

Before: a file name that is not valid UTF-8 made SQLite reject it (UnicodeEncodeError out of
``index_folder``: the viewer refused the whole folder); the cache (patient names, IDs, birth
dates) was created readable by every local user, never purged, and kept showing the old names
after an in-place anonymisation that kept size and mtime; nothing could clear it.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pneumoview.core import indexcache
from pneumoview.core.indexcache import IndexCache
from pneumoview.core.indexer import index_folder
from tests.support.dicom_factory import make_dataset, save

BAD_NAME = b"bad\xff\xfe.dcm"
needs_bytes_names = pytest.mark.skipif(sys.platform in ("win32", "darwin"),
                                       reason="needs a file system that takes any bytes")


def _image(path: Path | str, name: str = "Secret^Person", pid: str = "PID-4711") -> None:
    save(make_dataset(np.arange(64, dtype=np.uint16).reshape(8, 8), PatientName=name,
                      PatientID=pid), path)


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    root = tmp_path / "studies"
    root.mkdir()
    _image(root / "good1.dcm", "Good^One", "G1")
    _image(os.fsdecode(os.fsencode(str(root)) + b"/" + BAD_NAME), "Bad^Name", "B1")
    _image(root / "good2.dcm", "Good^Two", "G2")
    return root


@needs_bytes_names
def test_non_utf8_name_is_indexed_and_cached(bad_folder, tmp_path):
    cache_path = tmp_path / "cache" / "index.sqlite3"
    with IndexCache(cache_path) as cache:
        first = index_folder(bad_folder, cache=cache)
        second = index_folder(bad_folder, cache=cache)
    assert len(first.instances) == 3 and not first.errors
    assert second.headers_read == 0 and second.from_cache == 3
    bad = next(i for i in second.instances if i.patient_id == "B1")
    assert os.fsencode(bad.path).endswith(b"/" + BAD_NAME)  # exactly the OS's bytes
    assert os.path.isfile(bad.path)


def test_cache_is_private_whatever_the_umask(tmp_path, bad_folder):
    cache_path = tmp_path / "new" / "deeper" / "index-cache.sqlite3"
    old = os.umask(0o000)
    try:
        with IndexCache(cache_path) as cache:
            index_folder(bad_folder, cache=cache)
    finally:
        os.umask(old)
    assert stat.S_IMODE(cache_path.stat().st_mode) == 0o600
    for folder in (cache_path.parent, cache_path.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_an_existing_world_readable_cache_is_tightened(tmp_path, bad_folder):
    cache_path = tmp_path / "c" / "index-cache.sqlite3"
    with IndexCache(cache_path) as cache:
        index_folder(bad_folder, cache=cache)
    os.chmod(cache_path, 0o644)
    os.chmod(cache_path.parent, 0o755)
    with IndexCache(cache_path):
        pass
    assert stat.S_IMODE(cache_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache_path.parent.stat().st_mode) == 0o700


def test_in_place_rewrite_with_same_size_and_mtime_is_detected(tmp_path):
    root = tmp_path / "f"
    root.mkdir()
    target = root / "a.dcm"
    _image(target, "Secret^Person")
    cache_path = tmp_path / "index.sqlite3"
    with IndexCache(cache_path) as cache:
        first = index_folder(root, cache=cache)
    assert first.instances[0].patient_name == "Secret^Person"
    st = target.stat()
    data = target.read_bytes()
    assert data.count(b"Secret^Person") == 1
    with open(target, "r+b") as fh:  # anonymise in place: same length, then restore the mtime
        fh.write(data.replace(b"Secret^Person", b"Anonymous^XX"[:13].ljust(13, b" ")))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    with IndexCache(cache_path) as cache:
        second = index_folder(root, cache=cache)
    assert second.headers_read == 1
    assert second.instances[0].patient_name == "Anonymous^XX"


def test_entries_of_files_gone_long_ago_are_purged(tmp_path):
    keep, gone = tmp_path / "keep", tmp_path / "gone"
    for folder in (keep, gone):
        folder.mkdir()
        _image(folder / "x.dcm")
    cache_path = tmp_path / "index.sqlite3"
    with IndexCache(cache_path) as cache:
        index_folder(keep, cache=cache)
        index_folder(gone, cache=cache)
    for p in gone.iterdir():  # the folder is deleted and never opened again
        p.unlink()
    gone.rmdir()
    con = sqlite3.connect(cache_path)
    old = indexcache._today() - indexcache.PURGE_AFTER_DAYS - 1
    con.execute("UPDATE entries SET seen = ?", (old,))
    con.execute("UPDATE meta SET value = '0' WHERE key = 'purged'")
    con.commit()
    con.close()
    with IndexCache(cache_path) as cache:
        assert cache.stats()["entries"] == 0  # all unseen for 30+ days
        index_folder(keep, cache=cache)
        assert cache.stats()["entries"] == 1


def test_forgotten_and_cleared_entries_leave_no_patient_data_in_the_file(tmp_path):
    root = tmp_path / "f"
    root.mkdir()
    for i in range(30):
        _image(root / f"{i:02d}.dcm", f"Secret^Person{i:02d}", f"PID-{i:04d}")
    cache_path = tmp_path / "index.sqlite3"
    with IndexCache(cache_path) as cache:
        index_folder(root, cache=cache)
        assert b"Secret^Person07" in cache_path.read_bytes()
        for i in range(0, 30, 2):  # deleted files: their entries are forgotten on reopen
            (root / f"{i:02d}.dcm").unlink()
        index_folder(root, cache=cache)
        data = cache_path.read_bytes()
        assert b"Secret^Person07" in data
        assert b"Secret^Person08" not in data and b"PID-0008" not in data  # zeroed, not freed
        cache.clear()
    assert b"Secret^Person" not in cache_path.read_bytes()
    assert b"PID-00" not in cache_path.read_bytes()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pneumoview", *args], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ))


def test_cache_info_and_clear_commands(tmp_path, monkeypatch, bad_folder):
    monkeypatch.setenv("PNEUMOVIEW_CACHE_DIR", str(tmp_path / "usercache"))
    index_folder(bad_folder)  # the default per-user cache
    cache_file = tmp_path / "usercache" / indexcache.DEFAULT_FILENAME
    assert cache_file.is_file()
    info = _cli("cache", "info")
    assert info.returncode == 0, info.stderr
    assert str(cache_file) in info.stdout and "mode 0600" in info.stdout
    assert "3 file(s)" in info.stdout and "patient name" in info.stdout
    assert "Secret" not in info.stdout and "Bad^Name" not in info.stdout
    cleared = _cli("cache", "clear")
    assert cleared.returncode == 0, cleared.stderr
    assert "3 entries" in cleared.stdout and not cache_file.exists()
    again = _cli("cache", "clear")
    assert again.returncode == 0 and "nothing to clear" in again.stdout


# --------------------------------------------------------------------------------------------
# The viewer
# --------------------------------------------------------------------------------------------
@pytest.fixture
def window(qtbot):
    from pneumoview.qt.mainwindow import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    yield win
    win.shutdown()


@needs_bytes_names
def test_viewer_opens_a_folder_with_a_non_utf8_name(window, qtbot, bad_folder):
    from pneumoview.qt.studytree import NAME

    with qtbot.waitSignal(window.indexFinished, timeout=60_000) as blocker:
        window.open_folder(str(bad_folder))
    result = blocker.args[0]
    assert len(result.instances) == 3 and not result.errors
    assert window.tree.instance_count() == 3
    bad = next(i for i in result.instances if i.patient_id == "B1")
    item = window.tree.instance_item(bad.path)
    assert item is not None
    assert "bad\\xff\\xfe.dcm" in item.toolTip(NAME)  # shown escaped, not as "bad.dcm"
    with qtbot.waitSignal(window.imageShown, timeout=60_000) as shown:
        window.tree.select_instance(bad.path)
    assert shown.args[0].path == bad.path  # and it opens


def test_viewer_clear_cache_action(window, qtbot, tmp_path, monkeypatch, bad_folder):
    monkeypatch.setenv("PNEUMOVIEW_CACHE_DIR", str(tmp_path / "usercache"))
    with qtbot.waitSignal(window.indexFinished, timeout=60_000):
        window.open_folder(str(bad_folder))
    cache_file = tmp_path / "usercache" / indexcache.DEFAULT_FILENAME
    assert cache_file.is_file()
    action = next(a for a in window.menuBar().actions()[0].menu().actions()
                  if "Clear" in a.text() and "Cache" in a.text())
    action.trigger()
    assert not cache_file.exists()
    assert "index cache cleared" in window.statusBar().currentMessage()


def test_cache_command_imports_neither_qt_nor_torch():
    code = ("import sys; from pneumoview.cli import main; rc = main(['cache', 'info']); "
            "assert rc == 0; assert 'PySide6' not in sys.modules, 'Qt'; "
            "assert 'torch' not in sys.modules, 'torch'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
