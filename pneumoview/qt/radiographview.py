"""The image in the centre: a pyqtgraph ImageItem with DICOM windowing and reading interactions.

Pixels are shown at the modality values' own coordinates: the ImageItem sits at the origin with
an identity transform, one scene unit per image pixel, rows down (``row-major``, ``invertY``).
Non-square pixels (PixelSpacing row != column) are shown at their physical aspect by the
ViewBox's locked aspect ratio, so scene units stay pixels (measurements map as before).
**Overlays** (the AI heat map, measurements) therefore only need to be another item with the same
pixel grid added with :meth:`RadiographView.add_layer`, which stacks it above the image in the same
ViewBox; zoom and pan move both together.

Display levels are explicit: a linear window becomes ``ImageItem.setLevels(window.levels)``
(pyqtgraph's fast combined level+LUT path, helped by integral data stored as uint16/int16); a
SIGMOID window or a VOI LUT from the file is computed with :func:`windowing.apply_window` to
uint8. Inversion is ``decoded.invert XOR`` the user's toggle, applied once as a reversed LUT.
Colour images (RGB, YBR, PALETTE COLOR with its palette applied) are shown as an RGB image,
reduced to 8 bits by :func:`colour.to_display8` as ``render`` does. The file's own overlay
planes (60xx) are a white RGBA layer above the heat map: graphics planes shown by default, ROI
planes (as outlines) on request (:meth:`RadiographView.set_show_overlays`).
``autoDownsample`` averages the data down to the screen resolution when zoomed out (fast and
without aliasing); at 1:1 and above pixels are drawn as they are (no smoothing).

Mouse: right-drag = window/level (horizontal: width, right = wider; vertical: centre, down =
higher centre, i.e. darker), left-drag = pan, wheel = zoom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QFont, QHelpEvent, QPainter, QTransform
from PySide6.QtWidgets import QLabel, QToolTip, QVBoxLayout, QWidget

from pneumoview.core import colour, overlays, windowing
from pneumoview.core.dicomio import DecodedImage
from pneumoview.core.display import block_mean
from pneumoview.core.paths import display_path
from pneumoview.core.reading.orientation import ViewTransform
from pneumoview.core.reading.spacing import pixel_aspect
from pneumoview.core.windowing import Window
from pneumoview.qt.plaintext import make_plain
from pneumoview.qt.screenimage import ScreenImage

#: Hover text of the "Frame 1/3" corner line: the viewer counts as DICOM does, scripts do not.
FRAME_TOOLTIP = ("Frames are numbered from 1, as DICOM numbers them; pneumoview render --frame "
                 "counts from 0")

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

#: Z value of the file's overlay planes: above the AI heat map layer (10).
OVERLAY_Z = 20.0
#: Layers above the image: a feature's heat map below the file's overlays, reading tools on top.
AI_LAYER_Z = 10.0
TOOL_LAYER_Z = 30.0

#: Fraction of the width at the start of the drag moved per screen pixel of right-drag.
WL_SENSITIVITY = 1.0 / 200.0

_RAMP = np.arange(256, dtype=np.uint8)
_RAMP_INVERTED = _RAMP[::-1].copy()


def display_data(values: np.ndarray) -> np.ndarray:
    """Integral grey values as uint16/int16 (pyqtgraph's fast LUT path), else float32 as is."""
    if values.ndim != 2 or values.size == 0:
        return values
    lo, hi = float(values.min()), float(values.max())
    sample = values[:: max(1, values.shape[0] // 64), :: max(1, values.shape[1] // 64)]
    if not np.array_equal(sample, np.round(sample)):
        return values
    if lo >= 0 and hi <= 65535 and np.array_equal(values, np.round(values)):
        return values.astype(np.uint16)
    if lo >= -32768 and hi <= 32767 and np.array_equal(values, np.round(values)):
        return values.astype(np.int16)
    return values


@dataclass(frozen=True)
class PreparedImage:
    """A decoded frame plus what showing it needs, computed off the GUI thread (:func:`prepare`)."""

    decoded: DecodedImage
    grey_data: np.ndarray | None  # display_data(values) for grey images
    presets: tuple[Window, ...]
    default: Window | None
    rgb_data: np.ndarray | None = None  # 8-bit RGB for colour images (palette applied)


def prepare(decoded: DecodedImage) -> PreparedImage:
    """Pure numpy (no Qt): safe to call in a worker thread right after decoding."""
    if decoded.is_colour:
        rgb = colour.to_display8(decoded.values[..., :3], decoded.colour_bits)
        return PreparedImage(decoded, None, (), None, rgb)
    offered = tuple(windowing.presets(decoded.values, decoded.windows, decoded.modality,
                                      decoded.identity))
    return PreparedImage(decoded, display_data(decoded.values), offered,
                         windowing.default_window(decoded.values, decoded.windows,
                                                  decoded.identity, offered))


class DisplayImageItem(pg.ImageItem):
    """ImageItem whose repaint cost follows the screen, not the image, so W/L drags stay smooth.

    * pyqtgraph's ``autoDownsample`` averages the full image on every render (~60 ms at
      3000x3000); the average depends only on the data and the zoom, so it is computed once per
      (image, factors) with :func:`block_mean` and kept in the data's dtype (uint16 stays on the
      fast combined level+LUT path); the last few factors are kept, so zooming back and forth
      across a factor boundary (wheel in, wheel out) averages nothing again.
    * Only the visible part (plus a margin, so small pans need no new render) is mapped through
      the levels, so a step at 1:1 costs no more than one at fit.
    * The rendered QImage is drawn over exactly the image pixels it stands for, through a copy
      at the screen's pixels (:mod:`pneumoview.qt.screenimage`), so repaints that change
      nothing in the image (its map or labels come and go) do not resample it again.
    """

    #: Extra fraction of the visible width/height rendered on each side.
    MARGIN = 0.25
    #: Downsampled copies kept per image (each at most a quarter of it).
    KEPT_FACTORS = 3

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._ds_images: dict[tuple[int, int, int], np.ndarray] = {}  # oldest first
        self._generation = 0  # bumped by every new image (ids of views get reused)
        self._target = QRectF()  # image pixels covered by the current QImage
        self._rendered = 0  # bumped by every render: the screen copy's key
        self.screen = ScreenImage()

    def setImage(self, image=None, autoLevels=None, **kwargs):
        if image is not None:
            self._generation += 1
            self._ds_images = {}
        return super().setImage(image, autoLevels, **kwargs)

    def _computeDownsampleFactors(self) -> tuple[int, int]:
        """Image pixels per screen pixel from the ViewBox (pyqtgraph's own estimate came out
        too small here, leaving a 2x-averaged image to be shrunk 1.6x by the painter)."""
        vb = self.getViewBox()
        if not isinstance(vb, pg.ViewBox):
            return 1, 1
        px, py = vb.viewPixelSize()
        if not (np.isfinite(px) and np.isfinite(py)) or px <= 0 or py <= 0:
            return 1, 1
        return max(1, int(px)), max(1, int(py))

    def _visible(self) -> QRectF | None:
        """The part of the image in view (item coordinates = image pixels, also when the image
        is rotated or flipped), or None."""
        vb = self.getViewBox()
        if not isinstance(vb, pg.ViewBox) or self.image is None:
            return None
        h, w = self.image.shape[:2]
        shown = self.mapRectFromView(vb.viewRect())
        return shown.intersected(QRectF(0, 0, w, h)) if shown is not None else None

    def viewTransformChanged(self) -> None:
        if self.image is None:
            return
        visible = self._visible()
        moved_out = visible is not None and not visible.isEmpty() \
            and not self._target.contains(visible)
        if self._computeDownsampleFactors() != self._lastDownsample or moved_out:
            self._renderRequired = True
            self.update()

    def paint(self, painter, *args) -> None:
        """Draw the rendered part over its own pixels. Smoothing (bilinear) only when
        shrinking: at 1:1 and above pixels stay sharp squares."""
        if self.image is None:
            return
        if self._renderRequired:
            self.render()
            if self._unrenderable:
                return
        if self.qimage is None:
            return
        if self.paintMode is not None:
            painter.setCompositionMode(self.paintMode)
        t = painter.worldTransform()
        shrinking = max(abs(t.m11()), abs(t.m12())) < 0.999
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, shrinking)
        self.screen.draw(painter, self._target, self.qimage, self._rendered, shrinking)
        if self.border is not None:
            painter.setPen(self.border)
            painter.drawRect(self.boundingRect())

    def render(self) -> None:
        self._rendered += 1
        full = self.image
        if full is None or full.size == 0:
            return super().render()
        xds, yds = self._computeDownsampleFactors() if self.autoDownsample else (1, 1)
        if (xds, yds) == (1, 1):
            src = full
        else:
            key = (self._generation, xds, yds)
            src = self._ds_images.pop(key, None)
            if src is None:
                src = block_mean(full, yds, xds)
            self._ds_images[key] = src  # now the newest
            while len(self._ds_images) > self.KEPT_FACTORS:
                del self._ds_images[next(iter(self._ds_images))]
        rows, cols = src.shape[:2]
        x0, y0, x1, y1 = 0, 0, cols, rows
        visible = self._visible()
        if visible is not None and not visible.isEmpty():
            mx, my = visible.width() * self.MARGIN, visible.height() * self.MARGIN
            x0 = max(0, int((visible.left() - mx) // xds))
            y0 = max(0, int((visible.top() - my) // yds))
            x1 = min(cols, int(-(-(visible.right() + mx) // xds)))
            y1 = min(rows, int(-(-(visible.bottom() + my) // yds)))
            if x1 <= x0 or y1 <= y0:
                x0, y0, x1, y1 = 0, 0, cols, rows
        auto = self.autoDownsample
        self.image, self.autoDownsample = src[y0:y1, x0:x1], False
        try:
            super().render()
        finally:
            self.image, self.autoDownsample = full, auto
            self._lastDownsample = (xds, yds)
        self._target = QRectF(x0 * xds, y0 * yds, (x1 - x0) * xds, (y1 - y0) * yds)
        return None


class WindowViewBox(pg.ViewBox):
    """A ViewBox whose right-drag reports window/level moves instead of scaling the view."""

    #: dx, dy screen pixels since the press; is_start; is_finish
    sigWindowDrag = Signal(float, float, bool, bool)

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self.setMouseMode(pg.ViewBox.PanMode)

    def mouseDragEvent(self, ev, axis=None) -> None:
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            d = ev.screenPos() - ev.buttonDownScreenPos()
            self.sigWindowDrag.emit(float(d.x()), float(d.y()), ev.isStart(), ev.isFinish())
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()  # no context menu: right button belongs to window/level
            return
        super().mouseClickEvent(ev)


class RadiographView(QWidget):
    """Shows one :class:`DecodedImage` with a window, zoom/pan, inversion and corner text.

    (Named for what it shows; ``pyqtgraph.ImageView`` is another widget.) What a feature may
    use: :meth:`add_layer` / :meth:`remove_layer` stack an item drawn in image-pixel
    coordinates (z: :data:`AI_LAYER_Z` heat maps, :data:`OVERLAY_Z` the file's overlay planes,
    :data:`TOOL_LAYER_Z` measurements and annotations), all children of ``image_space``, whose
    transform is the rotation/flip (:meth:`set_view_transform`), so
    ``image_space.mapFromScene`` maps scene positions to image pixels whatever the
    orientation; ``decoded`` / ``window`` are what is shown; the signals say when the window,
    the inversion, the zoom or the rotation/flip change.
    """

    windowChanged = Signal(object)  # Window
    viewTransformChanged = Signal(object)  # ViewTransform
    invertChanged = Signal(bool)
    zoomChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.graphics = pg.GraphicsView(background="k")
        self.graphics.setAntialiasing(False)
        self.view_box = WindowViewBox()
        self.graphics.setCentralItem(self.view_box)
        # everything on the image's pixel grid lives in one group: rotating or flipping the
        # view is that group's transform (see set_view_transform)
        self.image_space = pg.ItemGroup()
        self.view_box.addItem(self.image_space, ignoreBounds=True)
        self.view_transform = ViewTransform()
        self.pixel_aspect = 1.0  # height / width of a pixel on the patient
        self.image_item = DisplayImageItem(axisOrder="row-major", autoDownsample=True)
        self.image_item.setZValue(0)
        self.image_item.setParentItem(self.image_space)
        # the file's overlay planes (60xx), above the AI heat map (z 10)
        self.overlay_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item.setZValue(OVERLAY_Z)
        self.overlay_item.setParentItem(self.image_space)
        self.show_graphics_overlays = True  # scanner annotations: shown unless turned off
        self.show_roi_overlays = False  # region-of-interest planes: on request
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)

        self.decoded: DecodedImage | None = None
        self.prepared: PreparedImage | None = None
        self.window: Window | None = None
        self.presets: list[Window] = []
        self.user_invert = False
        self.show_patient_text = True
        self._drag_start: Window | None = None
        self._grey_data: np.ndarray | None = None
        self._shown_data: np.ndarray | None = None  # what image_item holds (it keeps a view)
        self._uint8_cache: tuple[Window, np.ndarray] | None = None

        self._corners = {k: self._make_label(k) for k in ("tl", "tr", "bl", "br")}
        self._message = make_plain(QLabel(self.graphics))  # messages name files: plain text
        self._message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._message.setWordWrap(True)
        self._message.setStyleSheet("color: #f0c060; background: transparent; font-size: 13px;")
        self._message.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self._message.hide()
        self.view_box.sigWindowDrag.connect(self._on_window_drag)
        self.view_box.sigRangeChanged.connect(self._on_range_changed)
        # corner labels let the mouse through (drags start anywhere), so their tooltips are
        # shown from the viewport's tooltip events
        self.graphics.viewport().installEventFilter(self)

    # -- public API --------------------------------------------------------------------------
    def add_layer(self, item: pg.GraphicsObject, z: float = AI_LAYER_Z) -> None:
        """Stack ``item`` (e.g. an ImageItem of the same H x W) above the image, same transform
        (it follows zoom, pan, rotation and flips)."""
        item.setZValue(z)
        item.setParentItem(self.image_space)

    def remove_layer(self, item: pg.GraphicsObject) -> None:
        if item.parentItem() is self.image_space:
            item.setParentItem(None)
            scene = item.scene()
            if scene is not None:
                scene.removeItem(item)

    def set_view_transform(self, transform: ViewTransform) -> None:
        """Rotate/flip the image and everything on its grid (fitted to the new shape)."""
        self.view_transform = transform
        self._apply_view_transform()
        self.fit()
        self.viewTransformChanged.emit(transform)

    def _apply_view_transform(self) -> None:
        shape = self.decoded.shape if self.decoded is not None else (1, 1)
        (a, b), (c, d) = self.view_transform.matrix().tolist()
        dx, dy = self.view_transform.to_display((0.0, 0.0), shape)
        self.image_space.setTransform(QTransform(a, c, b, d, dx, dy))
        # the ViewBox ratio is x scale / y scale: a pixel pixel_aspect times taller than wide
        # needs y drawn that much larger (x and y swap with a quarter turn)
        self.view_box.setAspectLocked(True, ratio=self.display_aspect())

    def clear(self, message: str = "") -> None:
        """Remove the image (e.g. after an error) and optionally show ``message`` instead."""
        self.decoded = None
        self.prepared = None
        self.window = None
        self.presets = []
        self._grey_data = None
        self._uint8_cache = None
        self._shown_data = None
        self.image_item.clear()
        self.image_item.screen.clear()  # up to a screenful of pixels, not needed any more
        self.overlay_item.clear()
        self.show_message(message)
        self._update_text()

    def show_message(self, message: str) -> None:
        self._message.setText(display_path(message))
        self._message.setVisible(bool(message))
        self._layout_labels()

    def set_image(self, image: DecodedImage | PreparedImage, window: Window | None = None,
                  fit: bool | None = None) -> None:
        """Show a decoded (or already prepared) frame with ``window`` (default: the file's first,
        else Auto).

        The view is fitted when the image size changes (or ``fit`` is True); the same-size next
        image keeps the reader's zoom and pan.
        """
        prepared = image if isinstance(image, PreparedImage) else prepare(image)
        decoded = prepared.decoded
        old_shape = self.decoded.shape if self.decoded is not None else None
        aspect = pixel_aspect(decoded.header, decoded.frame)
        if aspect != self.pixel_aspect:
            self.pixel_aspect = aspect
            old_shape = None  # laid out and fitted again
        self.prepared = prepared
        self.decoded = decoded
        self._uint8_cache = None
        self.show_message("")
        self._grey_data = prepared.grey_data
        self.presets = list(prepared.presets)
        self.window = None if decoded.is_colour else (window or prepared.default)
        if old_shape != decoded.shape:
            self._apply_view_transform()
        self._render()
        self._render_overlays()
        if fit or (fit is None and old_shape != decoded.shape):
            self.fit()
        self._update_text()
        if self.window is not None:
            self.windowChanged.emit(self.window)

    def set_window(self, window: Window) -> None:
        if self.decoded is None or self.decoded.is_colour:
            return
        self.window = window
        self._render()
        self._update_text()
        self.windowChanged.emit(window)

    def set_levels(self, center: float, width: float) -> None:
        """A custom linear window (keeps a SIGMOID function when the current one has it)."""
        base = self.window or Window("Custom", center, width)
        self.set_window(base.with_levels(center, width))

    def apply_preset(self, index: int) -> bool:
        """Select preset ``index`` (0-based); False when there is no such preset."""
        if not 0 <= index < len(self.presets):
            return False
        self.set_window(self.presets[index])
        return True

    @property
    def effective_invert(self) -> bool:
        return bool(self.decoded is not None and self.decoded.invert) ^ self.user_invert

    def set_invert(self, on: bool) -> None:
        self.user_invert = bool(on)
        self._uint8_cache = None
        self._render()
        self._update_text()
        self.invertChanged.emit(self.user_invert)

    def toggle_invert(self) -> None:
        self.set_invert(not self.user_invert)

    def reset(self) -> None:
        """Back to the file's default window, no user inversion, no rotation or flip, fitted."""
        self.user_invert = False
        if not self.view_transform.is_identity:
            self.view_transform = ViewTransform()
            self._apply_view_transform()
            self.viewTransformChanged.emit(self.view_transform)
        if self.prepared is not None:
            self.set_image(self.prepared, None, fit=True)
        self.invertChanged.emit(False)

    def shown_overlays(self) -> tuple[overlays.Overlay, ...]:
        """The current frame's overlay planes that the toggles let through."""
        if self.decoded is None:
            return ()
        return tuple(o for o in self.decoded.overlays
                     if (self.show_graphics_overlays if o.is_graphics else self.show_roi_overlays))

    def set_show_overlays(self, graphics: bool | None = None, roi: bool | None = None) -> None:
        """Show or hide the file's graphics and/or ROI overlay planes (``None``: unchanged)."""
        if graphics is not None:
            self.show_graphics_overlays = bool(graphics)
        if roi is not None:
            self.show_roi_overlays = bool(roi)
        self._render_overlays()

    def set_show_patient_text(self, on: bool) -> None:
        self.show_patient_text = bool(on)
        self._update_text()

    def fit(self) -> None:
        if self.decoded is None:
            return
        h, w = self.view_transform.display_shape(self.decoded.shape)
        self.view_box.setRange(QRectF(0, 0, w, h), padding=0)

    def display_aspect(self) -> float:
        """The ViewBox's x scale / y scale (1.0 for square pixels)."""
        return self.pixel_aspect if self.view_transform.quarter_turns % 2 else \
            1.0 / self.pixel_aspect

    def fit_zoom(self) -> float | None:
        """What :meth:`zoom` is once fitted (None: no image or no size yet)."""
        if self.decoded is None:
            return None
        h, w = self.view_transform.display_shape(self.decoded.shape)
        box = self.view_box.size()
        if w <= 0 or h <= 0 or box.width() <= 0 or box.height() <= 0:
            return None
        return min(box.width() / w, self.display_aspect() * box.height() / h)

    def zoom(self) -> float:
        """Screen pixels per image pixel (1.0 = 1:1)."""
        px = self.view_box.viewPixelSize()[0]
        return 1.0 / px if px > 0 else 1.0

    def one_to_one(self) -> None:
        """One image pixel per screen pixel, around the current centre."""
        centre = self.view_box.viewRect().center()
        size = self.view_box.size()
        w, h = size.width(), size.height()
        self.view_box.setRange(QRectF(centre.x() - w / 2, centre.y() - h / 2, w, h), padding=0)

    def image_rect_in_widget(self) -> QRectF:
        """Where the image lies in this widget's pixels (for tests and screenshots)."""
        if self.decoded is None:
            return QRectF()
        h, w = self.view_transform.display_shape(self.decoded.shape)
        rect = self.view_box.mapViewToScene(QRectF(0, 0, w, h)).boundingRect()
        top_left = self.graphics.mapFromScene(rect.topLeft())
        bottom_right = self.graphics.mapFromScene(rect.bottomRight())
        offset = self.graphics.pos()
        return QRectF(QPointF(top_left + offset), QPointF(bottom_right + offset))

    # -- rendering ---------------------------------------------------------------------------
    def _render(self) -> None:
        d = self.decoded
        if d is None:
            return
        if d.is_colour:
            prepared = self.prepared
            rgb = prepared.rgb_data if prepared is not None and prepared.rgb_data is not None \
                else colour.to_display8(d.values[..., :3], d.colour_bits)
            if self.user_invert:
                rgb = 255 - rgb
            self.image_item.setImage(rgb, autoLevels=False, levels=(0, 255), lut=None)
            self._shown_data = rgb
            return
        win = self.window
        assert win is not None and self._grey_data is not None
        if win.lut is None and win.function in ("LINEAR", "LINEAR_EXACT"):
            lut = _RAMP_INVERTED if self.effective_invert else _RAMP
            if self._shown_data is not self._grey_data:
                self.image_item.setImage(self._grey_data, autoLevels=False, levels=win.levels,
                                         lut=lut)
                self._shown_data = self._grey_data
            else:
                self.image_item.setLookupTable(lut, update=False)
                self.image_item.setLevels(win.levels)
            return
        cached = self._uint8_cache
        if cached is None or cached[0] != win:
            img = windowing.apply_window(d.values, win, self.effective_invert)
            self._uint8_cache = (win, img)
        if self._shown_data is not self._uint8_cache[1]:
            self.image_item.setImage(self._uint8_cache[1], autoLevels=False, levels=(0, 255),
                                     lut=None)
            self._shown_data = self._uint8_cache[1]

    def _render_overlays(self) -> None:
        shown = self.shown_overlays()
        if not shown or self.decoded is None:
            self.overlay_item.clear()
            self.overlay_item.setVisible(False)
            return
        layer = overlays.rgba_layer(shown, self.decoded.shape)
        self.overlay_item.setImage(layer, autoLevels=False, levels=(0, 255))
        self.overlay_item.setVisible(True)

    # -- interaction ---------------------------------------------------------------------------
    def _on_window_drag(self, dx: float, dy: float, start: bool, finish: bool) -> None:
        if self.window is None:
            return
        if start or self._drag_start is None:
            self._drag_start = self.window
        base = self._drag_start
        step = max(abs(base.width), 1.0) * WL_SENSITIVITY
        self.set_levels(base.center + dy * step, max(1.0, base.width + dx * step))
        if finish:
            self._drag_start = None

    def _on_range_changed(self, *_args: object) -> None:
        self._update_text()
        self.zoomChanged.emit(self.zoom())

    # -- corner text ---------------------------------------------------------------------------
    def _make_label(self, corner: str) -> QLabel:
        label = make_plain(QLabel(self.graphics))  # header text is never markup
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        font = QFont()
        font.setStyleHint(QFont.StyleHint.Monospace)
        font.setFamily("monospace")
        font.setPointSize(9)
        label.setFont(font)
        label.setStyleSheet("color: #e8e8e8; background: rgba(0, 0, 0, 110); padding: 2px;")
        align = Qt.AlignmentFlag.AlignRight if corner.endswith("r") else Qt.AlignmentFlag.AlignLeft
        label.setAlignment(align | Qt.AlignmentFlag.AlignTop)
        label.hide()
        return label

    def corner_text(self) -> dict[str, str]:
        """The four corners' text (tl: patient/study, tr: series, bl: W/L + zoom, br: size)."""
        d = self.decoded
        if d is None:
            return {k: "" for k in self._corners}
        ds = d.header
        get = (lambda k: str(ds.get(k, "") or "").strip()) if ds is not None else (lambda k: "")
        tl = ""
        if self.show_patient_text:
            name = get("PatientName").replace("^", " ").strip()
            lines = [name, get("PatientID"),
                     " ".join(filter(None, [_date(get("PatientBirthDate")), get("PatientSex")])),
                     _date(get("StudyDate")), get("StudyDescription")]
            tl = "\n".join(x for x in lines if x)
        series = " ".join(filter(None, [f"Se {get('SeriesNumber')}" if get("SeriesNumber")
                                        else "", get("SeriesDescription")]))
        tr_lines = [d.modality, series,
                    f"Im {get('InstanceNumber')}" if get("InstanceNumber") else "",
                    f"Frame {d.frame + 1}/{d.n_frames}" if d.n_frames > 1 else ""]
        bl_lines = []
        if self.window is not None:
            w = self.window
            bl_lines.append(f"W {w.width:.0f}  L {w.center:.0f}  ({w.name})")
        bl_lines.append(f"Zoom {self.zoom() * 100:.0f}%")
        h, w_px = d.shape
        br_lines = [f"{w_px} x {h}", d.photometric + (" inverted" if self.user_invert else "")]
        return {"tl": tl, "tr": "\n".join(x for x in tr_lines if x),
                "bl": "\n".join(bl_lines), "br": "\n".join(br_lines)}

    def corner_tooltip(self, pos: QPointF) -> str:
        """The tooltip of the corner label under ``pos`` (graphics view coordinates), or ''."""
        for label in self._corners.values():
            if label.isVisible() and label.toolTip() and label.geometry().contains(pos.toPoint()):
                return label.toolTip()
        return ""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            pos = self.graphics.viewport().mapTo(self.graphics, event.pos())
            tip = self.corner_tooltip(QPointF(pos))
            if tip:
                QToolTip.showText(event.globalPos(), tip, self.graphics)
                return True
        return super().eventFilter(watched, event)

    def _update_text(self) -> None:
        d = self.decoded
        multi = d is not None and d.n_frames > 1
        self._corners["tr"].setToolTip(FRAME_TOOLTIP if multi else "")
        for corner, text in self.corner_text().items():
            label = self._corners[corner]
            label.setText(text)
            label.setVisible(bool(text))
            label.adjustSize()
        self._layout_labels()

    def _layout_labels(self) -> None:
        w, h, m = self.graphics.width(), self.graphics.height(), 6
        c = self._corners

        def side_by_side(left: QLabel, right: QLabel) -> bool:
            return not (left.isVisibleTo(self) and right.isVisibleTo(self)) \
                or left.width() + right.width() + 3 * m <= w

        # in a narrow view (a 2x2 layout) the right-hand block goes below / the left-hand one
        # above its neighbour rather than over it
        top_right_y = m if side_by_side(c["tl"], c["tr"]) else m + c["tl"].height() + 2
        bottom_left_y = h - c["bl"].height() - m
        if not side_by_side(c["bl"], c["br"]):
            bottom_left_y -= c["br"].height() + 2
        c["tl"].move(m, m)
        c["tr"].move(w - c["tr"].width() - m, top_right_y)
        c["bl"].move(m, bottom_left_y)
        c["br"].move(w - c["br"].width() - m, h - c["br"].height() - m)
        self._message.setGeometry(20, 0, max(10, w - 40), h)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._layout_labels()


def _date(value: str) -> str:
    """DICOM DA ``YYYYMMDD`` as ``YYYY-MM-DD`` (other text unchanged)."""
    v = value.strip()
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 and v.isdigit() else v
