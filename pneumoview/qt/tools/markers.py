"""Orientation markers: the patient direction at the middle of each edge of the view.

They come from the image's own orientation (:func:`image_axes`) through the view's
:class:`ViewTransform`, so after "rotate right" the patient's right (R) that was on the left
edge is at the top. No markers when the file does not state its orientation.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel

from pneumoview.core.dicomio import DecodedImage
from pneumoview.core.reading.orientation import EDGES, image_axes
from pneumoview.qt.plaintext import make_plain

MARGIN = 6


class OrientationMarkers(QObject):
    """Four labels over ``view.graphics``, kept at the edge centres."""

    def __init__(self, view) -> None:  # noqa: ANN001 - a RadiographView
        super().__init__(view)
        self.view = view
        self.axes: tuple[str, str] | None = None
        self.enabled = True
        self.labels = {edge: self._make_label() for edge in EDGES}
        view.graphics.installEventFilter(self)
        view.viewTransformChanged.connect(lambda _t: self.update())

    def _make_label(self) -> QLabel:
        label = make_plain(QLabel(self.view.graphics))
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        font = QFont()
        font.setPointSize(12)
        font.setBold(True)
        label.setFont(font)
        label.setStyleSheet("color: #ffe08a; background: rgba(0, 0, 0, 110); padding: 1px 3px;")
        label.hide()
        return label

    def set_image(self, decoded: DecodedImage | None) -> None:
        self.axes = image_axes(decoded.header, decoded.frame) if decoded is not None else None
        self.update()

    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        self.update()

    def text(self) -> dict[str, str]:
        """The letters on each edge now ({} when unknown or hidden)."""
        if not self.enabled or self.view.decoded is None:
            return {}
        return self.view.view_transform.edge_markers(self.axes)

    def update(self) -> None:
        text = self.text()
        for edge, label in self.labels.items():
            label.setText(text.get(edge, ""))
            label.setVisible(bool(text.get(edge)))
            label.adjustSize()
        self._layout()

    def _layout(self) -> None:
        g = self.view.graphics
        w, h = g.width(), g.height()
        lab = self.labels
        lab["left"].move(MARGIN, (h - lab["left"].height()) // 2)
        lab["right"].move(w - lab["right"].width() - MARGIN, (h - lab["right"].height()) // 2)
        lab["top"].move((w - lab["top"].width()) // 2, MARGIN)
        lab["bottom"].move((w - lab["bottom"].width()) // 2, h - lab["bottom"].height() - MARGIN)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if watched is self.view.graphics and event.type() == QEvent.Type.Resize:
            self._layout()
        return False
