"""Image navigation keys that work wherever the keyboard focus is, while the image is shown.

The window's Up/Down/Left/Right and PageUp/PageDown actions are ordinary window shortcuts. Two
things can still take those keys from them: a widget that receives the key press itself (an
item view such as the Batch table or the tag list, a dock floating in its own window, a
platform that delivers the press without a shortcut-override pass), and a spin box, which needs
Up/Down to change its value but is overridden by the shortcut. :class:`NavigationKeys`, an
application-wide event filter, settles both: a spin box keeps the keys it edits with; any other
widget of the main window (docks included) hands a navigation key press to the action.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QKeyEvent
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDockWidget,
    QLineEdit,
    QMainWindow,
    QTextEdit,
    QWidget,
)

#: Keys a spin box uses to change its value: it keeps them while it has the focus.
SPIN_KEYS = frozenset({Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_PageUp, Qt.Key.Key_PageDown})
#: Widgets that take arrow keys for typing (the cursor), which they claim themselves.
TEXT_INPUTS = (QLineEdit, QAbstractSpinBox, QComboBox, QTextEdit)


class NavigationKeys(QObject):
    """Routes navigation key presses in ``window`` to ``actions`` (key -> action) while
    ``active()`` says the image is on screen. Install with ``app.installEventFilter``."""

    def __init__(self, window: QMainWindow, actions: dict[Qt.Key, QAction],
                 active: Callable[[], bool]) -> None:
        super().__init__(window)
        self.window = window
        self.actions = dict(actions)
        self.active = active

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind not in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress):
            return False
        if not isinstance(obj, QWidget) or not isinstance(event, QKeyEvent):
            return False
        key = Qt.Key(event.key())
        if key not in self.actions or not self._plain(event) or not self._in_window(obj):
            return False
        if kind == QEvent.Type.ShortcutOverride:
            if isinstance(obj, QAbstractSpinBox) and key in SPIN_KEYS:
                event.accept()  # the spin box gets the key press, not the shortcut
            return False
        if isinstance(obj, TEXT_INPUTS) or not self.active():
            return False  # a text field claimed it for its cursor
        action = self.actions[key]
        if action.isEnabled():
            action.trigger()
        return True

    @staticmethod
    def _plain(event: QKeyEvent) -> bool:
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        return mods == Qt.KeyboardModifier.NoModifier

    def _in_window(self, widget: QWidget) -> bool:
        top = widget.window()
        if top is self.window:
            return True
        return isinstance(top, QDockWidget) and top.parentWidget() is self.window
