"""A codec that segfaults, hangs or eats memory costs one ``error`` row; the run goes on.

The faults are injected by a decode target defined here (workers import it by name): for files
whose name says so it really kills its own process with SIGSEGV, really sleeps forever or
really allocates far more than the worker's memory limit; every other file goes through the
real :func:`pneumoview.core.batch.decode_task`.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from batch_support import build_small_folder, rows_by_relpath

from pneumoview.core import report as rep


def faulty_decode(payload: dict[str, Any]) -> dict[str, Any]:
    """Test-only decode target: a real crash, hang or memory blow-up for marked files."""
    from pneumoview.core.batch import decode_task

    name = os.path.basename(payload["path"])
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("hang"):
        time.sleep(3600)
    if name.startswith("hog"):
        blob = bytearray(4 << 30)  # 4 GiB, over the 1 GiB limit the test sets
        return {"status": "error", "message": f"allocated {len(blob)} bytes"}
    return decode_task(payload)


def test_pool_reports_crash_hang_and_memory_and_keeps_going() -> None:
    from pneumoview.core.procpool import ProcessPool

    items = [(name, {"path": f"/nonexistent/{name}", "file_size": 1})
             for name in ("a.dcm", "crash.dcm", "b.dcm", "hang.dcm", "hog.dcm", "c.dcm")]
    with ProcessPool("test_batch_faults:faulty_decode", 2, timeout_s=3,
                     memory_limit_bytes=1 << 30) as pool:
        results = {r.key: r for r in pool.imap_unordered(items)}
        assert pool.restarts == 2
    assert set(results) == {k for k, _ in items}
    assert "SIGSEGV" in results["crash.dcm"].message and not results["crash.dcm"].ok
    assert "longer than 3 s" in results["hang.dcm"].message
    assert "out of memory" in results["hog.dcm"].message
    for key in ("a.dcm", "b.dcm", "c.dcm"):  # real decode_task: a missing file is an error row
        assert results[key].ok and results[key].value["status"] == "error"
        assert "file not found" in results[key].value["message"]


@pytest.mark.slow
def test_batch_run_survives_faults(tmp_path: Path) -> None:
    from pneumoview.core.batch import BatchOptions, run_batch
    from tests.support.model_fixture import make_random_model_dir

    root = build_small_folder(tmp_path / "data", 6, size=96)
    good = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.dcm"))
    for name in ("crash_me.dcm", "hang_me.dcm", "hog_me.dcm"):
        (root / name).write_bytes((root / good[0]).read_bytes())
    model = make_random_model_dir(tmp_path / "model")
    out = tmp_path / "r.csv"
    summary = run_batch(BatchOptions(root, out, model_dir=model, device="cpu", workers=1,
                                     batch_size=2, timeout_s=3, memory_limit_mb=1024,
                                     decode_target="test_batch_faults:faulty_decode"))
    assert summary.finished and summary.restarts == 2
    rows = rows_by_relpath(rep.read_report(out, allow_partial_tail=False))
    assert len(rows) == 9
    assert "SIGSEGV" in rows["crash_me.dcm"]["message"]
    assert rows["hang_me.dcm"]["status"] == "error"
    assert "out of memory" in rows["hog_me.dcm"]["message"]
    assert all(rows[g]["status"] == "scored" for g in good)


def test_vanished_file_is_an_error_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file deleted between the scan and its decode gets an error row."""
    from pneumoview.core import batch
    from pneumoview.core.batch import run as batch_run
    from tests.support.model_fixture import make_random_model_dir

    root = build_small_folder(tmp_path / "data", 3, size=64)
    victim = next(root.rglob("*.dcm"))
    real_scan = batch.scan

    def scan_then_delete(*a: Any, **kw: Any) -> list[tuple[str, str]]:
        files = real_scan(*a, **kw)
        victim.unlink()
        return files

    monkeypatch.setattr(batch_run, "scan", scan_then_delete)
    out = tmp_path / "r.csv"
    summary = batch.run_batch(batch.BatchOptions(
        root, out, model_dir=make_random_model_dir(tmp_path / "m"), device="cpu", workers=1))
    assert summary.finished
    rows = rows_by_relpath(rep.read_report(out))
    row = rows[victim.relative_to(root).as_posix()]
    assert row["status"] == "error" and "vanished" in row["message"]
