"""Column widths that follow the content of a tree view, until the user sizes a column himself.

Fixed widths cut text ("Series", "max 90 % flag..."); Qt's ``ResizeToContents`` mode re-measures
on every change, which is slow for a big study tree. :class:`ColumnFitter` re-measures once
after a burst of changes (:meth:`schedule`), measuring only the rows Qt samples for a
column's size hint, and leaves alone a column the user has dragged to another width. With
``fill_last`` the last column also takes whatever width is left, like a stretched section,
but never less than its content (the view scrolls sideways instead of eliding).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication, QTreeView

FIT_DELAY_MS = 120


class ColumnFitter(QObject):
    """Sizes the columns of ``view`` to their content (see the module docstring)."""

    def __init__(self, view: QTreeView, fill_last: bool = False,
                 before_fit: Callable[[int], None] | None = None) -> None:
        """``before_fit(viewport_width)`` runs first at each fit (to show or hide columns)."""
        super().__init__(view)
        self.view = view
        self.fill_last = fill_last
        self.before_fit = before_fit
        self.user_sized: set[int] = set()
        self._fitting = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(FIT_DELAY_MS)
        self._timer.timeout.connect(self.fit)
        header = view.header()
        header.setStretchLastSection(False)
        header.sectionResized.connect(self._on_section_resized)
        view.viewport().installEventFilter(self)

    def schedule(self) -> None:
        """Fit once the current burst of changes is over."""
        self._timer.start()

    def fit(self) -> None:
        self._timer.stop()
        view, header = self.view, self.view.header()
        self._fitting = True
        try:
            if self.before_fit is not None:
                self.before_fit(view.viewport().width())
            for column in range(header.count()):
                if column not in self.user_sized and not view.isColumnHidden(column):
                    view.resizeColumnToContents(column)
            self._fill()
        finally:
            self._fitting = False

    def _fill(self) -> None:
        if not self.fill_last:
            return
        header = self.view.header()
        last = header.logicalIndex(header.count() - 1)
        if last < 0 or last in self.user_sized or self.view.isColumnHidden(last):
            return
        used = sum(header.sectionSize(header.logicalIndex(i)) for i in range(header.count())
                   if not self.view.isColumnHidden(header.logicalIndex(i)))
        spare = self.view.viewport().width() - used
        if spare > 0:
            header.resizeSection(last, header.sectionSize(last) + spare)

    def _on_section_resized(self, column: int, _old: int, _new: int) -> None:
        # only a drag on the header is the user's choice (Qt resizes sections itself too)
        if not self._fitting and QApplication.mouseButtons() != Qt.MouseButton.NoButton:
            self.user_sized.add(column)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.Type.Resize, QEvent.Type.Show) \
                and (self.fill_last or self.before_fit is not None):
            self.schedule()
        return False
