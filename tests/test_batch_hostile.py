"""The batch engine on hostile folders and outputs (issue 13, items 1, 5, 8, 9, 11, 13; issue 12
item 2's summary): names the OS gives that are not text, special files, folders that cannot be
listed, error rows retried, outputs that are FIFOs or symlinks, a second run on one report."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from batch_support import build_small_folder, rows_by_relpath

from pneumoview.core import report as rep
from pneumoview.core.batch import BatchOptions, run_batch
from pneumoview.core.errors import PneumoViewError

BAD_NAME = os.fsdecode(b"bad\xff\xfe.dcm")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from tests.support.model_fixture import make_random_model_dir

    torch.set_num_threads(1)
    return make_random_model_dir(tmp_path_factory.mktemp("model") / "m", seed=13)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_folder(tmp_path_factory.mktemp("hostile") / "data", 5, size=64)


def _run(root: Path, out: Path | str, model_dir: Path, **kw: Any):
    return run_batch(BatchOptions(root, out, model_dir=model_dir, device="cpu", workers=1,
                                  batch_size=kw.pop("batch_size", 4), **kw))


def _copy(small: Path, dest: Path) -> Path:
    shutil.copytree(small, dest)
    return dest


def test_non_utf8_and_whitespace_names_are_scored_reported_exactly_and_resumed(
        small: Path, model_dir: Path, tmp_path: Path) -> None:
    """``bad\\xff\\xfe.dcm`` beside good files killed the run in the report writer (0 of 6 rows
    written) and every --resume after it; runs of spaces were collapsed, so two files shared
    a relpath and --resume scored them again for ever."""
    root = _copy(small, tmp_path / "data")
    good = next(root.rglob("*.dcm"))
    for name in (BAD_NAME, "two  spaces.dcm", "two spaces.dcm", "line\nbreak.dcm",
                 "=formula.dcm"):
        shutil.copyfile(good, root / name)
    out = tmp_path / "r.csv"
    first = _run(root, out, model_dir)
    assert first.finished and first.total == 10 and first.counts["scored"] == 10
    out.read_bytes().decode("utf-8")  # valid UTF-8
    rows = rows_by_relpath(rep.read_report(out, allow_partial_tail=False))
    assert {BAD_NAME, "two  spaces.dcm", "two spaces.dcm", "line\nbreak.dcm",
            "=formula.dcm"} <= set(rows)
    for rel, row in rows.items():  # path leads back to the file, byte for byte
        assert os.path.samefile(os.fsencode(row["path"]), root / rel)
        assert row["status"] == "scored"
    assert os.fsencode(rows[BAD_NAME]["path"]).endswith(b"/bad\xff\xfe.dcm")
    again = _run(root, out, model_dir, resume=True)
    assert again.finished and again.resumed == 10 and again.done == 10
    assert again.counts["scored"] == 10 and again.run_counts["scored"] == 0
    manifest = rep.read_manifest(out)
    assert rep.unescape_path(manifest["root"]) == str(root)


def test_special_files_get_skipped_rows_and_an_unlistable_folder_an_error_row(
        small: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _copy(small, tmp_path / "d")
    os.mkfifo(root / "pipe.dcm")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(root / "sock.dcm"))
    os.symlink(root / "nowhere.dcm", root / "dangling.dcm")
    locked = root / "locked"
    locked.mkdir()
    shutil.copyfile(next(small.rglob("*.dcm")), locked / "hidden.dcm")
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:  # as an unreadable folder behaves (tests run as root)
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "r.csv"
    t0 = time.monotonic()
    try:
        summary = _run(root, out, model_dir)
    finally:
        sock.close()
    assert time.monotonic() - t0 < 120  # the FIFO was never opened (it would block)
    rows = rows_by_relpath(rep.read_report(out, allow_partial_tail=False))
    assert summary.finished and summary.total == len(rows) == 5 + 4
    assert rows["pipe.dcm"]["status"] == "skipped" and "FIFO" in rows["pipe.dcm"]["message"]
    assert rows["sock.dcm"]["status"] == "skipped" and "socket" in rows["sock.dcm"]["message"]
    assert rows["dangling.dcm"]["status"] == "skipped"
    assert "dangling symbolic link" in rows["dangling.dcm"]["message"]
    assert rows["locked/"]["status"] == "error"
    assert "cannot list this folder" in rows["locked/"]["message"]
    assert summary.unlisted_folders == 1 and summary.counts["error"] == 1
    assert rep.read_manifest(out)["files"] == 9
    # the whole folder unlistable is a fatal error, not an empty report
    monkeypatch.setattr(os, "scandir", lambda p=".": (_ for _ in ()).throw(
        PermissionError(13, "Permission denied", str(p))))
    with pytest.raises(PneumoViewError, match="cannot list this folder"):
        _run(root, tmp_path / "r2.csv", model_dir)


def test_device_file_gets_a_skipped_row(model_dir: Path, tmp_path: Path) -> None:
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null here")
    root = tmp_path / "dev"
    root.mkdir()
    os.symlink("/dev/null", root / "null.dcm")
    summary = _run(root, tmp_path / "r.csv", model_dir)
    row = rep.read_report(tmp_path / "r.csv")[0]
    assert summary.finished and row["status"] == "skipped" and "device" in row["message"]


def _mark_error(out: Path, rel: str) -> None:
    rows = rep.read_report(out, allow_partial_tail=False)
    for row in rows:
        if row["relpath"] == rel:
            row.update(status="error", probability="", flagged="",
                       message="the decoder took longer than 120 s")
    rep.write_report_atomic(out, rows)


def test_resume_retries_error_rows_once_unless_told_not_to(small: Path, model_dir: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    _run(small, out, model_dir)
    victim = rep.read_report(out)[2]["relpath"]
    _mark_error(out, victim)
    kept = _run(small, out, model_dir, resume=True, retry_errors=False)
    assert kept.retried == 0 and kept.resumed == 5
    assert rows_by_relpath(rep.read_report(out))[victim]["status"] == "error"
    again = _run(small, out, model_dir, resume=True)
    assert again.retried == 1 and again.resumed == 4
    assert again.run_counts == {"scored": 1, "not_scored": 0, "skipped": 0, "error": 0}
    assert again.counts["scored"] == 5 and again.counts["error"] == 0  # the whole report
    assert rows_by_relpath(rep.read_report(out))[victim]["status"] == "scored"


def test_fifo_output_is_refused_at_once(small: Path, model_dir: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    for kw in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(PneumoViewError, match="named pipe"):
            _run(small, fifo, model_dir, **kw)


def test_overwrite_through_a_symlink_replaces_the_link_never_its_target(
        small: Path, model_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "r.csv"
    os.symlink(victim, link)
    with pytest.raises(PneumoViewError, match="already exists"):
        _run(small, link, model_dir)
    summary = _run(small, link, model_dir, overwrite=True)
    assert summary.finished
    assert victim.read_text() == "precious\n"
    assert not link.is_symlink() and len(rep.read_report(link)) == 5
    dangling = tmp_path / "d.csv"
    os.symlink(tmp_path / "elsewhere.csv", dangling)
    with pytest.raises(PneumoViewError, match="already exists"):  # lexists: a link is there
        _run(small, dangling, model_dir)


def test_a_second_run_on_the_same_report_is_refused(small: Path, model_dir: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    _run(small, out, model_dir)
    before = out.read_bytes()
    with rep.ReportLock(out):  # as a first run holds it
        with pytest.raises(rep.ReportLocked, match=f"PID {os.getpid()}, started"):
            _run(small, out, model_dir, overwrite=True)
    assert out.read_bytes() == before
    assert not rep.lock_path(out).exists()  # released and removed by the holder
    _run(small, out, model_dir, resume=True)
    assert not rep.lock_path(out).exists()


def test_lock_and_temporary_files_inside_the_folder_are_not_scanned(
        small: Path, model_dir: Path, tmp_path: Path) -> None:
    root = _copy(small, tmp_path / "data")
    out = root / "r.csv"
    (root / "r.csv.lock").write_text("{}")  # left by a killed run
    summary = _run(root, out, model_dir)
    assert summary.total == 5
    assert all(not r["relpath"].startswith("r.csv") for r in rep.read_report(out))
