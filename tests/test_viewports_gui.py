"""Viewports: layouts, the active viewport, drag from the tree, compare with prior, zoom/pan and
W/L sync, each viewport's own AI result, and ``view A B --screenshot`` (offscreen)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402

from pneumoview.qt.studytree import INSTANCE_ROLE, NAME  # noqa: E402
from pneumoview.qt.viewportgrid import Layout  # noqa: E402
from tests.support.dicom_factory import make_dataset, save  # noqa: E402

TIMEOUT_MS = 30000


@pytest.fixture(autouse=True)
def _own_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("PNEUMOVIEW_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("PNEUMOVIEW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PNEUMOVIEW_CACHE_DIR", str(tmp_path / "cache"))


def gradient(rising: bool, shape: tuple[int, int] = (96, 128)) -> np.ndarray:
    ramp = np.linspace(0, 4000, shape[1]) if rising else np.linspace(4000, 0, shape[1])
    return np.tile(ramp, (shape[0], 1)).astype(np.uint16)


def study(folder, name: str, patient: str, date: str, rising: bool = True, time: str = "",
          shape: tuple[int, int] = (96, 128)):
    from pydicom.uid import generate_uid

    ds = make_dataset(gradient(rising, shape), modality="CR", PatientID=patient,
                      PatientName=f"Test^{patient}", StudyDate=date, StudyTime=time,
                      StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid(),
                      SeriesNumber=1, InstanceNumber=1)
    return str(save(ds, folder / f"{name}.dcm"))


def wait_idle(qtbot, win) -> None:
    qtbot.waitUntil(lambda: win.runner.pending() == 0, timeout=TIMEOUT_MS)


def open_folder(qtbot, win, folder) -> None:
    with qtbot.waitSignal(win.indexFinished, timeout=TIMEOUT_MS):
        win.open_folder(str(folder))
    wait_idle(qtbot, win)


def instance(win, path: str):
    return win.tree.instance_item(path).data(NAME, INSTANCE_ROLE)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "studies"
    root.mkdir()
    paths = {"new": study(root, "new", "P1", "20240301", rising=True),
             "old": study(root, "old", "P1", "20200101", rising=False),
             "mid": study(root, "mid", "P1", "20230615", rising=False, shape=(120, 80)),
             "other": study(root, "other", "P2", "20230101")}
    return root, paths


def test_layouts_from_the_view_menu_and_its_shortcuts(qtbot, make_viewer_window):
    from pneumoview.qt.helpdialogs import shortcut_rows

    win = make_viewer_window()
    grid = win.viewports
    assert len(grid.visible()) == 1
    win.acts.layouts[Layout.ONE_BY_TWO].trigger()
    assert len(grid.visible()) == 2 and not grid.visible()[1].isHidden()
    win.acts.layouts[Layout.TWO_BY_TWO].trigger()
    assert len(grid.visible()) == 4
    grid.set_active(grid.viewports[3])
    win.acts.layouts[Layout.ONE].trigger()
    assert grid.active is grid.viewports[0]  # the active one was hidden
    assert grid.viewports[1].isHidden()
    rows = {(command, keys) for _menu, command, keys in shortcut_rows(win)}
    assert ("1 x 2", "Alt+2") in rows and ("2 x 2 (4)", "Alt+4") in rows
    assert any(command == "Compare with Prior" for command, _keys in rows)


def test_click_activates_and_the_tree_loads_into_the_active_viewport(qtbot, make_viewer_window,
                                                                      folder):
    root, paths = folder
    win = make_viewer_window()
    open_folder(qtbot, win, root)
    left = win.viewports.viewports[0]
    first = left.instance.path
    win.set_layout(Layout.ONE_BY_TWO)
    right = win.viewports.viewports[1]
    qtbot.mouseClick(right.view.graphics.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(20, 20))
    assert win.active_viewport is right and win.view is right.view
    target = next(p for p in paths.values() if p != first)
    with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS):
        assert win.tree.select_instance(target)
    assert right.decoded.path == target
    assert left.decoded.path == first  # untouched
    # clicking back makes the left one active and the tree follows without reloading
    qtbot.mouseClick(left.view.graphics.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(20, 20))
    assert win.active_viewport is left
    assert win.tree.current_instance().path == first
    assert right.decoded.path == target


def test_drag_a_series_from_the_tree_into_a_viewport(qtbot, make_viewer_window, folder):
    root, paths = folder
    win = make_viewer_window()
    open_folder(qtbot, win, root)
    win.set_layout(Layout.ONE_BY_TWO)
    series_row = win.tree.instance_item(paths["old"]).parent()
    mime = win.tree.mimeData([series_row])
    right = win.viewports.viewports[1]
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS):
        right.dropEvent(event)
    assert event.isAccepted()
    assert win.active_viewport is right and right.decoded.path == paths["old"]
    wait_idle(qtbot, win)


def test_compare_with_prior_puts_the_latest_earlier_study_on_the_right(qtbot,
                                                                       make_viewer_window,
                                                                       folder):
    root, paths = folder
    win = make_viewer_window()
    open_folder(qtbot, win, root)
    with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS):
        win.tree.select_instance(paths["new"])
    with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS):
        assert win.acts.compare_prior.isEnabled()
        win.acts.compare_prior.trigger()
    wait_idle(qtbot, win)
    left, right = win.viewports.visible()
    assert win.viewports.layout_kind is Layout.ONE_BY_TWO
    assert left.decoded.path == paths["new"]
    assert right.decoded.path == paths["mid"]  # 2023 beats 2020; P2's study is not his
    assert "2023-06-15" in win.statusBar().currentMessage()
    assert win.active_viewport is right
    assert win.tree.current_instance().path == paths["mid"]  # the tree follows the active one


def test_compare_with_prior_says_why_there_is_none(qtbot, make_viewer_window, folder):
    root, paths = folder
    win = make_viewer_window()
    open_folder(qtbot, win, root)
    with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS):
        win.tree.select_instance(paths["old"])
    assert not win.compare_with_prior()
    assert win.statusBar().currentMessage() == ("No prior to compare with: no earlier study of "
                                                "this patient is open")
    assert win.viewports.layout_kind is Layout.ONE


def new_beside_prior(qtbot, win, folder):
    """The window with ``folder`` open, its newest study shown and Compare with Prior done:
    (window, (left viewport, right viewport))."""
    root, paths = folder
    open_folder(qtbot, win, root)
    with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS):
        win.tree.select_instance(paths["new"])
    with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS):
        win.compare_with_prior()
    wait_idle(qtbot, win)
    return win, win.viewports.visible()


def _magnification(vp) -> float:
    from pneumoview.qt.viewportgrid import _fit_scale

    return vp.view.zoom() / _fit_scale(vp)


def _wheel(qtbot, view, steps: int) -> None:
    from PySide6.QtCore import QPoint as P
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    target = view.graphics.viewport()
    centre = QPointF(target.width() / 2, target.height() / 2)
    event = QWheelEvent(centre, QPointF(target.mapToGlobal(centre.toPoint())), P(0, 0),
                        P(0, 120 * steps), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(target, event)


def test_zoom_and_pan_follow_by_default_and_window_level_only_on_request(qtbot,
                                                                        make_viewer_window,
                                                                        folder):
    # the prior has another size (80 x 120)
    win, (left, right) = new_beside_prior(qtbot, make_viewer_window(), folder)
    assert win.acts.sync_zoom.isChecked() and not win.acts.sync_window.isChecked()
    _wheel(qtbot, left.view, 3)
    assert _magnification(left) > 1.5
    assert _magnification(right) == pytest.approx(_magnification(left), rel=0.02)
    win.acts.sync_zoom.trigger()  # off
    _wheel(qtbot, left.view, 2)
    assert _magnification(right) < _magnification(left) * 0.9
    # W/L: off by default
    before = right.view.window
    left.view.set_levels(1000, 500)
    assert right.view.window == before
    win.acts.sync_window.trigger()
    left.view.set_levels(1500, 700)
    assert (right.view.window.center, right.view.window.width) == (1500, 700)


def test_each_viewport_shows_its_own_ai_result_and_map(qtbot, make_viewer_window, folder):
    paths = folder[1]
    win, (left, right) = new_beside_prior(qtbot, make_viewer_window(), folder)
    assert win.ai.current == (paths["mid"], 0)
    assert win.ai.overlay.item.parentItem() is right.view.image_space
    assert win.reading.layer.view is right.view
    with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS):
        qtbot.mouseClick(left.view.graphics.viewport(), Qt.MouseButton.LeftButton,
                         pos=QPoint(20, 20))
    assert win.ai.current == (paths["new"], 0)
    assert win.ai.overlay.item.parentItem() is left.view.image_space
    assert win.reading.layer.view is left.view
    assert win.reading.markers.view is left.view
    wait_idle(qtbot, win)


def test_view_a_b_screenshot_shows_a_left_and_b_right(qtbot, tmp_path):
    from PIL import Image

    from pneumoview import cli
    from pneumoview.qt import app as viewer_app

    a = study(tmp_path, "a", "P1", "20240101", rising=True)
    b = study(tmp_path, "b", "P2", "20240101", rising=False)
    out = tmp_path / "pair.png"
    args = cli.build_parser().parse_args(["view", a, b, "--screenshot", str(out),
                                          "--model", str(tmp_path / "no-model")])
    assert args.path == [a, b]
    window = viewer_app.create_window(args)
    qtbot.addWidget(window)
    try:
        assert viewer_app.take_screenshot(window, str(out), timeout=60) == 0
        left, right = window.viewports.visible()
        assert (left.decoded.path, right.decoded.path) == (a, b)
        boxes = []
        for vp in (left, right):
            rect = vp.view.image_rect_in_widget()
            corner = vp.view.mapTo(window, QPoint(round(rect.left()), round(rect.top())))
            boxes.append((corner.x(), corner.y(), round(rect.width()), round(rect.height())))
    finally:
        window.close()
    shot = np.asarray(Image.open(out).convert("L")).astype(float)
    assert shot.shape == (viewer_app.SCREENSHOT_SIZE[1], viewer_app.SCREENSHOT_SIZE[0])
    slopes = []
    for x, y, w, h in boxes:
        band = shot[y + h // 3:y + 2 * h // 3, x + w // 10:x + 9 * w // 10].mean(axis=0)
        slopes.append(band[-1] - band[0])
    assert boxes[0][0] + boxes[0][2] <= boxes[1][0]  # A is left of B
    assert slopes[0] > 100 and slopes[1] < -100  # A rises, B falls


def test_view_takes_two_to_four_files_only(qtbot, make_viewer_window, tmp_path):
    win = make_viewer_window()
    assert not win.open_side_by_side([str(tmp_path), str(tmp_path)])
    assert "not a file" in win.statusBar().currentMessage()
    _ = argparse  # the CLI's Namespace is what create_window reads


def test_non_square_pixels_are_shown_at_their_physical_aspect(qtbot, make_viewer_window,
                                                             tmp_path):
    """PixelSpacing 0.2 \\ 0.1 (row \\ column): a 100 x 100 pixel image is 20 mm tall and 10 mm
    wide, so on screen it is twice as tall as wide, and after a quarter turn twice as wide."""
    ds = make_dataset(gradient(True, (100, 100)), modality="CR", PatientID="P1",
                      PixelSpacing=[0.2, 0.1])
    path = str(save(ds, tmp_path / "tall.dcm"))
    win = make_viewer_window()
    with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS):
        win.open_files([path])
    wait_idle(qtbot, win)
    rect = win.view.image_rect_in_widget()
    assert rect.height() / rect.width() == pytest.approx(2.0, rel=0.02)
    win.reading.act_rotate_right.trigger()
    rect = win.view.image_rect_in_widget()
    assert rect.width() / rect.height() == pytest.approx(2.0, rel=0.02)
    win.view.reset()
    assert win.view.image_rect_in_widget().height() > 1.9 * win.view.image_rect_in_widget().width()


def test_zooming_back_across_a_downsampling_factor_averages_nothing_again(qtbot, monkeypatch):
    """Wheel in, wheel out: the screen-sized average of each factor is kept (a 2x2 layout of
    large images crosses factors at almost every wheel step)."""
    from pneumoview.core.dicomio import DecodedImage
    from pneumoview.core.windowing import Window
    from pneumoview.qt import radiographview
    from pneumoview.qt.radiographview import RadiographView

    calls = []
    real = radiographview.block_mean
    monkeypatch.setattr(radiographview, "block_mean",
                        lambda *a: calls.append(a[1:]) or real(*a))
    view = RadiographView()
    qtbot.addWidget(view)
    view.resize(400, 400)
    view.show()
    qtbot.waitExposed(view)
    values = np.tile(np.arange(1300, dtype=np.uint16), (1300, 1))  # 3.25 pixels per screen px
    view.set_image(DecodedImage("z", values, 0, 1, "MONOCHROME2", False, "CR",
                                (Window("w", 600.0, 1200.0),), None), fit=True)
    qtbot.wait(50)  # the ViewBox takes its size
    view.fit()

    def draw() -> tuple[int, int]:
        qtbot.wait(20)
        view.graphics.viewport().repaint()
        return view.image_item._lastDownsample

    fitted = draw()
    view.view_box.scaleBy((0.8, 0.8))
    zoomed = draw()
    assert fitted == (3, 3) and zoomed == (2, 2)
    view.view_box.scaleBy((1.25, 1.25))
    assert draw() == fitted
    assert len(calls) == len(set(calls)) == 2, calls


def test_corner_text_does_not_overlap_in_a_narrow_viewport(qtbot, make_viewer_window, tmp_path):
    ds = make_dataset(gradient(True), modality="CR", PatientID="P1", PatientName="Long^Name",
                      SeriesNumber=2, SeriesDescription="Chest PA, a long series description")
    path = str(save(ds, tmp_path / "narrow.dcm"))
    win = make_viewer_window()
    win.set_layout(Layout.TWO_BY_TWO)
    with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS):
        win.open_files([path])
    wait_idle(qtbot, win)
    corners = win.view._corners
    assert all(corners[k].isVisible() for k in ("tl", "tr", "bl", "br"))
    assert corners["tl"].width() + corners["tr"].width() > win.view.graphics.width() - 18
    assert not corners["tl"].geometry().intersects(corners["tr"].geometry())
    assert not corners["bl"].geometry().intersects(corners["br"].geometry())
