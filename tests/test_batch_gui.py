"""The GUI batch panel: start, cancel (partial results kept), start again and finish; the table,
filters, study rows, Next Flagged, Save Report; the main window's menu; no thread or process
left running."""

from __future__ import annotations

import csv
import multiprocessing
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytestmark = [pytest.mark.gui, pytest.mark.slow]

from batch_support import build_small_folder  # noqa: E402

from pneumoview.core import report as rep  # noqa: E402

TIMEOUT_MS = 180_000
N_FILES = 14


MODEL_SEED = 11  # the model_dir fixture's weights (tests/conftest.py)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_folder(tmp_path_factory.mktemp("bgui") / "data", N_FILES, size=96)


def _no_children_left() -> None:
    for child in multiprocessing.active_children():
        child.join(5)
    assert multiprocessing.active_children() == []


def test_cancel_keeps_partial_results_then_a_full_run(qtbot, model_dir: Path, folder: Path,
                                                      tmp_path: Path) -> None:
    from pneumoview.qt.batch.controller import BatchController
    from pneumoview.qt.batch.table import COL_PROB

    ctl = BatchController(model_dir=str(model_dir), device="cpu")
    qtbot.addWidget(ctl.panel)
    panel = ctl.panel
    reports = tmp_path / "reports"
    try:
        # 1. start, cancel once some rows are in
        with qtbot.waitSignal(ctl.finished, timeout=TIMEOUT_MS) as done:
            ctl.start(str(folder), workers=1, batch_size=2, out_dir=str(reports))
            assert ctl.running and not panel.start_button.isEnabled()
            qtbot.waitUntil(lambda: len(panel.model.rows) >= 2, timeout=TIMEOUT_MS)
            ctl.cancel()
        summary = done.args[0]
        assert summary is not None and summary.cancelled and not summary.finished
        assert not ctl.running and panel.start_button.isEnabled()
        kept = len(panel.model.rows)
        assert 2 <= kept < N_FILES, "cancelled after some rows and before the last"
        assert summary.output.endswith("-cancelled.csv")
        assert len(rep.read_report(summary.output, allow_partial_tail=False)) == kept
        manifest = rep.read_manifest(summary.output)
        assert manifest["cancelled"] is True and manifest["finished"] is False
        assert panel.save_button.isEnabled()
        assert "Cancelled" in panel.progress_label.text()

        # 2. start again and let it finish
        with qtbot.waitSignal(ctl.finished, timeout=TIMEOUT_MS) as done:
            ctl.start(str(folder), workers=1, batch_size=4, out_dir=str(reports))
        summary = done.args[0]
        assert summary.finished and summary.done == N_FILES
        assert len(panel.model.rows) == N_FILES
        name = Path(summary.output).name
        assert "_data_" in name and "model-0.0-test" in name and "_t0.500" in name
        assert panel.progress.value() == N_FILES
        assert f"{N_FILES}/{N_FILES} files" in panel.progress_label.text()

        # the table: highest probability first, filters, study rows
        rows = panel.visible_rows()
        probs = [r["probability"] for r in rows]
        assert probs == sorted(probs, reverse=True)
        assert panel.table.horizontalHeader().sortIndicatorSection() == COL_PROB
        n_flagged = sum(1 for r in rows if r["flagged"])
        panel.flagged_only.setChecked(True)
        assert len(panel.visible_rows()) == n_flagged
        assert all(r["flagged"] for r in panel.visible_rows())
        panel.flagged_only.setChecked(False)
        panel.study_level.setChecked(True)
        studies = panel.visible_rows()
        by_study: dict[str, float] = {}
        for r in rows:
            uid = r["study_instance_uid"]
            by_study[uid] = max(by_study.get(uid, 0.0), r["probability"])
        assert len(studies) == len(by_study) == N_FILES  # each generated file is its own study
        assert {s["study_instance_uid"]: s["probability"] for s in studies} == by_study
        panel.study_level.setChecked(False)

        # Next Flagged walks the flagged rows in table order and asks the viewer to open them
        opened: list[str] = []
        panel.openRequested.connect(opened.append)
        if n_flagged:
            first = panel.next_flagged()
            assert first is not None and first["flagged"]
            assert opened == [first["path"]]
            assert first["probability"] == max(r["probability"] for r in rows if r["flagged"])
        else:
            assert panel.next_flagged() is None

        # Save Report copies the CSV (and its manifest)
        dest = tmp_path / "saved.csv"
        assert ctl.save_report(str(dest))
        with open(dest, newline="") as fh:
            assert len(list(csv.DictReader(fh))) == N_FILES
        assert rep.read_manifest(dest)["finished"] is True
    finally:
        ctl.shutdown()
    assert ctl.runner.threads() == []
    _no_children_left()


