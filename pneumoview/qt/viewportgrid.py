"""The image area: viewports in a 1x1, 1x2 or 2x2 layout, one of them active, kept in step.

The active viewport is the one the study tree, the View menu, the reading tools and the AI panel
act on; clicking a viewport (or dropping an image on it) makes it active. Viewports hidden by a
smaller layout keep their image for when the layout grows again. :class:`ViewSync` keeps zoom
and pan (on by default) and optionally window/level in step across the visible viewports.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from PySide6.QtCore import QObject, QRectF, Signal
from PySide6.QtWidgets import QGridLayout, QWidget

from pneumoview.qt.viewport import Viewport


class Layout(Enum):
    """Rows x columns of viewports."""

    ONE = (1, 1)
    ONE_BY_TWO = (1, 2)
    TWO_BY_TWO = (2, 2)

    @property
    def count(self) -> int:
        return self.value[0] * self.value[1]

    @property
    def label(self) -> str:
        return f"{self.value[0]}x{self.value[1]}"


MAX_VIEWPORTS = max(layout.count for layout in Layout)


class ViewportGrid(QWidget):
    """Viewports in a grid (see the module docstring); ``make(index)`` builds each one."""

    activeChanged = Signal(object)  # Viewport
    viewportAdded = Signal(object)  # Viewport (made when a layout first needs it)
    layoutChanged = Signal(object)  # Layout

    def __init__(self, make: Callable[[int], Viewport], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._make = make
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self.viewports: list[Viewport] = []
        self.layout_kind = Layout.ONE
        self.active = self._viewport(0)
        self._place()

    def _viewport(self, index: int) -> Viewport:
        while len(self.viewports) <= index:
            vp = self._make(len(self.viewports))
            vp.activated.connect(self.set_active)
            self.viewports.append(vp)
            self.viewportAdded.emit(vp)
        return self.viewports[index]

    def visible(self) -> list[Viewport]:
        """The viewports the layout shows, left to right then top to bottom."""
        return self.viewports[:self.layout_kind.count]

    def set_layout(self, layout: Layout) -> None:
        if layout is self.layout_kind:
            return
        self.layout_kind = layout
        self._viewport(layout.count - 1)
        self._place()
        if self.active not in self.visible():
            self.set_active(self.viewports[0])
        else:
            self._highlight()
        self.layoutChanged.emit(layout)

    def _place(self) -> None:
        rows, cols = self.layout_kind.value
        for vp in self.viewports:
            self._grid.removeWidget(vp)
        for i, vp in enumerate(self.viewports):
            if i < rows * cols:
                self._grid.addWidget(vp, i // cols, i % cols)
                vp.show()
            else:
                vp.hide()
        for r in range(MAX_VIEWPORTS):
            self._grid.setRowStretch(r, 1 if r < rows else 0)
            self._grid.setColumnStretch(r, 1 if r < cols else 0)
        self._highlight()

    def _highlight(self) -> None:
        framed = self.layout_kind.count > 1
        for vp in self.viewports:
            vp.set_highlighted(vp is self.active, framed)

    def set_active(self, vp: Viewport) -> None:
        if vp is self.active or vp not in self.visible():
            return
        self.active = vp
        self._highlight()
        self.activeChanged.emit(vp)


def _fit_scale(vp: Viewport) -> float | None:
    """Screen pixels per image pixel when ``vp``'s image is fitted (None: no image)."""
    return vp.view.fit_zoom()


class ViewSync(QObject):
    """Zoom/pan (relative to each image: the same magnification of its fitted size, the same
    place as a fraction of the image) and window/level follow the viewport the reader moves."""

    def __init__(self, grid: ViewportGrid, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.grid = grid
        self.zoom_pan = True
        self.window = False
        self._busy = False
        for vp in grid.viewports:
            self.watch(vp)
        grid.viewportAdded.connect(self.watch)

    def watch(self, vp: Viewport) -> None:
        vp.view.view_box.sigRangeChangedManually.connect(lambda *_a, v=vp: self.follow_range(v))
        vp.view.windowChanged.connect(lambda _w, v=vp: self._on_window(v))

    def _others(self, source: Viewport) -> list[Viewport]:
        return [vp for vp in self.grid.visible() if vp is not source and vp.decoded is not None]

    def follow_range(self, source: Viewport, force: bool = False) -> None:
        """Give the other viewports ``source``'s zoom and pan (when sync is on, or ``force``)."""
        if self._busy or not (self.zoom_pan or force):
            return
        fit = _fit_scale(source)
        if fit is None:
            return
        view = source.view
        h, w = view.view_transform.display_shape(view.decoded.shape)
        centre = view.view_box.viewRect().center()
        magnification = view.zoom() / fit
        rel = (centre.x() / w, centre.y() / h)
        self._busy = True
        try:
            for other in self._others(source):
                self._apply_range(other, magnification, rel)
        finally:
            self._busy = False

    @staticmethod
    def _apply_range(vp: Viewport, magnification: float, rel: tuple[float, float]) -> None:
        fit = _fit_scale(vp)
        if fit is None:
            return
        view = vp.view
        h, w = view.view_transform.display_shape(view.decoded.shape)
        scale = fit * magnification  # x; y is scale / aspect
        box = view.view_box.size()
        rw, rh = box.width() / scale, view.display_aspect() * box.height() / scale
        cx, cy = rel[0] * w, rel[1] * h
        view.view_box.setRange(QRectF(cx - rw / 2, cy - rh / 2, rw, rh), padding=0)

    def _on_window(self, source: Viewport) -> None:
        if self._busy or not self.window or source.displaying:
            return  # a new image's own window is not the reader's choice
        win = source.view.window
        if win is None:
            return
        self._busy = True
        try:
            for other in self._others(source):
                if not other.decoded.is_colour:
                    other.view.set_levels(win.center, win.width)
        finally:
            self._busy = False
