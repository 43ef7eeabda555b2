"""The magnifier: a loupe beside the cursor showing the image's own pixels enlarged.

It reads the modality values under the cursor and windows just that patch the way the view
does (window, inversion, rotation/flip), so it shows real pixels, not an enlarged screen.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel

from pneumoview.core import colour, windowing
from pneumoview.core.reading.composite import to_rgb

SIZE = 180  # loupe side, screen pixels
#: The loupe enlarges this many times what the view shows (at least 2 image-pixel zoom).
FACTOR = 3.0


def patch(view, centre: tuple[float, float], side: int) -> np.ndarray | None:  # noqa: ANN001
    """The displayed (rotated/flipped) image's ``side`` x ``side`` pixels around ``centre``
    (display coordinates), windowed as on screen; None outside the image."""
    d = view.decoded
    if d is None:
        return None
    shown = view.view_transform.apply(d.values)  # a view of the array: no copy
    h, w = shown.shape[:2]
    cx, cy = int(math.floor(centre[0])), int(math.floor(centre[1]))
    if not (0 <= cx < w and 0 <= cy < h):
        return None
    half = side // 2
    r0, c0 = max(0, cy - half), max(0, cx - half)
    r1, c1 = min(h, cy - half + side), min(w, cx - half + side)
    region = np.ascontiguousarray(shown[r0:r1, c0:c1])
    if d.is_colour:
        rgb = colour.to_display8(region[..., :3], d.colour_bits)
        rgb = 255 - rgb if view.user_invert else rgb
    else:
        rgb = windowing.apply_window(region, view.window, view.effective_invert)
    out = np.zeros((side, side, 3), np.uint8)
    out[r0 - (cy - half):r1 - (cy - half), c0 - (cx - half):c1 - (cx - half)] = to_rgb(rgb)
    return out


class Magnifier(QObject):
    def __init__(self, view) -> None:  # noqa: ANN001 - a RadiographView
        super().__init__(view)
        self.view = view
        self.enabled = False
        self.loupe = QLabel(view.graphics)
        self.loupe.setFixedSize(SIZE, SIZE)
        self.loupe.setStyleSheet("border: 2px solid #ffe08a; background: black;")
        self.loupe.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.loupe.hide()
        view.graphics.viewport().installEventFilter(self)

    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        if not self.enabled:
            self.loupe.hide()

    def show_at(self, pos: QPointF) -> bool:
        """Show the loupe for viewport position ``pos``; False when not over the image."""
        view = self.view
        if view.decoded is None:
            return False
        image_pt = view.image_space.mapFromScene(view.graphics.mapToScene(pos.toPoint()))
        shape = view.decoded.shape
        display = view.view_transform.to_display((image_pt.x(), image_pt.y()), shape)
        zoom = max(2.0, view.zoom() * FACTOR)
        side = max(4, int(SIZE / zoom))
        rgb = patch(view, display, side)
        if rgb is None:
            self.loupe.hide()
            return False
        image = QImage(rgb.data, side, side, 3 * side, QImage.Format.Format_RGB888).copy()
        self.loupe.setPixmap(QPixmap.fromImage(image).scaled(
            SIZE - 4, SIZE - 4, Qt.AspectRatioMode.IgnoreAspectRatio,
            Qt.TransformationMode.FastTransformation))  # pixels stay square blocks
        g = view.graphics
        x = pos.x() + 24 if pos.x() + 24 + SIZE < g.width() else pos.x() - 24 - SIZE
        y = min(max(0, pos.y() - SIZE / 2), g.height() - SIZE)
        self.loupe.move(int(x), int(y))
        self.loupe.show()
        self.loupe.raise_()
        return True

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if self.enabled and event.type() == QEvent.Type.MouseMove:
            self.show_at(QPointF(event.position()))
        elif event.type() == QEvent.Type.Leave:
            self.loupe.hide()
        return False
