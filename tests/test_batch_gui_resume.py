"""The GUI batch: a cancelled run resumes into its own report (like ``flag --resume``), and a
batch run's rows fill the study tree's AI column for files the viewer never scored."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytestmark = [pytest.mark.gui, pytest.mark.slow]

from batch_support import build_small_folder  # noqa: E402

from pneumoview.core import report as rep  # noqa: E402

TIMEOUT_MS = 180_000
N_FILES = 10


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_folder(tmp_path_factory.mktemp("bres") / "data", N_FILES, size=96)


def test_a_cancelled_batch_resumes_into_its_own_report(qtbot, model_dir: Path,
                                                        folder: Path, tmp_path: Path) -> None:
    from pneumoview.qt.batch.controller import BatchController

    ctl = BatchController(model_dir=str(model_dir), device="cpu")
    qtbot.addWidget(ctl.panel)
    panel = ctl.panel
    reports = tmp_path / "reports"
    try:
        assert not panel.resume_button.isEnabled()
        with qtbot.waitSignal(ctl.finished, timeout=TIMEOUT_MS) as done:
            ctl.start(str(folder), workers=1, batch_size=2, out_dir=str(reports))
            qtbot.waitUntil(lambda: len(panel.model.rows) >= 2, timeout=TIMEOUT_MS)
            ctl.cancel()
        cancelled = done.args[0]
        assert cancelled.cancelled and cancelled.output.endswith("-cancelled.csv")
        kept = rep.read_report(cancelled.output)
        assert 2 <= len(kept) < N_FILES
        assert panel.resume_button.isEnabled()
        with qtbot.waitSignal(ctl.finished, timeout=TIMEOUT_MS) as done:
            panel.resume_button.click()
            assert ctl.running and not panel.resume_button.isEnabled()
        summary = done.args[0]
        assert summary.finished and summary.resumed == len(kept) and summary.done == N_FILES
        # the same report, under its own name again; nothing scored twice
        assert summary.output == cancelled.output.replace("-cancelled.csv", ".csv")
        assert sorted(p.name for p in reports.iterdir()) == sorted(
            [Path(summary.output).name, Path(summary.manifest).name])
        rows = rep.read_report(summary.output, allow_partial_tail=False)
        assert len({r["relpath"] for r in rows}) == len(rows) == N_FILES
        old = {r["relpath"]: r for r in kept}
        assert all(r["elapsed_ms"] == old[r["relpath"]]["elapsed_ms"]
                   for r in rows if r["relpath"] in old)  # kept, not scored again
        assert rep.read_manifest(summary.output)["finished"] is True
        assert len(panel.model.rows) == N_FILES and not panel.resume_button.isEnabled()
    finally:
        ctl.shutdown()


def _opened(qtbot, make_viewer_window, model_dir: Path, folder: Path):
    win = make_viewer_window(model=model_dir)
    win.open_path(str(folder))
    files = sorted(str(p) for p in folder.rglob("*.dcm"))
    qtbot.waitUntil(lambda: all(win.tree.instance_item(f) is not None for f in files),
                    timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: win.ai.info is not None, timeout=TIMEOUT_MS)
    return win, files


def test_batch_rows_fill_the_study_trees_ai_column(make_viewer_window, qtbot,
                                                   model_dir: Path, folder: Path) -> None:
    win, files = _opened(qtbot, make_viewer_window, model_dir, folder)
    with qtbot.waitSignal(win.batch.finished, timeout=TIMEOUT_MS) as done:
        win.batch.start(str(folder), workers=1, batch_size=4)
    assert done.args[0].finished
    _tree_shows(win, files, done.args[0].output)
    # File > Open Report... in another window: the report's rows fill its tree too
    other, _ = _opened(qtbot, make_viewer_window, model_dir, folder)
    assert other.worklist.load_report(done.args[0].output)
    _tree_shows(other, files, done.args[0].output)


def _tree_shows(win, files: list[str], report: str) -> None:
    from pneumoview.qt.studytree import AI_COLUMN

    rows = {r["path"]: r for r in rep.read_report(report)}
    for path in files:
        row = rows[path]
        text = win.tree.instance_item(path).text(AI_COLUMN)
        if row["status"] == "scored":
            assert text.startswith(f"{float(row['probability']) * 100:.0f} %"), (path, text)
            assert ("flagged" in text) == (row["flagged"] == "true")
        elif row["status"] == "not_scored":
            assert text == "not scored"
    assert any(rows[p]["status"] == "scored" for p in files)


# -- issue 18: a report an earlier session left (cancelled, or the viewer killed) ---------------

def _cancel_midway(qtbot, ctl, folder: Path):
    """Flag ``folder`` into the private reports folder and cancel after two rows."""
    with qtbot.waitSignal(ctl.finished, timeout=TIMEOUT_MS) as done:
        ctl.start(str(folder), workers=1, batch_size=2)
        qtbot.waitUntil(lambda: len(ctl.panel.model.rows) >= 2, timeout=TIMEOUT_MS)
        ctl.cancel()
    summary = done.args[0]
    assert summary.cancelled and summary.output.endswith("-cancelled.csv")
    kept = rep.read_report(summary.output)
    assert 2 <= len(kept) < N_FILES
    return summary, kept


def _tree(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def _check_resumed(summary, kept: list[dict]) -> None:
    """Kept rows were not scored again, the rest were, once each; the manifest says finished."""
    assert summary.finished and summary.resumed == len(kept) and summary.done == N_FILES
    rows = rep.read_report(summary.output, allow_partial_tail=False)
    assert len({r["relpath"] for r in rows}) == len(rows) == N_FILES
    old = {r["relpath"]: r for r in kept}
    assert all(r["elapsed_ms"] == old[r["relpath"]]["elapsed_ms"]
               for r in rows if r["relpath"] in old)
    assert rep.read_manifest(summary.output)["finished"] is True


@pytest.fixture
def private_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder of this test's own: the reports a 'previous session' leaves go there."""
    monkeypatch.setenv("PNEUMOVIEW_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data" / "reports"


def test_after_a_restart_opening_the_folder_enables_resume_for_its_report(
        qtbot, model_dir: Path, folder: Path, private_reports: Path) -> None:
    from pneumoview.core.savedreports import unfinished_reports
    from pneumoview.qt.batch.controller import BatchController

    before = _tree(folder)
    first = BatchController(model_dir=str(model_dir), device="cpu")
    qtbot.addWidget(first.panel)
    try:
        cancelled, kept = _cancel_midway(qtbot, first, folder)
    finally:
        first.shutdown()
    # the viewer restarts: a new controller knows nothing of that run
    ctl = BatchController(model_dir=str(model_dir), device="cpu")
    qtbot.addWidget(ctl.panel)
    try:
        assert not ctl.resumable and not ctl.panel.resume_button.isEnabled()
        assert ctl.offer_resume(str(folder / "s0")) is None  # another folder: nothing offered
        entry = ctl.offer_resume(str(folder))
        assert entry is not None and entry.path == cancelled.output
        assert entry.state == "cancelled" and entry.rows == len(kept)
        assert ctl.panel.resume_button.isEnabled()
        assert "cancelled" in ctl.panel.resume_button.toolTip()
        with qtbot.waitSignal(ctl.finished, timeout=TIMEOUT_MS) as done:
            ctl.panel.resume_button.click()
            assert ctl.running and not ctl.panel.resume_button.isEnabled()
        summary = done.args[0]
        _check_resumed(summary, kept)
        assert summary.output == cancelled.output.replace("-cancelled.csv", ".csv")
        assert len(ctl.panel.model.rows) == N_FILES and not ctl.panel.resume_button.isEnabled()
        assert unfinished_reports() == ([], [])  # nothing left to resume
        assert _tree(folder) == before  # nothing written into the scanned folder
    finally:
        ctl.shutdown()


#: A viewer's batch job (the GUI's own code path) killed by SIGKILL once two rows are written.
_KILLED_VIEWER = """
import os, signal, sys
from pneumoview.qt.batch.job import gui_batch
seen = []
def rows(batch):
    seen.extend(batch)
    if len(seen) >= 2:
        os.kill(os.getpid(), signal.SIGKILL)
gui_batch(sys.argv[1], model_dir=sys.argv[2], device="cpu", thresholds=None,
          on_started=lambda s: None, on_rows=rows, on_progress=lambda p: None,
          cancel=lambda: False, workers=1, batch_size=2)
"""


def _killed_viewer_run(folder: Path, model_dir: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _KILLED_VIEWER, str(folder), str(model_dir)],
                            cwd=Path(__file__).resolve().parents[1], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=TIMEOUT_MS / 1000)
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its decode workers, if any outlived it
        proc.wait()


