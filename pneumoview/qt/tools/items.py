"""One graphics item per annotation: a pyqtgraph ROI whose free handles are its points.

Every kind is drawn through its control points (two corners for rectangles and ellipses, so
the stored form and the handles are the same thing). Lines are cosmetic (constant screen
width); the label is a :class:`pyqtgraph.TextItem`, which keeps a constant screen size and
stays upright when the view is rotated or flipped.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainterPath, QPainterPathStroker, QPolygonF

from pneumoview.core.reading.annotations import Annotation, Kind

COLOUR = QColor(255, 210, 60)
SELECTED = QColor(80, 220, 255)
#: Screen pixels: the arrowhead's length and the width of the area that catches the mouse.
ARROW_HEAD_PX = 14
HIT_PX = 8


class AnnotationItem(pg.ROI):
    """Draws one :class:`Annotation`; dragging a handle or the whole item edits it."""

    def __init__(self, annotation: Annotation) -> None:
        super().__init__((0, 0), (1, 1), movable=True, rotatable=False, resizable=False,
                         pen=pg.mkPen(COLOUR, width=2), hoverPen=pg.mkPen(SELECTED, width=2),
                         handlePen=pg.mkPen(COLOUR), handleHoverPen=pg.mkPen(SELECTED))
        self.annotation = annotation
        self.kind = annotation.kind
        self.selected = False
        self.setAcceptedMouseButtons(Qt.MouseButton.LeftButton)
        for p in annotation.points:
            self.addFreeHandle(QPointF(*p))
        self.label = pg.TextItem("", color=COLOUR, fill=pg.mkBrush(0, 0, 0, 150),
                                 anchor=(0, 1))
        self.label.setParentItem(self)
        self._shape_key: tuple | None = None  # (points, item units per pixel) of _shape
        self._outline = QPainterPath()
        self._shape = QPainterPath()
        self.sigRegionChanged.connect(self._place_label)

    # -- state ---------------------------------------------------------------------------------
    def points(self) -> tuple[tuple[float, float], ...]:
        """The handles' positions in image pixels (the parent's coordinates)."""
        out = []
        for h in self.getHandles():
            p = self.mapToParent(h.pos())
            out.append((float(p.x()), float(p.y())))
        return tuple(out)

    def current(self) -> Annotation:
        """The annotation as the reader has left it (same id)."""
        return Annotation(self.kind, self.points(), self.annotation.frame,
                          self.annotation.text, self.annotation.id)

    def set_point(self, index: int, point: tuple[float, float]) -> None:
        """Move handle ``index`` (while the reader is drawing the item)."""
        self.movePoint(self.getHandles()[index], QPointF(*point), finish=False)

    def set_label(self, lines: list[str]) -> None:
        self.label.setText("\n".join(lines))
        self.label.setVisible(bool(lines))
        self._place_label()

    def set_selected(self, on: bool) -> None:
        self.selected = on
        colour = SELECTED if on else COLOUR
        self.setPen(pg.mkPen(colour, width=3 if on else 2))
        self.label.setColor(colour)

    # -- drawing -------------------------------------------------------------------------------
    def _local(self) -> list[QPointF]:
        return [h.pos() for h in self.getHandles()]

    def _px(self) -> float:
        """Item units per screen pixel (1 before the item is on screen)."""
        length = self.pixelLength(pg.Point(1, 0))
        return float(length) if length and math.isfinite(length) else 1.0

    def outline(self) -> QPainterPath:
        pts = self._local()
        path = QPainterPath()
        if self.kind in (Kind.RECTANGLE, Kind.ELLIPSE):
            rect = QRectF(pts[0], pts[1]).normalized()
            if self.kind is Kind.RECTANGLE:
                path.addRect(rect)
            else:
                path.addEllipse(rect)
        elif self.kind is Kind.TEXT:
            path.addEllipse(pts[0], 2 * self._px(), 2 * self._px())
        else:
            path.moveTo(pts[0])
            for p in pts[1:]:
                path.lineTo(p)
            if self.kind is Kind.ARROW:
                path.addPolygon(self._arrow_head(pts[0], pts[1]))
        return path

    def _arrow_head(self, tail: QPointF, head: QPointF) -> QPolygonF:
        d = head - tail
        length = math.hypot(d.x(), d.y())
        if length == 0:
            return QPolygonF()
        ux, uy = d.x() / length, d.y() / length
        size = ARROW_HEAD_PX * self._px()
        back = QPointF(head.x() - ux * size, head.y() - uy * size)
        side = QPointF(-uy * size * 0.45, ux * size * 0.45)
        return QPolygonF([back + side, head, back - side])

    def _paths(self) -> tuple[QPainterPath, QPainterPath]:
        """(outline, mouse shape), recomputed only when a handle moved or the zoom changed:
        Qt asks for the bounding rect on every repaint, a W/L drag included."""
        key = (tuple((h.x(), h.y()) for h in self._local()), round(self._px(), 6))
        if key != self._shape_key:
            outline = self.outline()
            stroker = QPainterPathStroker()
            stroker.setWidth(HIT_PX * key[1])
            shape = stroker.createStroke(outline)
            if self.kind in (Kind.RECTANGLE, Kind.ELLIPSE, Kind.TEXT):
                shape.addPath(outline)  # grab a region anywhere inside
            self._shape_key, self._outline, self._shape = key, outline, shape
        return self._outline, self._shape

    def paint(self, p, *args) -> None:  # noqa: ANN001, ANN002
        p.setPen(self.currentPen)
        p.drawPath(self._paths()[0])

    def shape(self) -> QPainterPath:
        return self._paths()[1]

    def boundingRect(self) -> QRectF:
        return self.shape().boundingRect()

    def _place_label(self) -> None:
        pts = self._local()
        if self.kind in (Kind.RECTANGLE, Kind.ELLIPSE):
            rect = QRectF(pts[0], pts[1]).normalized()
            anchor = QPointF(rect.right(), rect.bottom())
        elif self.kind is Kind.ANGLE:
            anchor = pts[1]
        elif self.kind is Kind.TEXT:
            anchor = pts[0]
        else:
            anchor = pts[-1]
        self.label.setPos(anchor)
        self.prepareGeometryChange()
