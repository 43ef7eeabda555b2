"""The GUI batch: a cancelled run resumes into its own report (like ``flag --resume``), and a
batch run's rows fill the study tree's AI column for files the viewer never scored."""

from __future__ import annotations

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
