"""File > Resume Batch Report...: choose one of the unfinished reports an earlier session left.

Passive: it shows what :func:`pneumoview.core.savedreports.unfinished_reports` found (newest
first: folder, when it stopped, rows done, model, how it stopped) and says which one the user
chose; the controller resumes it.
"""

from __future__ import annotations

import time

from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from pneumoview.core.paths import display_path
from pneumoview.core.report import RunState
from pneumoview.core.savedreports import UnfinishedReport

HEADERS = ("Folder", "Stopped", "Rows done", "Model", "How it stopped")


def _cells(entry: UnfinishedReport) -> tuple[str, ...]:
    folder = display_path(entry.folder)
    if not entry.folder_exists:
        folder += "  (folder no longer there)"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.when))
    how = "cancelled" if entry.state is RunState.CANCELLED else "interrupted (crash or kill)"
    return folder, when, f"{entry.rows} of {entry.files}", entry.model, how


class ResumeDialog(QDialog):
    """A table of unfinished reports; :meth:`chosen` is the selected one after ``accept``."""

    def __init__(self, reports: list[UnfinishedReport], skipped: int = 0,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Resume Batch Report")
        self.reports = list(reports)
        intro = QLabel("Batch runs that stopped before the end. Resuming keeps the rows done "
                       "and flags the rest of the folder; it needs the model, threshold and "
                       "site profile that run used.")
        intro.setWordWrap(True)
        self.table = QTableWidget(len(self.reports), len(HEADERS))
        self.table.setHorizontalHeaderLabels(list(HEADERS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        for r, entry in enumerate(self.reports):
            for c, text in enumerate(_cells(entry)):
                item = QTableWidgetItem(text)
                item.setToolTip(display_path(entry.path) if c == 0 else text)
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.note = QLabel(f"{skipped} other report(s) in the reports folder cannot be resumed; "
                           "the Log panel says why." if skipped else "")
        self.note.setVisible(bool(skipped))
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.resume_button = self.buttons.addButton(
            "&Resume", QDialogButtonBox.ButtonRole.AcceptRole)
        self.resume_button.setDefault(True)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.table.doubleClicked.connect(lambda _index: self.accept())
        self.table.itemSelectionChanged.connect(self._update)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.note)
        layout.addWidget(self.buttons)
        self.resize(820, 320)
        if self.reports:
            self.table.selectRow(0)  # the newest
        self._update()

    def _update(self) -> None:
        self.resume_button.setEnabled(self.chosen() is not None)

    def chosen(self) -> UnfinishedReport | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.reports[rows[0].row()]
