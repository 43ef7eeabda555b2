"""``pneumoview flag`` / ``merge-reports`` as a user runs them: killed with SIGKILL mid-run and
resumed, sharded and merged, pointed at a full disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_support import build_small_folder, rows_by_relpath

from pneumoview.core import report as rep

REPO = Path(__file__).resolve().parents[1]
N_FILES = 40


MODEL_SEED = 5  # the model_dir fixture's weights (tests/conftest.py)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_folder(tmp_path_factory.mktemp("cli") / "data", N_FILES, size=192)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PNEUMOVIEW_TORCH_THREADS="1")
    return env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pneumoview", *args]


def _data_rows(path: Path) -> int:
    """Complete data lines written so far (what a reader sees while the run goes on)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    return max(0, data.count(b"\n") - 1)


def _run_and_kill(args: list[str], report: Path, kill_at: int) -> int:
    """Start the CLI, SIGKILL it once ``kill_at`` rows are on disk; return the rows seen."""
    proc = subprocess.Popen(_cmd(*args), env=_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _data_rows(report) >= kill_at:
                os.kill(proc.pid, signal.SIGKILL)
                break
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it could be killed: "
                            f"{proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.005)
        else:
            pytest.fail("no rows appeared within 120 s")
        proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        return _data_rows(report)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.mark.slow
def test_sigkill_then_resume_gives_a_complete_report_without_duplicates(
        folder: Path, model_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    base = ["flag", str(folder), "--output", str(report), "--model", str(model_dir),
            "--device", "cpu", "--workers", "1", "--batch-size", "2", "--quiet"]
    # first kill: after some rows
    seen = _run_and_kill(base, report, kill_at=4)
    assert 4 <= seen < N_FILES, "killed after some rows and before the last"
    # second kill, late in the resumed run: before the last row
    seen = _run_and_kill([*base, "--resume"], report, kill_at=N_FILES - 8)
    assert N_FILES - 8 <= seen < N_FILES, "killed before the last row"
    assert rep.read_manifest(report)["finished"] is False
    done = subprocess.run(_cmd(*base, "--resume"), env=_env(), cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = rows_by_relpath(rep.read_report(report, allow_partial_tail=False))
    expected = {p.relative_to(folder).as_posix() for p in folder.rglob("*.dcm")}
    assert set(rows) == expected
    assert all(r["status"] == "scored" for r in rows.values())
    assert rep.read_manifest(report)["finished"] is True
    assert f"{N_FILES}/{N_FILES} files" in done.stderr

    # shards 0/3, 1/3, 2/3 (clean runs) merged equal the killed-and-resumed unsharded run;
    # a missing shard fails loudly
    clean_rows = rows
    shard_reports = []
    for k in range(3):
        out = tmp_path / f"shard{k}.csv"
        res = subprocess.run(_cmd("flag", str(folder), "--output", str(out), "--model",
                                  str(model_dir), "--device", "cpu", "--workers", "1",
                                  "--quiet", "--shard", f"{k}/3"),
                             env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        assert rep.read_manifest(out)["files"] == len(rep.read_report(out))
        shard_reports.append(str(out))
    merged = tmp_path / "merged.csv"
    res = subprocess.run(_cmd("merge-reports", *shard_reports, "--output", str(merged)),
                         env=_env(), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    merged_rows = rows_by_relpath(rep.read_report(merged))
    assert set(merged_rows) == set(clean_rows)
    for rel, row in merged_rows.items():
        ref = clean_rows[rel]
        assert (row["status"], row["file_size"], row["mtime_ns"], row["flagged"]) == (
            ref["status"], ref["file_size"], ref["mtime_ns"], ref["flagged"])
        assert abs(float(row["probability"]) - float(ref["probability"])) < 1e-4
    res = subprocess.run(_cmd("merge-reports", shard_reports[0], shard_reports[2], "--output",
                              str(tmp_path / "bad.csv")),
                         env=_env(), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert "shard(s) 1/3 missing" in res.stderr
    assert not (tmp_path / "bad.csv").exists()


def test_disk_full_and_unwritable_output_are_clear_errors(folder: Path, model_dir: Path,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from pneumoview.core.batch import BatchOptions, run_batch
    from pneumoview.core.errors import PneumoViewError

    # a full disk under a regular report (a device like /dev/full is refused as an output:
    # tests/test_cli_hostile.py): the first write of rows fails with ENOSPC
    real_write_rows = rep.ReportWriter.write_rows

    def full(self: rep.ReportWriter, rows: object) -> None:
        def no_space(_: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        self._fh.write = no_space  # type: ignore[method-assign]
        real_write_rows(self, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(rep.ReportWriter, "write_rows", full)
    with pytest.raises(PneumoViewError, match="disk is full"):
        run_batch(BatchOptions(folder, tmp_path / "full.csv", model_dir=model_dir,
                               device="cpu", workers=1))
    assert rep.read_manifest(tmp_path / "full.csv")["finished"] is False
    missing_dir = tmp_path / "nope" / "r.csv"
    res = subprocess.run(_cmd("flag", str(folder), "--output", str(missing_dir), "--model",
                              str(model_dir), "--quiet"),
                         env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "folder does not exist" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run(_cmd("flag", str(folder), "--output", str(tmp_path / "r.csv"),
                              "--shard", "5/3"),
                         env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "--shard" in res.stderr


def test_headless_commands_do_not_import_qt_or_torch_early() -> None:
    code = ("import sys; from pneumoview.cli import build_parser; build_parser(); "
            "import pneumoview.core.batch, pneumoview.core.report, pneumoview.core.procpool; "
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'torch', 'openvino'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
