"""Cine: play a multi-frame image by stepping its frame slider on a timer.

The timer never outruns decoding: it asks for the next frame only once the last one asked for
is on screen (frames are decoded off the GUI thread), so a slow codec plays slower instead of
queueing work. The rate starts at the file's own (:func:`cine_fps`) and can be changed.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QSlider, QSpinBox

from pneumoview.core.reading.cine import MAX_FPS, MIN_FPS, cine_fps


class CineControl(QObject):
    playingChanged = Signal(bool)

    def __init__(self, slider: QSlider, shown_frame: Callable[[], int | None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.slider = slider
        self.shown_frame = shown_frame
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.fps_box = QSpinBox()
        self.fps_box.setRange(int(MIN_FPS), int(MAX_FPS))
        self.fps_box.setSuffix(" fps")
        self.fps_box.setToolTip("Cine frame rate")
        self.fps_box.valueChanged.connect(self.set_fps)
        self.set_fps(10)

    @property
    def playing(self) -> bool:
        return self.timer.isActive()

    def set_fps(self, fps: float) -> None:
        fps = min(MAX_FPS, max(MIN_FPS, float(fps)))
        self.timer.setInterval(int(round(1000.0 / fps)))
        if self.fps_box.value() != round(fps):
            self.fps_box.blockSignals(True)
            self.fps_box.setValue(int(round(fps)))
            self.fps_box.blockSignals(False)

    def set_image(self, header: object | None) -> None:
        """A new image: stop, and take its own frame rate."""
        self.stop()
        self.set_fps(cine_fps(header))  # type: ignore[arg-type]

    def toggle(self) -> None:
        if self.playing:
            self.stop()
        elif self.slider.maximum() > self.slider.minimum():
            self.timer.start()
            self.playingChanged.emit(True)

    def stop(self) -> None:
        if self.playing:
            self.timer.stop()
            self.playingChanged.emit(False)

    def step(self, delta: int) -> None:
        """One frame forward or back (wrapping), e.g. from the frame-step keys."""
        lo, hi = self.slider.minimum(), self.slider.maximum()
        if hi <= lo:
            return
        n = hi - lo + 1
        self.slider.setValue(lo + (self.slider.value() - lo + delta) % n)

    def _tick(self) -> None:
        if self.shown_frame() != self.slider.value():
            return  # the last frame asked for is still being decoded
        self.step(1)
