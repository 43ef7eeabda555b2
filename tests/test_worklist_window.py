"""The worklist in the main window: a GUI batch fills it, keys review into the store, Enter opens
the study, the menus hold Open Report, Use Site Profile, Calibrate from Reviews and Export."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytestmark = [pytest.mark.gui, pytest.mark.slow]

from batch_support import build_small_folder  # noqa: E402

TIMEOUT_MS = 180_000
N_FILES = 6


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.model_fixture import make_random_model_dir

    return make_random_model_dir(tmp_path_factory.mktemp("wlgui") / "model", seed=11)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_folder(tmp_path_factory.mktemp("wlgui") / "data", N_FILES, size=96)


def _menu_texts(win, title: str) -> list[str]:
    menu = next(a.menu() for a in win.menuBar().actions() if a.text().replace("&", "") == title)
    return [a.text().replace("&", "") for a in menu.actions()]


def test_batch_to_worklist_to_review(qtbot, model_dir: Path, folder: Path,
                                     tmp_path: Path) -> None:
    from PySide6.QtCore import Qt

    from pneumoview.core.review import store as rs
    from pneumoview.core.settings import Settings
    from pneumoview.qt.mainwindow import MainWindow, ViewerOptions

    settings = Settings(reviewer="dr test")
    win = MainWindow(settings, ViewerOptions(model=str(model_dir), device="cpu"))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    try:
        assert "Open Report..." in _menu_texts(win, "File")
        assert "Use Site Profile..." in _menu_texts(win, "File")
        assert {"Calibrate from Reviews...", "Export Reviews..."} <= set(_menu_texts(win,
                                                                                     "Tools"))
        wl_ctl = win.worklist
        with qtbot.waitSignal(win.batch.finished, timeout=TIMEOUT_MS):
            win.batch.start(str(folder), workers=1, batch_size=2)
        qtbot.waitUntil(lambda: len(wl_ctl.panel.entries()) > 0, timeout=TIMEOUT_MS)
        entries = wl_ctl.panel.entries()
        assert sum(e.n_images for e in entries) == N_FILES
        probs = [e.probability for e in entries if e.state.value == "flagged"]
        assert probs == sorted(probs, reverse=True)
        table = wl_ctl.panel.table
        table.setFocus()
        first = wl_ctl.panel.current()
        with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS) as shown:
            qtbot.keyClick(table, Qt.Key.Key_Return)
        assert shown.args[0].path == first.path
        patient_text = win.acts.patient.isChecked()
        with qtbot.waitSignal(wl_ctl.reviewed, timeout=10_000) as saved:
            qtbot.keyClick(table, Qt.Key.Key_P)  # also the window's "patient text" key
        assert win.acts.patient.isChecked() == patient_text
        review = saved.args[0]
        assert review.reader == "dr test" and review.truth is rs.Truth.PNEUMONIA
        with rs.ReviewStore.open_readonly() as store:
            assert store.current(first.best["model_id"])[review.image_key].id == review.id
        assert wl_ctl.panel.current().key != first.key  # moved to the next unreviewed
        assert "reviewed 1" in wl_ctl.panel.figures.text()
        out = tmp_path / "labels.csv"
        assert wl_ctl.export(str(out)) == 1
        shots = Path(os.environ.get("PNEUMOVIEW_TEST_SCREENSHOTS") or tmp_path)
        assert win.grab().save(str(shots / "worklist-window.png"))
    finally:
        win.close()
    assert win.runner.threads() == []
    for child in multiprocessing.active_children():
        child.join(5)
