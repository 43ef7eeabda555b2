"""The annotations of the image on screen: their items, the drawing modes, selection.

The layer holds every annotation of the current image (all frames) and shows those of the
frame on screen. A *mode* (a :class:`Kind`) makes left-drags draw instead of pan: distance,
arrow, rectangle and ellipse are one drag; an angle is a drag for its first arm, then a click
for the end of the second; text is a click (the text is asked for). Esc (mode None) gives the
left button back to panning. Handles stay draggable in every mode.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal

from pneumoview.core.dicomio import DecodedImage
from pneumoview.core.reading.annotations import Annotation, Kind, measure_lines
from pneumoview.core.reading.roi import modality_units
from pneumoview.core.reading.spacing import PIXELS, PixelScale, pixel_scale
from pneumoview.qt.radiographview import TOOL_LAYER_Z
from pneumoview.qt.tools.items import AnnotationItem

#: Above the image (0), the AI heat map (10) and the file's overlay planes (20).
ANNOTATION_Z = TOOL_LAYER_Z
#: Image pixels: a drawn shape smaller than this is taken for a slip and dropped.
MIN_SIZE = 0.5

TextAsker = Callable[[], str | None]


class _Capture(pg.GraphicsObject):
    """Covers the image while a drawing mode is on and turns left-button gestures into
    drawing; right-drags (window/level) and the wheel go through to the view."""

    def __init__(self, layer: AnnotationLayer) -> None:
        super().__init__()
        self.layer = layer
        self.rect = QRectF()
        self.setAcceptHoverEvents(True)

    def boundingRect(self) -> QRectF:
        return self.rect

    def paint(self, *args) -> None:  # noqa: ANN002 - invisible
        return None

    def mouseDragEvent(self, ev) -> None:  # noqa: ANN001, N802 - pyqtgraph's name
        if ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        pos = _xy(ev.pos())
        if ev.isStart():
            self.layer.begin_drag(_xy(ev.buttonDownPos()))
        self.layer.drag_to(pos, finish=ev.isFinish())

    def mouseClickEvent(self, ev) -> None:  # noqa: ANN001, N802
        if ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        self.layer.click(_xy(ev.pos()))

    def hoverEvent(self, ev) -> None:  # noqa: ANN001, N802
        if not ev.isExit():
            self.layer.hover(_xy(ev.pos()))


def _xy(p: QPointF) -> tuple[float, float]:
    return float(p.x()), float(p.y())


class AnnotationLayer(QObject):
    """Annotations of the current image on ``view`` (a RadiographView)."""

    changed = Signal()  # the list was edited: save it
    selectionChanged = Signal(object)  # annotation id or None
    modeChanged = Signal(object)  # Kind or None

    def __init__(self, view, ask_text: TextAsker | None = None) -> None:  # noqa: ANN001
        super().__init__(view)
        self.view = view
        self.ask_text = ask_text or (lambda: None)
        self.annotations: list[Annotation] = []
        self.items: dict[str, AnnotationItem] = {}
        self.mode: Kind | None = None
        self.selected: str | None = None
        self.decoded: DecodedImage | None = None
        self.scale: PixelScale = PIXELS
        self.units = ""
        self._drawing: AnnotationItem | None = None
        self._angle_pending = False
        self._capture = _Capture(self)
        self._capture.setZValue(ANNOTATION_Z - 1)
        self._capture.setVisible(False)
        view.add_layer(self._capture, z=ANNOTATION_Z - 1)

    def set_view(self, view) -> None:  # noqa: ANN001 - a RadiographView
        """Draw on ``view`` from now on (the active viewport's); the caller then shows its
        image with :meth:`show_image`."""
        if view is self.view:
            return
        self._cancel_drawing()
        for item in self.items.values():
            self.view.remove_layer(item)
        self.items = {}
        self.view.remove_layer(self._capture)
        self.view = view
        view.add_layer(self._capture, z=ANNOTATION_Z - 1)

    # -- the image ------------------------------------------------------------------------------
    def show_image(self, decoded: DecodedImage | None,
                   annotations: list[Annotation] | None = None) -> None:
        """Show ``decoded``'s frame; with ``annotations`` they replace the list (a new image)."""
        self._cancel_drawing()
        if annotations is not None:
            self.annotations = list(annotations)
            self.selected = None
        self.decoded = decoded
        frame = decoded.frame if decoded is not None else 0
        self.scale = pixel_scale(decoded.header, frame) if decoded is not None else PIXELS
        self.units = modality_units(decoded.header, frame) if decoded is not None else ""
        if decoded is not None:
            h, w = decoded.shape
            self._capture.prepareGeometryChange()
            self._capture.rect = QRectF(0, 0, w, h)
        self._rebuild()

    def frame_annotations(self) -> list[Annotation]:
        frame = self.decoded.frame if self.decoded is not None else 0
        return [a for a in self.annotations if a.frame == frame]

    def lines(self, annotation: Annotation) -> list[str]:
        """What ``annotation`` measures on the current image."""
        values = None
        if self.decoded is not None and not self.decoded.is_colour \
                and annotation.frame == self.decoded.frame:
            values = self.decoded.values
        return measure_lines(annotation, self.scale, values, self.units)

    def _rebuild(self) -> None:
        for item in self.items.values():
            self.view.remove_layer(item)
        self.items = {}
        if self.decoded is None:
            return
        for a in self.frame_annotations():
            self._add_item(a)

    def _add_item(self, a: Annotation) -> AnnotationItem:
        item = AnnotationItem(a)
        self.view.add_layer(item, z=ANNOTATION_Z)
        item.sigRegionChanged.connect(self._on_item_moving)
        item.sigRegionChangeFinished.connect(self._on_item_moved)
        item.sigClicked.connect(lambda it, _ev: self.select(it.annotation.id))
        item.set_label(self.lines(a))
        item.set_selected(a.id == self.selected)
        self.items[a.id] = item
        return item

    # -- editing ---------------------------------------------------------------------------------
    def add(self, annotation: Annotation) -> None:
        self.annotations.append(annotation)
        if self.decoded is not None and annotation.frame == self.decoded.frame:
            self._add_item(annotation)
        self.select(annotation.id)
        self.changed.emit()

    def replace(self, annotation: Annotation) -> None:
        self.annotations = [annotation if a.id == annotation.id else a for a in self.annotations]
        item = self.items.get(annotation.id)
        if item is not None:
            item.annotation = annotation
            item.set_label(self.lines(annotation))
        self.changed.emit()

    def delete(self, annotation_id: str) -> bool:
        before = len(self.annotations)
        self.annotations = [a for a in self.annotations if a.id != annotation_id]
        item = self.items.pop(annotation_id, None)
        if item is not None:
            self.view.remove_layer(item)
        if self.selected == annotation_id:
            self.select(None)
        if len(self.annotations) != before:
            self.changed.emit()
            return True
        return False

    def delete_selected(self) -> bool:
        return self.selected is not None and self.delete(self.selected)

    def select(self, annotation_id: str | None) -> None:
        self.selected = annotation_id
        for ident, item in self.items.items():
            item.set_selected(ident == annotation_id)
        self.selectionChanged.emit(annotation_id)

    def _on_item_moving(self, item: AnnotationItem) -> None:
        if item is not self._drawing:
            item.set_label(self.lines(item.current()))

    def _on_item_moved(self, item: AnnotationItem) -> None:
        if item is self._drawing or item.annotation.id not in self.items:
            return
        moved = item.current()
        if moved.points != item.annotation.points:
            self.replace(moved)

    # -- drawing ---------------------------------------------------------------------------------
    def set_mode(self, kind: Kind | None) -> None:
        self._cancel_drawing()
        self.mode = kind
        self._capture.setVisible(kind is not None)
        self.modeChanged.emit(kind)

    def _frame(self) -> int:
        return self.decoded.frame if self.decoded is not None else 0

    def begin_drag(self, start: tuple[float, float]) -> None:
        if self.mode is None or self.mode is Kind.TEXT or self.decoded is None:
            return
        if self._angle_pending:  # a drag instead of the second click: start over
            self._cancel_drawing()
        pts = (start,) * self.mode.n_points
        self._drawing = self._add_item(Annotation(self.mode, pts, self._frame()))

    def drag_to(self, pos: tuple[float, float], finish: bool) -> None:
        item = self._drawing
        if item is None or self._angle_pending:
            return
        index = 1  # the second point: end of a line, opposite corner, or the angle's vertex
        item.set_point(index, pos)
        if item.kind is Kind.ANGLE:
            item.set_point(2, pos)
        item.set_label(self.lines(item.current()))
        if finish:
            if _too_small(item.current()):
                self._cancel_drawing()
            elif item.kind is Kind.ANGLE:
                self._angle_pending = True  # the second arm follows the mouse until a click
            else:
                self._commit()

    def hover(self, pos: tuple[float, float]) -> None:
        if self._angle_pending and self._drawing is not None:
            self._drawing.set_point(2, pos)
            self._drawing.set_label(self.lines(self._drawing.current()))

    def click(self, pos: tuple[float, float]) -> None:
        if self._angle_pending and self._drawing is not None:
            self._drawing.set_point(2, pos)
            self._commit()
        elif self.mode is Kind.TEXT and self.decoded is not None:
            text = (self.ask_text() or "").strip()
            if text:
                self.add(Annotation(Kind.TEXT, (pos,), self._frame(), text))
        elif self.mode is None:
            self.select(None)

    def _commit(self) -> None:
        item = self._drawing
        self._drawing, self._angle_pending = None, False
        if item is None:
            return
        self.items.pop(item.annotation.id, None)
        self.view.remove_layer(item)
        self.add(item.current())

    def _cancel_drawing(self) -> None:
        item = self._drawing
        self._drawing, self._angle_pending = None, False
        if item is not None:
            self.items.pop(item.annotation.id, None)
            self.view.remove_layer(item)


def _too_small(a: Annotation) -> bool:
    pts = np.array(a.points)
    return bool(np.ptp(pts[:, 0]) < MIN_SIZE and np.ptp(pts[:, 1]) < MIN_SIZE)
