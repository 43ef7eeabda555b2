"""The reading tools on a real image view (offscreen): drawing, editing, deleting, saving,
rotating with markers, and the full-resolution export, through the host protocol."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QDockWidget, QMainWindow

from pneumoview.core.dicomio import decode
from pneumoview.core.reading.annotations import Annotation, Kind
from pneumoview.core.reading.store import AnnotationStore, image_key
from pneumoview.qt.radiographview import RadiographView
from pneumoview.qt.studytree import StudyTree
from pneumoview.qt.tools.controller import ReadingTools
from pneumoview.qt.workers import WorkRunner
from tests.support.dicom_factory import make_dataset, save

pytestmark = pytest.mark.gui


class FakeHost(QMainWindow):
    """The members of the host protocol the reading tools use."""

    imageShown = Signal(object)
    imageFailed = Signal(str, str)
    instancesAdded = Signal(object)
    folderOpened = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.view = RadiographView()
        self.setCentralWidget(self.view)
        self.runner = WorkRunner(self)
        self.errors: list[str] = []
        self.messages: list[str] = []
        self.current_root: str | None = None
        self.tree = StudyTree()
        self.resize(700, 700)

    def open_in_viewer(self, path: str) -> None:
        self.show_file(path)

    def report(self, message: str) -> None:
        self.messages.append(message)

    def add_menu_action(self, _slot, action) -> None:
        self.addAction(action)

    def add_dock(self, name, title, widget, area, **_kw) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area.value, dock)
        return dock

    def report_error(self, message: str) -> None:
        self.errors.append(message)

    def show_file(self, path) -> None:
        decoded = decode(path)
        self.view.set_image(decoded)
        self.imageShown.emit(decoded)


@pytest.fixture
def image_file(tmp_path):
    yy, xx = np.mgrid[0:200, 0:300]
    arr = (xx * 10 + yy).astype(np.uint16)  # value = 10 * column + row
    ds = make_dataset(arr, PixelSpacing=[0.2, 0.1], PatientOrientation=["L", "F"])
    return save(ds, tmp_path / "cxr.dcm")


@pytest.fixture
def host(qtbot, tmp_path):
    win = FakeHost()
    qtbot.addWidget(win)
    win.tools = ReadingTools(win, AnnotationStore(tmp_path / "store"))
    win.tools.attach(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.runner.shutdown()


def _idle(qtbot, host) -> None:
    qtbot.waitUntil(lambda: host.runner.pending() == 0, timeout=10_000)


_last_drag = 0.0


def _screen(view, x: float, y: float) -> QPoint:
    """Viewport pixel of image point (x, y)."""
    scene = view.image_space.mapToScene(QPointF(x, y))
    return view.graphics.mapFromScene(scene)


def _drag(view, a, b) -> None:
    """A left drag from image point a to b. Two presses within the double-click interval are
    a double click to Qt whatever the distance, and pyqtgraph then reports a click, not a
    drag: each drag starts after that interval has passed since the last one."""
    global _last_drag
    gap = QApplication.styleHints().mouseDoubleClickInterval() / 1000.0 + 0.05
    while time.monotonic() - _last_drag < gap:
        QTest.qWait(20)
    vp = view.graphics.viewport()
    p0, p1 = _screen(view, *a), _screen(view, *b)
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, p0)
    for t in (0.25, 0.5, 0.75, 1.0):
        QTest.mouseMove(vp, p0 + (p1 - p0) * t)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, p1)
    _last_drag = time.monotonic()


def test_distance_drawn_with_the_mouse_is_in_mm_along_both_axes(qtbot, host, image_file) -> None:
    host.show_file(image_file)
    _idle(qtbot, host)
    tools = host.tools
    tools.mode_actions[Kind.DISTANCE].trigger()
    _drag(host.view, (50, 50), (50, 150))  # 100 rows down: 20 mm
    qtbot.waitUntil(lambda: len(tools.layer.annotations) == 1, timeout=5000)
    a = tools.layer.annotations[0]
    assert a.kind is Kind.DISTANCE
    assert a.points[0] == pytest.approx((50, 50), abs=1.5)
    assert a.points[1] == pytest.approx((50, 150), abs=1.5)
    assert tools.layer.lines(a)[0].endswith(" mm")
    assert float(tools.layer.lines(a)[0].split()[0]) == pytest.approx(20.0, abs=0.4)
    _drag(host.view, (100, 100), (200, 100))  # 100 columns across: 10 mm
    qtbot.waitUntil(lambda: len(tools.layer.annotations) == 2, timeout=5000)
    assert float(tools.layer.lines(tools.layer.annotations[1])[0].split()[0]) == pytest.approx(
        10.0, abs=0.2)
    rows = tools.panel.rows()
    assert [r[0] for r in rows] == ["Distance", "Distance"]
    assert "Pixel Spacing 0.2 \\ 0.1 mm" in tools.panel.scale_label.text()


def test_roi_statistics_and_saved_edits_come_back(qtbot, host, image_file, tmp_path) -> None:
    host.show_file(image_file)
    _idle(qtbot, host)
    tools = host.tools
    tools.mode_actions[Kind.RECTANGLE].trigger()
    tools.layer.begin_drag((10.0, 20.0))
    tools.layer.drag_to((20.0, 30.0), finish=True)  # columns 10-19, rows 20-29
    [roi] = tools.layer.annotations
    block = (np.arange(10, 20)[None, :] * 10 + np.arange(20, 30)[:, None]).astype(float)
    assert tools.layer.lines(roi)[0] == f"Mean {block.mean():.1f}  SD {block.std():.1f}"
    assert tools.layer.lines(roi)[1] == "Min 120.0  Max 219.0"
    # drag a handle: the edit is saved
    item = tools.layer.items[roi.id]
    item.movePoint(item.getHandles()[1], QPointF(40, 30))
    _idle(qtbot, host)
    key = image_key(decode(image_file).header)
    [saved] = AnnotationStore(tmp_path / "store").load(key)
    assert saved.points[1] == pytest.approx((40, 30))
    # a new session shows it again
    other = FakeHost()
    qtbot.addWidget(other)
    other.tools = ReadingTools(other, AnnotationStore(tmp_path / "store"))
    other.tools.attach(other)
    other.show_file(image_file)
    _idle(qtbot, other)
    assert [a.id for a in other.tools.layer.annotations] == [roi.id]
    assert roi.id in other.tools.layer.items
    other.runner.shutdown()


def test_delete_text_and_angle(qtbot, host, image_file) -> None:
    host.show_file(image_file)
    _idle(qtbot, host)
    layer = host.tools.layer
    layer.ask_text = lambda: "effusion?"
    host.tools.mode_actions[Kind.TEXT].trigger()
    layer.click((30.0, 40.0))
    assert layer.annotations[-1].text == "effusion?"
    host.tools.mode_actions[Kind.ANGLE].trigger()
    layer.begin_drag((100.0, 0.0))
    layer.drag_to((0.0, 0.0), finish=True)  # first arm: end -> vertex
    assert len(layer.annotations) == 1  # waits for the second end
    layer.hover((0.0, 50.0))
    layer.click((0.0, 50.0))
    angle = layer.annotations[-1]
    assert angle.kind is Kind.ANGLE and layer.lines(angle) == ["90.0°"]
    assert layer.selected == angle.id
    host.tools.act_delete.trigger()
    assert [a.kind for a in layer.annotations] == [Kind.TEXT]
    host.tools.mode_actions[None].trigger()
    assert layer.mode is None and not layer._capture.isVisible()


def test_rotation_moves_markers_and_annotations(qtbot, host, image_file) -> None:
    host.show_file(image_file)
    _idle(qtbot, host)
    tools = host.tools
    tools.layer.add(Annotation(Kind.DISTANCE, ((0.0, 0.0), (300.0, 0.0))))
    assert tools.markers.text() == {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    assert tools.markers.labels["left"].text() == "R"
    tools.act_rotate_right.trigger()
    assert tools.markers.text() == {"left": "F", "right": "H", "top": "R", "bottom": "L"}
    # the top edge of the image is now the right edge of the screen: the line is vertical
    item = tools.layer.items[tools.layer.annotations[0].id]
    rect = item.mapRectToScene(item.boundingRect())
    assert rect.height() > 5 * rect.width()
    tools.act_flip_h.trigger()
    assert tools.markers.text()["left"] == "H"
    tools.act_markers.trigger()
    assert tools.markers.text() == {} and not tools.markers.labels["left"].isVisible()


def test_a_damaged_store_file_is_reported_and_never_overwritten(qtbot, host, image_file,
                                                                tmp_path) -> None:
    store = AnnotationStore(tmp_path / "store")
    path = store.path_for(image_key(decode(image_file).header))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{broken")
    host.show_file(image_file)
    _idle(qtbot, host)
    assert host.errors and str(path) in host.errors[0]
    host.tools.layer.add(Annotation(Kind.DISTANCE, ((0.0, 0.0), (10.0, 0.0))))
    _idle(qtbot, host)
    assert path.read_bytes() == b"{broken"


def test_export_is_full_resolution_with_annotations(qtbot, host, image_file, tmp_path) -> None:
    from pneumoview.qt.export_image import export_view

    host.resize(400, 300)  # a small window: the export must not depend on it
    host.show_file(image_file)
    _idle(qtbot, host)
    host.tools.layer.add(Annotation(Kind.DISTANCE, ((20.0, 100.0), (280.0, 100.0))))
    out = export_view(host.view, tmp_path / "x.png", ["caption", "NOT FOR DIAGNOSTIC USE"])
    img = QImage(str(out))
    assert img.width() >= 300 and img.height() > 200
    line = QImage(img).pixelColor(150, 100)
    assert line.red() > 200 and line.green() > 150 and line.blue() < 120  # the yellow line
    plain = img.pixelColor(150, 20)
    assert abs(plain.red() - plain.blue()) < 3  # grey image elsewhere
    host.tools.act_rotate_right.trigger()
    rotated = QImage(str(export_view(host.view, tmp_path / "r.png", ["c"], long_side=100)))
    assert rotated.width() < rotated.height() or rotated.width() == 100


def test_presentation_state_saved_then_offered_and_applied(qtbot, host, image_file, tmp_path,
                                                           tmp_path_factory) -> None:
    from types import SimpleNamespace

    from pneumoview.core.reading.gsps import GSPS_SOP_CLASS

    host.current_root = str(image_file.parent)
    host.show_file(image_file)
    _idle(qtbot, host)
    tools = host.tools
    tools.layer.add(Annotation(Kind.DISTANCE, ((10.0, 10.0), (10.0, 60.0))))
    host.view.set_levels(1500, 800)
    tools.act_rotate_right.trigger()
    assert tools.save_state(str(image_file.parent / "pr.dcm")) is None  # the scanned folder
    assert "does not write into the folder" in host.errors[-1]
    out = tmp_path_factory.mktemp("elsewhere") / "pr.dcm"
    tools.save_state(str(out))
    _idle(qtbot, host)
    assert out.is_file(), host.errors
    # another session, another store: the state is found while indexing and offered
    other = FakeHost()
    qtbot.addWidget(other)
    other.tools = ReadingTools(other, AnnotationStore(tmp_path / "store2"))
    other.tools.attach(other)
    other.instancesAdded.emit([SimpleNamespace(path=str(out), sop_class_uid=GSPS_SOP_CLASS)])
    _idle(qtbot, other)
    other.show_file(image_file)
    _idle(qtbot, other)
    assert other.tools.act_apply_state.isEnabled()
    assert any("presentation state" in m for m in other.messages)
    assert other.tools.apply_found_state()
    assert (other.view.window.center, other.view.window.width) == (1500, 800)
    assert other.view.view_transform.quarter_turns == 1
    [a] = other.tools.layer.annotations
    assert a.kind is Kind.DISTANCE and a.points == ((10.0, 10.0), (10.0, 60.0))
    other.tools.apply_found_state()
    assert len(other.tools.layer.annotations) == 1  # applied once
    other.runner.shutdown()


def test_magnifier_shows_the_images_own_pixels(qtbot, host, image_file) -> None:
    from pneumoview.qt.tools.magnifier import patch

    host.show_file(image_file)
    _idle(qtbot, host)
    view = host.view
    view.set_levels(1500, 3000)
    tools = host.tools
    tools.act_magnifier.trigger()
    assert tools.magnifier.show_at(QPointF(_screen(view, 150.5, 100.5)))
    assert tools.magnifier.loupe.isVisible()
    # the centre pixel of the patch is the windowed value of image pixel (150, 100)
    p = patch(view, (150.5, 100.5), 9)
    from pneumoview.core.windowing import apply_window
    expected = apply_window(view.decoded.values[100:101, 150:151], view.window)[0, 0]
    assert int(p[4, 4, 0]) == int(expected)
    # rotated: display point of the same image pixel gives the same value
    tools.act_rotate_right.trigger()
    x, y = view.view_transform.to_display((150.5, 100.5), view.decoded.shape)
    assert int(patch(view, (x, y), 9)[4, 4, 0]) == int(expected)


def test_cine_steps_only_once_the_frame_is_shown(qtbot) -> None:
    from PySide6.QtCore import Qt as _Qt
    from PySide6.QtWidgets import QSlider

    from pneumoview.qt.tools.cine import CineControl

    slider = QSlider(_Qt.Orientation.Horizontal)
    slider.setRange(0, 2)
    shown = {"frame": 0}
    cine = CineControl(slider, lambda: shown["frame"])
    cine.set_image(None)
    cine.toggle()
    assert cine.playing
    cine._tick()
    assert slider.value() == 1
    cine._tick()  # frame 1 not shown yet: no step
    assert slider.value() == 1
    shown["frame"] = 1
    cine._tick()
    shown["frame"] = 2
    cine._tick()
    assert slider.value() == 0  # wraps
    cine.step(-1)
    assert slider.value() == 2
    cine.toggle()
    assert not cine.playing