def _log_batch_tab_bars(win) -> int:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QTabBar

    bars = win.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly)
    return sum(1 for b in bars if b.isVisible()
               and {b.tabText(i) for i in range(b.count())} == {"Log", "Batch"})


def test_batch_dock_opens_tall_and_stray_tab_bars_are_tidied(qtbot, model_dir: Path,
                                                              folder: Path) -> None:
    """Qt (6.12) can leave a tabified group's old tab bar on screen at its old place (seen: a
    second Log/Batch bar over the study tree once a batch starts). A bar that is not where
    its docks are is hidden whenever a dock is shown or hidden; the real one stays."""
    import argparse

    from PySide6.QtWidgets import QTabBar

    from pneumoview.qt import app as viewer_app

    win = viewer_app.create_window(argparse.Namespace(
        path=str(folder), demo=False, screenshot=None, model=str(model_dir), device="cpu"))
    qtbot.addWidget(win)
    try:
        qtbot.waitUntil(lambda: win.current_instance is not None, timeout=TIMEOUT_MS)
        stray = QTabBar(win)  # stands in for the bar Qt leaves behind
        stray.addTab("Log")
        stray.addTab("Batch")
        stray.setGeometry(0, 300, 380, 26)
        stray.show()
        win.batch._show_dock()
        assert win.batch.dock.isVisible()
        qtbot.waitUntil(lambda: win.batch.dock.height() >= win.height() * 0.3, timeout=5000)
        qtbot.waitUntil(lambda: not stray.isVisible(), timeout=5000)
        assert _log_batch_tab_bars(win) == 1  # the bar above the Log/Batch docks stays
        win.batch.dock.hide()  # the Log alone needs no tab bar
        qtbot.waitUntil(lambda: _log_batch_tab_bars(win) == 0, timeout=5000)
    finally:
        win.close()
        win.shutdown()
    assert win.runner.threads() == []


def test_main_window_has_batch_menu_and_opens_results(qtbot, model_dir: Path, folder: Path,
                                                      tmp_path: Path) -> None:
    from pneumoview.core.settings import Settings
    from pneumoview.qt.mainwindow import MainWindow, ViewerOptions

    win = MainWindow(Settings(), ViewerOptions(model=str(model_dir), device="cpu"))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    try:
        file_menu = next(a.menu() for a in win.menuBar().actions()
                         if a.text().replace("&", "") == "File")
        texts = [a.text().replace("&", "") for a in file_menu.actions()]
        assert "Batch Flag Folder..." in texts
        assert texts.index("Batch Flag Folder...") == texts.index("Open Folder...") + 1
        ctl = win.batch
        # reading first, as a user does: the docks are laid out before the Batch dock opens
        first = str(sorted(folder.rglob("*.dcm"))[0])
        with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS):
            win.open_path(first)
        ctl.start(str(folder), workers=1, batch_size=2)
        # the viewer keeps working while the batch runs
        qtbot.waitUntil(lambda: len(ctl.panel.model.rows) >= 1 or not ctl.running,
                        timeout=TIMEOUT_MS)
        reading = str(sorted(folder.rglob("*.dcm"))[-1])
        with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS) as shown:
            win.open_path(reading)
        assert shown.args[0].path == reading
        qtbot.waitUntil(lambda: not ctl.running, timeout=TIMEOUT_MS)
        assert ctl.summary is not None and ctl.summary.finished
        assert len(ctl.panel.model.rows) == N_FILES
        # the Batch dock opened tall enough to read results, and left no second Log/Batch tab
        # bar over the study tree (Qt keeps the old one on screen unless it is tidied away)
        assert ctl.dock.height() >= win.height() * 0.3
        qtbot.waitUntil(lambda: _log_batch_tab_bars(win) == 1, timeout=TIMEOUT_MS)
        # the automatic copy lands in data_dir()/reports
        from pneumoview.core.paths import data_dir

        assert Path(ctl.summary.output).parent == data_dir() / "reports"
        # double-click / Next Flagged opens the image in the viewer
        target = ctl.panel.visible_rows()[0]["path"]
        with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS) as shown:
            ctl.panel.openRequested.emit(target)
        assert shown.args[0].path == target
    finally:
        win.close()
    assert win.runner.threads() == []
    _no_children_left()
