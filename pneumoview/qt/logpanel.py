"""Errors and notices in one place: a log panel (dock) fed by the ``logging`` module.

:class:`QtLogHandler` forwards records from any thread through a queued signal, so workers can
log freely; the panel shows the time, level and message. Messages never include patient data
(callers log file names and reasons only).
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from pneumoview.core.paths import display_path

MAX_LINES = 2000


class _Bridge(QObject):
    record = Signal(str, int)


class _MessageOnly(logging.Formatter):
    """The message alone: a traceback belongs in a developer's console, not the log panel."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


class QtLogHandler(logging.Handler):
    """A logging handler that hands formatted records to the GUI thread."""

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.bridge = _Bridge()
        self.setFormatter(_MessageOnly())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.bridge.record.emit(self.format(record), record.levelno)
        except RuntimeError:  # the panel is gone (application closing)
            pass


class LogPanel(QPlainTextEdit):
    """Read-only list of messages, newest last."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(MAX_LINES)
        self.setPlaceholderText("Messages and errors appear here.")

    def add(self, message: str, level: int = logging.INFO) -> None:
        stamp = time.strftime("%H:%M:%S")
        name = logging.getLevelName(level)
        self.appendPlainText(f"{stamp} {name:<7} {display_path(message)}")
        self.moveCursor(QTextCursor.MoveOperation.End)
