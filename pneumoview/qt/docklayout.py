"""Where the window's docks sit: the default sizes, the saved layout, View > Reset Window
Layout's starting point, and the stray dock tab bars Qt leaves behind."""

from __future__ import annotations

import base64
import logging

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QMainWindow, QTabBar

from pneumoview.core.settings import Settings

log = logging.getLogger("pneumoview.viewer")


class DockLayout:
    """The dock sizes of ``window``: the tree (left), the details (right), the log (bottom)."""

    def __init__(self, window: QMainWindow, tree: QDockWidget, details: QDockWidget,
                 log_dock: QDockWidget) -> None:
        self.window = window
        self.tree, self.details, self.log = tree, details, log_dock
        self.initial_state = QByteArray()  # what View > Reset Window Layout goes back to
        self.restored = False
        self._shown_once = False

    def apply_default(self) -> None:
        """Dock sizes for the window's width, applied after every panel (AI, batch) has been
        added and again when the window is first shown at its real size (a saved layout
        wins): the tree and the tag browser get room for their text on a wide screen too."""
        w = self.window
        width = w.width()
        tree = int(min(max(width * 0.25, 300), 520))
        details = int(min(max(width * 0.32, 400), 600))
        w.resizeDocks([self.tree, self.details], [tree, details], Qt.Orientation.Horizontal)
        w.resizeDocks([self.log], [110], Qt.Orientation.Vertical)

    def restore(self, settings: Settings, use_saved: bool) -> None:
        """The default layout, remembered for Reset; then the saved one when ``use_saved``."""
        w = self.window
        w.resize(1400, 900)
        self.apply_default()
        self.initial_state = w.saveState()
        self._shown_once = False
        self.restored = False
        if not use_saved:
            return  # screenshots use the default layout, whatever the user last arranged
        try:
            if settings.window_geometry:
                w.restoreGeometry(QByteArray(base64.b64decode(settings.window_geometry)))
            if settings.window_state:
                self.restored = w.restoreState(
                    QByteArray(base64.b64decode(settings.window_state)))
        except (ValueError, TypeError):
            log.warning("saved window layout is unreadable; using the default layout")

    def save(self, settings: Settings) -> None:
        w = self.window
        settings.window_geometry = base64.b64encode(bytes(w.saveGeometry())).decode()
        settings.window_state = base64.b64encode(bytes(w.saveState())).decode()

    def reset(self) -> None:
        self.window.restoreState(self.initial_state)
        self.apply_default()

    def first_show(self) -> None:
        """The window is on screen at its real size: the default sizes again, once."""
        if not self._shown_once:
            self._shown_once = True
            if not self.restored:
                self.apply_default()

    def tidy_tab_bars_later(self, *_: object) -> None:
        """After a dock is shown or hidden, once Qt has laid the docks out again."""
        QTimer.singleShot(0, self.window, lambda: hide_stray_tab_bars(self.window))


def hide_stray_tab_bars(window: QMainWindow) -> int:
    """Hide dock tab bars Qt left behind; returns how many.

    Qt (6.12) leaves a tabified group's old tab bar on screen, at its old place, when the
    group is laid out again: after one of its docks is hidden (the Batch dock, tabified with
    the Log and hidden at start) or shown (a batch starting), a second Log/Batch bar then
    covers the bottom of the study tree. A bar is stray when its tabs are not all visible
    docks, or when another bar for the same docks sits right above one of them (tabs are
    North) and it does not: the only bar of a group is never hidden.
    """
    docks = [d for d in window.findChildren(QDockWidget) if d.isVisible()]
    titles = {d.windowTitle() for d in docks}
    bars = [b for b in window.findChildren(QTabBar,
                                           options=Qt.FindChildOption.FindDirectChildrenOnly)
            if b.isVisible()]

    def tabs(bar: QTabBar) -> frozenset[str]:
        return frozenset(bar.tabText(i) for i in range(bar.count()))

    def attached(bar: QTabBar) -> bool:
        g = bar.geometry()
        return any(d.windowTitle() in tabs(bar) and abs(d.geometry().top() - g.bottom() - 1)
                   <= 2 and d.geometry().left() < g.right() and g.left() < d.geometry().right()
                   for d in docks)

    hidden = 0
    for bar in bars:
        texts = tabs(bar)
        twin_attached = any(o is not bar and tabs(o) == texts and attached(o) for o in bars)
        if len(texts) < 2 or not texts <= titles or (twin_attached and not attached(bar)):
            bar.hide()
            hidden += 1
    return hidden
