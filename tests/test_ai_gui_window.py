"""AI in the main window: panel, tree column, switching, CAM toggle, export, screenshot."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
# real chest radiographs from ../shared/data, or pydicom-data's RG1 chest where it is absent
pytestmark = [pytest.mark.gui, pytest.mark.shared_data]

from PIL import Image  # noqa: E402

from tests.ai_support import chest_folder  # noqa: E402

TIMEOUT_MS = 120_000




@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chest_folder(tmp_path_factory.mktemp("chest") / "demo", minimum=3)


@pytest.fixture
def window(qtbot, model_dir: Path):
    from pneumoview.core.settings import Settings
    from pneumoview.qt.mainwindow import MainWindow, ViewerOptions

    win = MainWindow(Settings(), ViewerOptions(model=str(model_dir), device="cpu"))
    qtbot.addWidget(win)
    win.resize(1300, 850)
    win.show()
    qtbot.waitExposed(win)
    try:
        yield win
    finally:
        win.close()
    assert not win.ai.worker.thread_alive()


def wait_idle(qtbot, win) -> None:
    for _ in range(2):
        qtbot.waitUntil(lambda: win.runner.pending() == 0 and win.ai.pending() == 0,
                        timeout=TIMEOUT_MS)
        qtbot.wait(30)


def open_and_wait(qtbot, win, path: Path) -> None:
    win.open_path(str(path))
    wait_idle(qtbot, win)


def test_selecting_fills_panel_and_tree(qtbot, window, folder) -> None:
    from pneumoview.qt.studytree import AI_COLUMN

    open_and_wait(qtbot, window, folder)
    shown = window.view.decoded
    assert shown is not None
    pred = window.ai.panel.prediction
    assert pred is not None and pred.path == shown.path and pred.scored
    assert window.ai.panel.percent.text() == f"{pred.probability * 100:.1f} %"
    assert window.ai.status_label.text() == (f"AI: {window.ai.worker.device} | "
                                             "pneumoview-test-random 0.0-test")
    assert window.ai.worker.device.endswith(" on cpu")
    item = window.tree.instance_item(shown.path)
    assert item.text(AI_COLUMN).startswith(f"{pred.probability * 100:.0f} %")
    study = item.parent().parent()
    assert study.text(AI_COLUMN).startswith("max ")
    # the overlay sits in the image's ViewBox, on the image's pixel grid
    assert window.ai.overlay.item.getViewBox() is window.view.view_box
    assert window.ai.overlay.cam.shape == shown.shape
    assert window.ai.overlay.item.width() == shown.shape[1]
    assert window.ai.overlay.item.height() == shown.shape[0]


def test_the_ai_is_asked_when_the_image_is_decoded_before_it_is_shown(qtbot, window,
                                                                      folder) -> None:
    """A newly decoded image reaches the AI before the viewer has drawn it, once."""
    open_and_wait(qtbot, window, folder)
    events: list[tuple[str, str]] = []
    window.imageArriving.connect(lambda d: events.append(("arriving", d.path)))
    window.imageShown.connect(lambda d: events.append(("shown", d.path)))
    submit = window.ai.worker.submit
    window.ai.worker.submit = lambda path, *a, **k: (events.append(("asked", path)),
                                                     submit(path, *a, **k))
    before = window.tree.current_instance().path
    window.tree.step_instance(1)
    wait_idle(qtbot, window)
    path = window.tree.current_instance().path
    assert path != before
    # the AI's own slot on imageArriving runs before this test's: asked, then "arriving"
    assert events == [("asked", path), ("arriving", path), ("shown", path)]
    assert window.ai.panel.prediction.path == path


def test_rapid_switching_ends_on_last(qtbot, window, folder) -> None:
    open_and_wait(qtbot, window, folder)
    for step in (1, 1, -1, 1, 1, -1, 1):
        window.tree.step_instance(step)
        qtbot.wait(3)
    wait_idle(qtbot, window)
    current = window.tree.current_instance()
    assert window.view.decoded.path == current.path
    assert window.ai.panel.prediction.path == current.path
    assert window.ai.overlay.key in (None, (current.path, 0))
    if window.ai.overlay.visible:
        assert window.ai.overlay.key == (current.path, 0)


def test_c_toggles_overlay_and_threshold_relabels(qtbot, window, folder) -> None:
    from pneumoview.qt.studytree import AI_COLUMN

    open_and_wait(qtbot, window, folder)
    before = window.ai.overlay.visible
    window.ai.act_cam.trigger()
    assert window.ai.overlay.visible != before
    window.ai.act_cam.trigger()
    assert window.ai.overlay.visible == before

    runs = window.ai.worker.inferences
    pred = window.ai.panel.prediction
    item = window.tree.instance_item(pred.path)
    window.ai.panel.spin.setValue(100.0)
    assert window.ai.panel.state.text().startswith("Not flagged")
    assert "flagged" not in item.text(AI_COLUMN)
    window.ai.panel.spin.setValue(0.0)
    assert window.ai.panel.state.text().startswith("Flagged")
    assert item.text(AI_COLUMN).endswith("flagged")
    qtbot.wait(50)
    assert window.ai.worker.inferences == runs
    window.ai.panel.reset_button.click()


def test_export_image(qtbot, window, folder, tmp_path: Path) -> None:
    from pneumoview.qt.export_image import NOT_FOR_DIAGNOSTIC_USE, export_view

    open_and_wait(qtbot, window, folder)
    lines = window.ai.caption()
    assert lines[-1] == NOT_FOR_DIAGNOSTIC_USE
    assert lines[0].startswith("Probability of pneumonia:")
    assert any(window.ai.info.label in line for line in lines)
    window.view.set_show_patient_text(True)
    without = export_view(window.view, tmp_path / "without", lines, include_patient=False)
    with_pd = export_view(window.view, tmp_path / "with.png", lines, include_patient=True)
    assert without.suffix == ".png" and without.is_file()
    assert window.view.show_patient_text  # restored after the export
    a = np.asarray(Image.open(without).convert("L"), dtype=np.int16)
    b = np.asarray(Image.open(with_pd).convert("L"), dtype=np.int16)
    rows, cols = window.view.decoded.shape
    # the image's own pixel grid, not the screen's, with the caption strip below
    assert a.shape[0] > rows and a.shape[1] >= cols
    np.testing.assert_array_equal(a[:rows, :cols], b[:rows, :cols])  # same picture
    assert b.shape[0] > a.shape[0]  # the patient lines only in the caption of one


def test_screenshot_waits_for_probability_and_cam(qtbot, model_dir: Path, folder,
                                                  tmp_path: Path) -> None:
    from pneumoview.qt import app as viewer_app

    out = tmp_path / "shot.png"
    args = argparse.Namespace(path=str(folder), demo=False, screenshot=str(out),
                              model=str(model_dir), device="cpu")
    win = viewer_app.create_window(args)
    qtbot.addWidget(win)
    try:
        assert viewer_app.take_screenshot(win, str(out), timeout=120) == 0
        shown = win.view.decoded
        assert win.ai.panel.prediction is not None
        assert win.ai.panel.prediction.path == shown.path
        assert win.ai.overlay.key == (shown.path, shown.frame)  # the CAM arrived before saving
    finally:
        win.close()
    assert out.is_file()
