"""View > Window Presets: the active image's window/level presets, the current one checked.

The keys 1..9 belong to the window-wide "Preset N" actions (``WindowActions.presets``); the
menu only shows them beside each entry.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QActionGroup
from PySide6.QtWidgets import QMenu, QWidget

from pneumoview.qt.radiographview import RadiographView


class PresetMenu(QMenu):
    def __init__(self, view: Callable[[], RadiographView], notify: Callable[[str], object],
                 parent: QWidget | None = None) -> None:
        super().__init__("&Window Presets", parent)
        self._view = view  # the active viewport's view
        self._notify = notify  # a short status-bar message
        self._group = QActionGroup(self)

    def apply(self, index: int) -> None:
        if not self._view().apply_preset(index):
            self._notify(f"No preset {index + 1} for this image")

    def rebuild(self) -> None:
        """The presets of the image now in the active view."""
        view = self._view()
        self.clear()
        self._group = QActionGroup(self)
        for i, win in enumerate(view.presets):
            text = f"{win.name}  (W {win.width:.0f} / L {win.center:.0f})"
            if i < 9:
                text += f"\t{i + 1}"  # shown only: the window-wide "Preset N" actions take keys
            act = self.addAction(text)
            act.setCheckable(True)
            act.triggered.connect(lambda _=False, i=i: self.apply(i))
            self._group.addAction(act)
        self.setEnabled(bool(view.presets))
        self.sync()

    def sync(self) -> None:
        """Check the preset the view's window now matches (none after a drag)."""
        view = self._view()
        for act, win in zip(self.actions(), view.presets, strict=False):
            act.setChecked(win == view.window)
