"""Export Image at full resolution: the image at its own pixel grid (or a chosen size), with
what is shown over it, the overlay's colour bar and the caption.

Everything is taken from the view as the reader sees it, so the export needs no knowledge of
the features that drew there: the window and inversion, the rotation/flip, every visible
ImageItem layer on the image grid (the AI heat map, the file's overlay planes) composed in
numpy at the image's pixels (:mod:`pneumoview.core.reading.composite`), and the annotation
items drawn as vectors at the output's resolution. A layer that sets ``colourbar_label``
(the CAM) gets a colour bar of its lookup table.

:func:`snapshot` (GUI thread, cheap: it keeps references to the arrays) takes what is shown;
:func:`render_scene` (any thread: numpy and a QPainter on a QImage) does the work, so a
3000 x 3000 export does not freeze the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QLinearGradient, QPainter, QPen

from pneumoview.core import colour, windowing
from pneumoview.core.dicomio import DecodedImage
from pneumoview.core.reading.annotations import Kind
from pneumoview.core.reading.composite import blend, to_rgb
from pneumoview.core.reading.exportlayout import ExportLayout, export_layout, scale_for
from pneumoview.core.reading.orientation import ViewTransform
from pneumoview.core.windowing import Window
from pneumoview.qt.tools.items import COLOUR, AnnotationItem

NOTICE = "NOT FOR DIAGNOSTIC USE"
NOTICE_COLOUR = QColor(255, 200, 60)


@dataclass(frozen=True)
class Layer:
    image: np.ndarray
    lut: np.ndarray | None
    levels: object
    opacity: float
    colourbar: bool


@dataclass(frozen=True)
class Drawn:
    kind: Kind
    points: tuple[tuple[float, float], ...]  # image pixels
    text: str


@dataclass(frozen=True)
class ExportScene:
    """What the view shows, frozen for rendering elsewhere."""

    decoded: DecodedImage
    window: Window | None
    invert: bool  # effective inversion (grey) / the user's (colour)
    transform: ViewTransform
    layers: tuple[Layer, ...]
    drawn: tuple[Drawn, ...]


def snapshot(view) -> ExportScene:  # noqa: ANN001 - a RadiographView
    d = view.decoded
    if d is None:
        raise ValueError("no image to export")
    layers = []
    for c in sorted(view.image_space.childItems(), key=lambda c: c.zValue()):
        if isinstance(c, pg.ImageItem) and c is not view.image_item and c.isVisible() \
                and c.image is not None:
            lut = c.lut(c.image) if callable(c.lut) else c.lut
            layers.append(Layer(c.image, lut, c.getLevels(), float(c.opacity()),
                                bool(getattr(c, "colourbar_label", None))))
    drawn = tuple(
        Drawn(c.kind, c.points(),
              c.label.textItem.toPlainText() if c.label.isVisible() else "")
        for c in view.image_space.childItems()
        if isinstance(c, AnnotationItem) and c.isVisible())
    invert = view.user_invert if d.is_colour else view.effective_invert
    return ExportScene(d, view.window, bool(invert), view.view_transform, tuple(layers), drawn)


def base_image(scene: ExportScene) -> np.ndarray:
    """The image as windowed on screen, at its own grid, (H, W, 3) uint8."""
    d = scene.decoded
    if d.is_colour:
        rgb = colour.to_display8(d.values[..., :3], d.colour_bits)
        return to_rgb(255 - rgb if scene.invert else rgb)
    return to_rgb(windowing.apply_window(d.values, scene.window, scene.invert))


def composed(scene: ExportScene) -> np.ndarray:
    """The image with its visible layers, as displayed (rotated/flipped)."""
    out = base_image(scene)
    for layer in scene.layers:
        rgba, _alpha = pg.functions.makeARGB(layer.image, lut=layer.lut, levels=layer.levels,
                                             useRGBA=True)
        out = blend(out, rgba, layer.opacity)
    return np.ascontiguousarray(scene.transform.apply(out))


def _qimage(rgb: np.ndarray) -> QImage:
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def render_scene(scene: ExportScene, lines: list[str], long_side: int | None = None,
                 patient_lines: list[str] | None = None) -> QImage:
    """The export picture: image (+ layers, annotations), colour bar, caption strip."""
    rgb = composed(scene)
    bar = next((layer for layer in scene.layers if layer.colourbar), None)
    caption = [*(patient_lines or []), *lines]
    shape = rgb.shape[:2]
    scale = scale_for(shape, long_side)
    font = QFont()
    font.setPixelSize(max(13, round(min(shape) * scale / 70)))
    metrics = QFontMetrics(font)
    widest = max((metrics.horizontalAdvance(t) for t in caption), default=0)
    layout = export_layout(shape, scale, colourbar=bar is not None,
                           caption_lines=len(caption), line_height=metrics.height(),
                           caption_width=widest)
    out = QImage(layout.width, layout.height, QImage.Format.Format_RGB32)
    out.fill(QColor(20, 20, 20))
    p = QPainter(out)
    try:
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 1.0)
        r = layout.image
        p.drawImage(QRectF(r.x, r.y, r.width, r.height), _qimage(rgb))
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setFont(font)
        _draw_annotations(p, scene, layout, shape)
        if bar is not None:
            _draw_colourbar(p, layout, bar)
        _draw_caption(p, layout, caption, metrics)
    finally:
        p.end()
    return out


def render_full(view, lines: list[str], long_side: int | None = None,  # noqa: ANN001
                patient_lines: list[str] | None = None) -> QImage:
    """:func:`render_scene` of the view as it is now (in the calling thread)."""
    return render_scene(snapshot(view), lines, long_side, patient_lines)


def _draw_annotations(p: QPainter, scene: ExportScene, layout: ExportLayout,
                      shape: tuple[int, int]) -> None:
    image_shape = scene.decoded.shape
    width = max(2.0, min(shape) * layout.scale / 400)
    p.setPen(QPen(COLOUR, width))
    inside = QRectF(layout.image.x, layout.image.y, layout.image.width, layout.image.height)
    for item in scene.drawn:
        pts = [QPointF(*layout.place(scene.transform.to_display(pt, image_shape)))
               for pt in item.points]
        p.setBrush(Qt.BrushStyle.NoBrush)
        if item.kind in (Kind.RECTANGLE, Kind.ELLIPSE):
            rect = QRectF(pts[0], pts[1]).normalized()
            (p.drawRect if item.kind is Kind.RECTANGLE else p.drawEllipse)(rect)
            anchor = rect.bottomRight()
        elif item.kind is Kind.TEXT:
            anchor = pts[0]
        else:
            for a, b in zip(pts, pts[1:], strict=False):
                p.drawLine(a, b)
            if item.kind is Kind.ARROW:
                _arrow_head(p, pts[0], pts[1], width * 6)
            anchor = pts[1] if item.kind is Kind.ANGLE else pts[-1]
        if item.text:
            _label(p, anchor, item.text, inside)


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


def _draw_colourbar(p: QPainter, layout: ExportLayout, layer: Layer) -> None:
    bar = layout.colourbar
    assert bar is not None
    rect = QRectF(bar.x, bar.y, bar.width, bar.height)
    p.fillRect(rect, QColor(70, 70, 70))
    lut = layer.lut
    if lut is not None and len(lut) > 1:
        grad = QLinearGradient(rect.bottomLeft(), rect.topLeft())  # high at the top
        n = len(lut)
        for i in [*range(0, n, max(1, n // 16)), n - 1]:
            r, g, b = (int(v) for v in lut[i][:3])
            grad.setColorAt(i / (n - 1), QColor(r, g, b))
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
        p.setPen(NOTICE_COLOUR if text == NOTICE else QColor(235, 235, 235))
        p.drawText(QRect(c.x + 8, c.y + 8 + i * line_h, c.width - 16, line_h),
                   int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
