"""Export Image at full resolution: the image at its own pixel grid (or a chosen size), with
what is shown over it, the overlay's colour bar and the caption.

Everything is taken from the view as the reader sees it, so the export needs no knowledge of
the features that drew there: the window and inversion, the rotation/flip, every visible
ImageItem layer on the image grid (the AI heat map, the file's overlay planes) composed in
numpy at the image's pixels (:mod:`pneumoview.core.reading.composite`), and the annotation
items drawn as vectors at the output's resolution. A layer that sets ``colourbar_label``
(the CAM) gets a colour bar of its lookup table.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QLinearGradient, QPainter, QPen

from pneumoview.core import colour, windowing
from pneumoview.core.reading.annotations import Kind
from pneumoview.core.reading.composite import blend, to_rgb
from pneumoview.core.reading.exportlayout import ExportLayout, export_layout, scale_for
from pneumoview.qt.export_image import NOT_FOR_DIAGNOSTIC_USE
from pneumoview.qt.tools.items import COLOUR, AnnotationItem

NOTICE_COLOUR = QColor(255, 200, 60)


def base_image(view) -> np.ndarray:  # noqa: ANN001 - a RadiographView
    """The image as windowed on screen, at its own grid, (H, W, 3) uint8."""
    d = view.decoded
    if d is None:
        raise ValueError("no image to export")
    if d.is_colour:
        rgb = colour.to_display8(d.values[..., :3], d.colour_bits)
        return to_rgb(255 - rgb if view.user_invert else rgb)
    return to_rgb(windowing.apply_window(d.values, view.window, view.effective_invert))


def _layer_items(view) -> list[pg.ImageItem]:  # noqa: ANN001
    items = [c for c in view.image_space.childItems()
             if isinstance(c, pg.ImageItem) and c is not view.image_item and c.isVisible()
             and c.image is not None]
    return sorted(items, key=lambda c: c.zValue())


def _item_rgba(item: pg.ImageItem) -> np.ndarray:
    """An ImageItem's picture as (h, w, 4) RGBA through its own levels and lookup table."""
    data, lut = item.image, item.lut
    if callable(lut):
        lut = lut(data)
    levels = item.getLevels()
    rgba, _alpha = pg.functions.makeARGB(data, lut=lut, levels=levels, useRGBA=True)
    return rgba


def composed(view) -> tuple[np.ndarray, pg.ImageItem | None]:  # noqa: ANN001
    """The image with its visible layers, as displayed (rotated/flipped), and the layer that
    wants a colour bar (or None)."""
    out = base_image(view)
    bar_item = None
    for item in _layer_items(view):
        out = blend(out, _item_rgba(item), float(item.opacity()))
        if getattr(item, "colourbar_label", None) and bar_item is None:
            bar_item = item
    return np.ascontiguousarray(view.view_transform.apply(out)), bar_item


def _qimage(rgb: np.ndarray) -> QImage:
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def render_full(view, lines: list[str], long_side: int | None = None,  # noqa: ANN001
                patient_lines: list[str] | None = None) -> QImage:
    """The export picture: image (+ layers, annotations), colour bar, caption strip."""
    rgb, bar_item = composed(view)
    caption = [*(patient_lines or []), *lines]
    shape = rgb.shape[:2]
    scale = scale_for(shape, long_side)
    font = QFont()
    font.setPixelSize(max(13, round(min(shape) * scale / 70)))
    metrics = QFontMetrics(font)
    widest = max((metrics.horizontalAdvance(t) for t in caption), default=0)
    layout = export_layout(shape, scale, colourbar=bar_item is not None,
                           caption_lines=len(caption), line_height=metrics.height(),
                           caption_width=widest)
    out = QImage(layout.width, layout.height, QImage.Format.Format_RGB32)
    out.fill(QColor(20, 20, 20))
    p = QPainter(out)
    try:
        image = _qimage(rgb)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 1.0)
        r = layout.image
        p.drawImage(QRectF(r.x, r.y, r.width, r.height), image)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setFont(font)
        _draw_annotations(p, view, layout, shape)
        if bar_item is not None:
            _draw_colourbar(p, layout, bar_item)
        _draw_caption(p, layout, caption, metrics)
    finally:
        p.end()
    return out


def _annotation_items(view) -> list[AnnotationItem]:  # noqa: ANN001
    return [c for c in view.image_space.childItems()
            if isinstance(c, AnnotationItem) and c.isVisible()]


