"""The AI's settings (threshold per model, CAM opacity) saved a moment after the user stops
moving a control, so dragging a slider writes the settings file once."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, QTimer

SAVE_DELAY_MS = 400


class DeferredSave(QObject):
    """Saves ``settings`` :data:`SAVE_DELAY_MS` after the last :meth:`later`, once
    :attr:`attached` (a controller driven without a window leaves the settings file alone)."""

    def __init__(self, settings: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.attached = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SAVE_DELAY_MS)
        self._timer.timeout.connect(self._save)

    def later(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _save(self) -> None:
        if self.settings is None or not self.attached:
            return
        from pneumoview.core.settings import save_settings

        save_settings(self.settings)
