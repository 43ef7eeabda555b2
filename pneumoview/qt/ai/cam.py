"""The class-activation map as a second pyqtgraph image on top of the radiograph.

The CAM arrives on the image's own pixel grid (``H x W``, see :mod:`pneumoview.core.cam`), so the
overlay is a plain ImageItem added to the same ViewBox with the same (identity) transform as the
image: zoom and pan move both together, and window changes (levels of the grey image) do not
touch it. Its look is a lookup table with an alpha ramp: cold, low values are transparent and hot
values opaque, so the film stays readable under the map; the opacity slider scales the whole item.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QLinearGradient, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

# the colour table is shared with the burned-in Secondary Capture: one home, core.cam
from pneumoview.core.cam import cam_lut


class CamOverlay:
    """Owns the overlay ImageItem; the caller adds :attr:`item` to the image's ViewBox."""

    def __init__(self, opacity: float = 0.6) -> None:
        self.item = pg.ImageItem(axisOrder="row-major")
        # Export Image draws a colour bar for a layer that names itself so
        self.item.colourbar_label = "model attention (this image)"
        self.item.setLookupTable(cam_lut())
        self.item.setZValue(10)
        self.item.setOpacity(opacity)
        self.item.setVisible(False)
        self.key: tuple[str, int] | None = None
        self.cam: np.ndarray | None = None

    def set_cam(self, key: tuple[str, int], cam: np.ndarray) -> None:
        """Show ``cam`` (float32 (H, W) in [0, 1]) for the image ``key`` (not made visible)."""
        self.key = key
        self.cam = np.asarray(cam, dtype=np.float32)
        self.item.setImage(self.cam, levels=(0.0, 1.0), autoLevels=False)
        self.item.setRect(QRectF(0, 0, self.cam.shape[1], self.cam.shape[0]))

    def clear(self) -> None:
        self.key = None
        self.cam = None
        self.item.clear()
        self.item.setVisible(False)

    def set_visible(self, on: bool) -> None:
        self.item.setVisible(bool(on) and self.cam is not None)

    @property
    def visible(self) -> bool:
        return self.item.isVisible()

    def set_opacity(self, opacity: float) -> None:
        self.item.setOpacity(float(min(1.0, max(0.0, opacity))))

    @property
    def opacity(self) -> float:
        return float(self.item.opacity())


class CamColourBar(QWidget):
    """A horizontal colour bar for the overlay's lookup table, labelled low / high attention."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._lut = cam_lut()
        self.setMinimumHeight(30)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("CAM colour scale: transparent where the model paid least attention, "
                        "red where it paid most (relative to this image only)")

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        bar = QRectF(2, 2, self.width() - 4, 12)
        # a checkerboard-free grey backdrop shows the alpha ramp
        p.fillRect(bar, QColor(70, 70, 70))
        grad = QLinearGradient(bar.topLeft(), bar.topRight())
        for i in range(0, 256, 15):
            r, g, b, a = (int(v) for v in self._lut[i])
            grad.setColorAt(i / 255, QColor(r, g, b, max(a, 40)))
        r, g, b, a = (int(v) for v in self._lut[255])
        grad.setColorAt(1.0, QColor(r, g, b, a))
        p.fillRect(bar, grad)
        p.setPen(self.palette().windowText().color())
        text = QRectF(2, 15, self.width() - 4, self.height() - 15)
        p.drawText(text, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, "low")
        p.drawText(text, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop, "high")
        middle = "model attention (this image)"
        metrics = p.fontMetrics()
        room = text.width() - 2 * metrics.horizontalAdvance("high  ")
        if metrics.horizontalAdvance(middle) <= room:
            p.drawText(text, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, middle)
        p.end()