def test_file_resume_batch_report_lists_an_interrupted_run_and_resumes_it(
        qtbot, make_viewer_window, model_dir: Path, folder: Path, private_reports: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoview.qt.batch.resumedialog import ResumeDialog

    _killed_viewer_run(folder, model_dir)  # the viewer was killed mid-run
    (report,) = private_reports.glob("*.csv")
    assert rep.read_manifest(report)["finished"] is False
    kept = rep.read_report(report)
    assert 2 <= len(kept) < N_FILES

    win2 = make_viewer_window(model=model_dir)
    file_menu = win2.menuBar().actions()[0].menu()
    assert win2.batch.act_resume in file_menu.actions()
    shown: list[tuple[int, str, list[str]]] = []

    def accept(dialog: ResumeDialog) -> int:  # the user takes the newest (preselected) report
        shown.append((dialog.table.rowCount(), dialog.chosen().path,
                      [dialog.table.item(0, c).text() for c in range(5)]))
        return ResumeDialog.DialogCode.Accepted

    monkeypatch.setattr(ResumeDialog, "exec", accept)
    with qtbot.waitSignal(win2.batch.finished, timeout=TIMEOUT_MS) as done:
        win2.batch.act_resume.trigger()
    ((n, chosen, cells),) = shown
    assert n == 1 and chosen == str(report)
    assert cells[0] == str(folder) and cells[2] == f"{len(kept)} of {N_FILES}"  # counted
    assert cells[3] == "pneumoview-test-random 0.0-test" and "interrupted" in cells[4]
    summary = done.args[0]
    _check_resumed(summary, kept)
    assert summary.output == str(report)


def test_resume_says_when_the_folder_is_gone_and_when_the_core_refuses(
        qtbot, make_viewer_window, model_dir: Path, tmp_path: Path,
        private_reports: Path) -> None:
    import shutil

    from pneumoview.core.savedreports import unfinished_reports
    from tests.support.model_fixture import make_random_model_dir

    gone = build_small_folder(tmp_path / "gone", N_FILES, size=96)
    other = build_small_folder(tmp_path / "other", N_FILES, size=96, seed=1)
    win = make_viewer_window(model=model_dir)
    for source in (gone, other):
        _cancel_midway(qtbot, win.batch, source)
    win.close()
    shutil.rmtree(gone)
    entries = {Path(e.folder).name: e for e in unfinished_reports()[0]}
    assert set(entries) == {"gone", "other"}

    errors: list[str] = []
    win2 = make_viewer_window(model=make_random_model_dir(tmp_path / "m2", seed=7))
    win2.report_error = errors.append  # the window's error sink
    assert win2.batch.resume_report(entries["gone"]) is None
    assert errors and str(gone) in errors[-1] and "no longer there" in errors[-1]
    with qtbot.waitSignal(win2.batch.finished, timeout=TIMEOUT_MS) as done:
        assert win2.batch.resume_report(entries["other"]) is not None
    assert done.args[0] is None
    assert errors[-1].startswith("Cannot resume the batch report: ")
    assert "refusing to mix models: the report was made with model sha256" in errors[-1]
    assert "same weights" not in errors[-1]  # other weights, not other metadata
    assert "(load that model, or flag the folder again with this one)" in errors[-1]
    assert "--resume" not in errors[-1]


def test_a_run_that_fails_before_writing_leaves_no_empty_report(
        model_dir: Path, tmp_path: Path, private_reports: Path) -> None:
    """A folder that is gone: the run fails before the report is written, and the empty file
    made for it goes too (File > Resume Batch Report... would list it as not a report)."""
    from pneumoview.core.errors import PneumoViewError
    from pneumoview.qt.batch.job import gui_batch

    with pytest.raises(PneumoViewError):
        gui_batch(str(tmp_path / "gone"), model_dir=str(model_dir), device="cpu",
                  thresholds=None, on_started=lambda s: None, on_rows=lambda r: None,
                  on_progress=lambda p: None, cancel=lambda: False, workers=1)
    assert private_reports.is_dir() and not list(private_reports.iterdir())
