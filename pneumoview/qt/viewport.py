"""One viewport: an image view, the image it shows and the decode request that fills it.

A :class:`Viewport` owns a :class:`~pneumoview.qt.radiographview.RadiographView` (with its own
window/level, zoom, pan and rotation), the :class:`~pneumoview.core.indexer.Instance` it shows
and the frame it wants. Frames come from the window's shared
:class:`~pneumoview.core.framecache.FrameCache`, else are decoded in the background in the
viewport's own ``decode`` lane (``latest_only``: a reader stepping quickly through images
decodes only the last one), so two viewports never wait for each other and the GUI thread only
hands the result to pyqtgraph. The window lays viewports out (:mod:`pneumoview.qt.viewportgrid`)
and follows the active one.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from PySide6.QtCore import QEvent, QMimeData, QObject, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFrame, QVBoxLayout, QWidget

from pneumoview.core import threads
from pneumoview.core.decoderprocess import IsolatedDecoder
from pneumoview.core.dicomio import DecodedImage
from pneumoview.core.framecache import FrameCache
from pneumoview.core.indexer import Instance
from pneumoview.core.paths import display_path
from pneumoview.qt.advice import advice
from pneumoview.qt.radiographview import PreparedImage, RadiographView, prepare
from pneumoview.qt.studytree import INSTANCE_MIME
from pneumoview.qt.workers import Job, WorkRunner

ACTIVE_BORDER = "#4f8fd8"

FrameKey = tuple[str, int]


def decode_lane(index: int) -> str:
    """The background lane of viewport ``index`` (the first keeps the viewer's ``decode``)."""
    return "decode" if index == 0 else f"decode-{index}"


def decode_task(decoder: IsolatedDecoder, path: str, frame: int, max_bytes: int,
                 cancelled: Callable[[], bool] | None = None,
                 on_decoded: Callable[[DecodedImage], None] | None = None) -> PreparedImage:
    """Worker: decode (compressed files in the decoder's process) and prepare one frame.

    ``on_decoded`` hears of the decoded frame before it is prepared for display, so the AI
    can start on it while this thread and the GUI put it on screen.
    """
    with threads.busy():
        decoded = decoder.decode(path, frame, max_bytes=max_bytes, cancelled=cancelled)
        if on_decoded is not None:
            on_decoded(decoded)
        return prepare(decoded)


def dropped_path(mime: QMimeData) -> str | None:
    if not mime.hasFormat(INSTANCE_MIME):
        return None
    return bytes(mime.data(INSTANCE_MIME).data()).decode("utf-8", "replace") or None


class Viewport(QFrame):
    """An image view with its own image, window and decode request (see the module docstring).

    Signals carry the viewport itself so the window can tell which one spoke.
    """

    activated = Signal(object)  # Viewport: clicked or given focus
    loading = Signal(object, str)  # Viewport, message for the status bar
    shown = Signal(object, object)  # Viewport, PreparedImage now on screen
    arriving = Signal(object, object)  # Viewport, DecodedImage decoded for it, not yet shown
    failed = Signal(object, str, str)  # Viewport, path, message
    instanceDropped = Signal(object, str)  # Viewport, path dragged from the study tree

    def __init__(self, index: int, frames: FrameCache[FrameKey, PreparedImage],
                 runner: WorkRunner, decoder: Callable[[], IsolatedDecoder],
                 max_bytes: Callable[[], int],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        self.frames = frames
        self.runner = runner
        self.decoder = decoder  # the window's, asked at each decode (it may be replaced)
        self.max_bytes = max_bytes
        self.lane = decode_lane(index)
        self.instance: Instance | None = None
        self.wanted: FrameKey | None = None
        self.displaying = False  # True while a new frame is being put on screen
        self.view = RadiographView()
        self.setObjectName(f"viewport-{index}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.setAcceptDrops(True)
        # the drop lands here, not in pyqtgraph's scene (which would ignore it)
        self.view.graphics.setAcceptDrops(False)
        self.view.graphics.viewport().setAcceptDrops(False)
        self.view.graphics.viewport().installEventFilter(self)
        self.set_highlighted(False, framed=False)

    # -- what it shows ---------------------------------------------------------------------------
    @property
    def decoded(self):  # noqa: ANN201 - DecodedImage | None, the view's
        return self.view.decoded

    def set_instance(self, inst: Instance, frame: int = 0) -> bool:
        """Show ``inst`` (``frame``); True when it is another image than the one shown."""
        changed = self.instance is None or self.instance.path != inst.path
        self.instance = inst
        self.request_frame(inst.path, frame)
        return changed

    def request_frame(self, path: str, frame: int) -> None:
        key = (path, frame)
        self.wanted = key
        cached = self.frames.get(key)
        if cached is not None:
            self.runner.cancel_lane(self.lane)
            self._display(cached)
            return
        self.loading.emit(self, f"Loading {display_path(os.path.basename(path))} ...")
        job = Job(decode_task, self.decoder(), path, frame, self.max_bytes(),
                  name="decode", tag=key)
        job.bind(cancelled=job.is_cancelled, on_decoded=job.signals.partial.emit)
        job.signals.partial.connect(lambda d, k=key: self._on_arriving(k, d))
        job.signals.result.connect(lambda p, k=key: self._on_decoded(k, p))
        job.signals.error.connect(lambda e, k=key: self._on_decode_error(k, e))
        self.runner.submit(job, lane=self.lane, latest_only=True)

    def forget(self, message: str = "") -> None:
        """No image (a folder is being read): stop its decode and clear the view."""
        self.runner.cancel_lane(self.lane)
        self.instance = None
        self.wanted = None
        self.view.clear(message)

    def _on_arriving(self, key: FrameKey, decoded: DecodedImage) -> None:
        if key == self.wanted:
            self.arriving.emit(self, decoded)

    def _on_decoded(self, key: FrameKey, prepared: PreparedImage) -> None:
        self.frames.put(key, prepared)
        if key == self.wanted:  # else stale: the reader moved on
            self._display(prepared)

    def _display(self, prepared: PreparedImage) -> None:
        shown = self.view.decoded
        same_file = shown is not None and shown.path == prepared.decoded.path
        self.displaying = True
        try:
            self.view.set_image(prepared, self.view.window if same_file else None)
        finally:
            self.displaying = False
        self.shown.emit(self, prepared)

    def _on_decode_error(self, key: FrameKey, exc: Exception) -> None:
        if key != self.wanted:
            return
        message = f"{exc}{advice(exc)}"
        self.view.clear(f"Cannot show this image:\n{message}")
        self.failed.emit(self, key[0], message)

    # -- being chosen ----------------------------------------------------------------------------
    def set_highlighted(self, on: bool, framed: bool) -> None:
        """A border marks the active viewport when there are several (none in 1x1)."""
        width = 2 if framed else 0
        self.layout().setContentsMargins(width, width, width, width)
        colour = ACTIVE_BORDER if on else "#303030"
        self.setStyleSheet(f"#{self.objectName()} {{ background: {colour}; }}" if framed else "")

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() in (QEvent.Type.MouseButtonPress, QEvent.Type.FocusIn):
            self.activated.emit(self)
        return False

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_path(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()  # files from the desktop: the window opens them

    def dragMoveEvent(self, event) -> None:  # noqa: ANN001 - QDragMoveEvent
        self.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        path = dropped_path(event.mimeData())
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.instanceDropped.emit(self, path)
