"""A place in a menu that the host's :class:`~pneumoview.qt.host.MenuSlot` s map to: the
window's ``_build_menus`` gives each slot one (a new slot is one line there)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu


@dataclass
class MenuPlace:
    """A place in a menu: before ``anchor`` (``None``: at the end), in its own group when
    ``leading`` / ``trailing`` ask for a separator before / after what is added."""

    menu: Callable[[], QMenu]
    anchor: QAction | None
    leading: bool = False
    trailing: bool = False
    used: bool = False

    def add(self, action: QAction) -> None:
        menu = self.menu()
        if not self.used:
            self.used = True
            if self.leading:
                self._insert(menu, None)
            if self.trailing:
                self.anchor = self._insert(menu, None)
        self._insert(menu, action)

    def _insert(self, menu: QMenu, action: QAction | None) -> QAction:
        if action is None:
            if self.anchor is None:
                return menu.addSeparator()
            return menu.insertSeparator(self.anchor)
        if self.anchor is None:
            menu.addAction(action)
        else:
            menu.insertAction(self.anchor, action)
        return action
