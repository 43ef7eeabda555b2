"""The rendered radiograph at the screen's own pixels, so a repaint of an unchanged image is a copy.

Drawing a 1024² film into an 800-pixel view resamples it on every repaint (3-6 ms), and a
selection repaints the view several times (the old film loses its map, the new film arrives,
its labels change, its map arrives). Qt holds Python's global lock while it draws, so each of
those repaints also stalls the decoder and the AI worker, which are waiting for the same film.
:class:`ScreenImage` keeps the last resampled result, in device pixels, keyed by what decides
it: the source QImage (a new render makes a new one), the rectangle it covers, the painter's
scale, the sub-pixel part of its offset and the device pixel ratio. A repaint with the same key
copies it (about 0.3 ms); a pan by whole pixels keeps the key. Only a shrunk film (smoothed,
the costly case) goes through the copy; at 1:1 and above drawing is already a cheap copy of
the visible part, and rotation, shear or another composition mode are drawn as before.

The cached pixels are what the direct drawing makes, within one grey level (premultiplied
rounding at partly covered edge pixels): the same ``drawImage`` with the same transform, only
into a transparent buffer first, then copied without scaling.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QImage, QPainter, QTransform

#: Largest cache kept, in device pixels (a 4K view); larger targets are drawn directly.
MAX_PIXELS = 3840 * 2160
_FORMAT = QImage.Format.Format_ARGB32_Premultiplied


class ScreenImage:
    """One cached device-resolution copy of a QImage drawn over a rectangle."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._pixels: QImage | None = None
        self.hits = 0  # repaints served by a copy (the tests read it)

    def clear(self) -> None:
        self._key = None
        self._pixels = None

    def draw(self, painter: QPainter, target: QRectF, image: QImage, generation: int,
             smooth: bool) -> None:
        """``painter.drawImage(target, image)``, through the cache where the transform allows.

        ``generation`` must change whenever ``image``'s pixels do.
        """
        planned = self._plan(painter, target, generation, smooth)
        if planned is None:
            painter.drawImage(target, image)
            return
        key, device_rect, dpr, to_buffer = planned
        if key != self._key or self._pixels is None:
            self._pixels = self._resample(image, target, device_rect, dpr, to_buffer)
            self._key = key
        else:
            self.hits += 1
        painter.save()
        try:
            painter.resetTransform()
            painter.drawImage(QPointF(device_rect[0] / dpr, device_rect[1] / dpr), self._pixels)
        finally:
            painter.restore()

    @staticmethod
    def _plan(painter: QPainter, target: QRectF, generation: int, smooth: bool):
        """(key, (x0, y0, w, h) device pixels, dpr, item -> buffer transform), or None."""
        t = painter.worldTransform()
        if not smooth or t.type().value > QTransform.TransformationType.TxScale.value \
                or painter.compositionMode() != QPainter.CompositionMode.CompositionMode_SourceOver:
            return None
        device = painter.device()
        if device is None:
            return None
        dpr = float(device.devicePixelRatioF())
        mapped = t.mapRect(target)
        left, top = mapped.left() * dpr, mapped.top() * dpr
        # only what can be on the device: a film panned half out of the view is copied in part
        x0, y0 = max(0, math.floor(left)), max(0, math.floor(top))
        x1 = min(math.ceil(mapped.right() * dpr), math.ceil(device.width() * dpr))
        y1 = min(math.ceil(mapped.bottom() * dpr), math.ceil(device.height() * dpr))
        w, h = x1 - x0, y1 - y0
        if w <= 0 or h <= 0 or w * h > MAX_PIXELS:
            return None
        to_buffer = t * QTransform.fromScale(dpr, dpr) * QTransform.fromTranslate(-x0, -y0)
        key = (generation, target.getRect(), round(t.m11(), 9), round(t.m22(), 9),
               round(left - x0, 4), round(top - y0, 4), dpr, w, h)
        return key, (x0, y0, w, h), dpr, to_buffer

    @staticmethod
    def _resample(image: QImage, target: QRectF, device_rect: tuple[int, int, int, int],
                  dpr: float, to_buffer: QTransform) -> QImage:
        _x0, _y0, w, h = device_rect
        out = QImage(w, h, _FORMAT)
        out.fill(0)
        p = QPainter(out)
        try:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)  # only shrunk films
            p.setTransform(to_buffer)
            p.drawImage(target, image)
        finally:
            p.end()
        out.setDevicePixelRatio(dpr)
        return out
