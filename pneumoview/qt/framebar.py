"""The frame bar under the viewports: Play/Pause, the frame slider, "n / N" and the cine rate.

It is shown only for a multi-frame image. Moving the slider (by hand or by the cine timer)
emits :attr:`FrameBar.frameRequested`; the window asks the active viewport for that frame.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QToolButton, QWidget

from pneumoview.qt.plaintext import make_plain
from pneumoview.qt.tools.cine import CineControl


class FrameBar(QWidget):
    """Frame slider and cine controls for the image in the active viewport."""

    frameRequested = Signal(int)

    def __init__(self, shown_frame: Callable[[], int | None],
                 cine_parent: QObject | None = None) -> None:
        super().__init__()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setMinimum(0)
        self.label = make_plain(QLabel())
        # cine: play/pause and the rate; the timer waits for each frame to be shown
        self.cine = CineControl(self.slider, shown_frame, cine_parent)
        self.play_button = QToolButton()
        self.play_button.setText("Play")
        self.play_button.setCheckable(True)
        self.play_button.clicked.connect(lambda _on: self.cine.toggle())
        self.cine.playingChanged.connect(self._on_cine_playing)
        layout.addWidget(self.play_button)
        layout.addWidget(make_plain(QLabel("Frame")))
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        layout.addWidget(self.cine.fps_box)
        self.slider.valueChanged.connect(self.frameRequested)
        self.hide()

    def set_image(self, n_frames: int, frame: int) -> None:
        """A (new) image of ``n_frames`` at ``frame``: the range, without asking for a frame."""
        self.slider.blockSignals(True)
        self.slider.setMaximum(max(0, n_frames - 1))
        self.slider.setValue(frame)
        self.slider.blockSignals(False)
        self.setVisible(n_frames > 1)
        self.show_frame(frame, n_frames)

    def show_frame(self, frame: int, n_frames: int) -> None:
        self.label.setText(f"{frame + 1} / {n_frames}")

    def _on_cine_playing(self, playing: bool) -> None:
        self.play_button.setChecked(playing)
        self.play_button.setText("Pause" if playing else "Play")