def _draw_annotations(p: QPainter, view, layout: ExportLayout,  # noqa: ANN001
                      shape: tuple[int, int]) -> None:
    transform = view.view_transform
    image_shape = view.decoded.shape
    width = max(2.0, min(shape) * layout.scale / 400)
    p.setPen(QPen(COLOUR, width))
    for item in _annotation_items(view):
        pts = [QPointF(*layout.place(transform.to_display(pt, image_shape)))
               for pt in item.points()]
        kind = item.kind
        p.setBrush(Qt.BrushStyle.NoBrush)
        if kind in (Kind.RECTANGLE, Kind.ELLIPSE):
            rect = QRectF(pts[0], pts[1]).normalized()
            (p.drawRect if kind is Kind.RECTANGLE else p.drawEllipse)(rect)
            anchor = rect.bottomRight()
        elif kind is Kind.TEXT:
            anchor = pts[0]
        else:
            for a, b in zip(pts, pts[1:], strict=False):
                p.drawLine(a, b)
            if kind is Kind.ARROW:
                _arrow_head(p, pts[0], pts[1], width * 6)
            anchor = pts[1] if kind is Kind.ANGLE else pts[-1]
        text = item.label.textItem.toPlainText() if item.label.isVisible() else ""
        if text:
            r = layout.image
            _label(p, anchor, text, QRectF(r.x, r.y, r.width, r.height))


def _arrow_head(p: QPainter, tail: QPointF, head: QPointF, size: float) -> None:
    d = head - tail
    length = math.hypot(d.x(), d.y())
    if length == 0:
        return
    ux, uy = d.x() / length, d.y() / length
    back = QPointF(head.x() - ux * size, head.y() - uy * size)
    side = QPointF(-uy * size * 0.45, ux * size * 0.45)
    p.drawLine(head, back + side)
    p.drawLine(head, back - side)


def _label(p: QPainter, anchor: QPointF, text: str, inside: QRectF) -> None:
    """``text`` in a dark box above-right of ``anchor``, moved to stay ``inside`` the image."""
    metrics = p.fontMetrics()
    lines = text.split("\n")
    w = max(metrics.horizontalAdvance(t) for t in lines) + 8
    h = metrics.height() * len(lines) + 4
    box = QRectF(anchor.x(), anchor.y() - h, w, h)
    box.moveLeft(max(inside.left(), min(box.left(), inside.right() - w)))
    box.moveTop(max(inside.top(), min(box.top(), inside.bottom() - h)))
    pen = p.pen()
    p.fillRect(box, QColor(0, 0, 0, 150))
    p.setPen(COLOUR)
    p.drawText(box.adjusted(4, 2, -4, -2), int(Qt.AlignmentFlag.AlignLeft), text)
    p.setPen(pen)


def _draw_colourbar(p: QPainter, layout: ExportLayout, item: pg.ImageItem) -> None:
    bar = layout.colourbar
    assert bar is not None
    lut = item.lut if item.lut is not None and not callable(item.lut) else None
    rect = QRectF(bar.x, bar.y, bar.width, bar.height)
    p.fillRect(rect, QColor(70, 70, 70))
    if lut is not None:
        grad = QLinearGradient(rect.bottomLeft(), rect.topLeft())  # high at the top
        n = len(lut)
        for i in range(0, n, max(1, n // 16)):
            r, g, b = (int(v) for v in lut[i][:3])
            grad.setColorAt(i / (n - 1), QColor(r, g, b))
        r, g, b = (int(v) for v in lut[-1][:3])
        grad.setColorAt(1.0, QColor(r, g, b))
        p.fillRect(rect, grad)
    p.setPen(QColor(235, 235, 235))
    metrics = p.fontMetrics()
    x = bar.x + bar.width + 4
    p.drawText(QPointF(x, bar.y + metrics.ascent()), "high")
    p.drawText(QPointF(x, bar.y + bar.height), "low")


def _draw_caption(p: QPainter, layout: ExportLayout, lines: list[str],
                  metrics: QFontMetrics) -> None:
    c = layout.caption
    line_h = metrics.height()
    for i, text in enumerate(lines):
        p.setPen(NOTICE_COLOUR if text == NOT_FOR_DIAGNOSTIC_USE else QColor(235, 235, 235))
        p.drawText(QRect(c.x + 8, c.y + 8 + i * line_h, c.width - 16, line_h),
                   int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
