"""The Batch dock's widgets: folder, Start / Cancel / Save Report, progress and the table.

A passive view: :class:`~pneumoview.qt.batch.controller.BatchController` drives it.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from pneumoview.qt.batch.table import COL_PROB, COLUMNS, ROW_ROLE, BatchResultsModel, FlaggedFilter
from pneumoview.qt.plaintext import plain_label


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60:02d}:{s % 60:02d}"


class BatchPanel(QWidget):
    """The widgets; :class:`BatchController` drives them."""

    startRequested = Signal()
    cancelRequested = Signal()
    resumeRequested = Signal()
    saveRequested = Signal()
    openRequested = Signal(str)  # a file path to show in the viewer

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder_label = plain_label("No batch yet: File > Batch Flag Folder...")
        self.folder_label.setWordWrap(True)
        self.start_button = QPushButton("Flag Folder...")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the cancelled or failed run into its own "
                                      "report: files already done are kept, the rest flagged")
        self.resume_button.setEnabled(False)
        self.save_button = QPushButton("Save Report...")
        self.save_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress_label = plain_label("")
        self.flagged_only = QCheckBox("Flagged only")
        self.study_level = QCheckBox("One row per study")
        self.next_button = QPushButton("Next Flagged (N)")
        self.model = BatchResultsModel(self)
        self.proxy = FlaggedFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL_PROB, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for col, width in zip(range(len(COLUMNS)), (110, 90, 260, 80, 90, 80), strict=False):
            self.table.setColumnWidth(col, width)

        top = QHBoxLayout()
        top.addWidget(self.folder_label, 1)
        top.addWidget(self.start_button)
        top.addWidget(self.cancel_button)
        top.addWidget(self.resume_button)
        top.addWidget(self.save_button)
        prog = QHBoxLayout()
        prog.addWidget(self.progress, 1)
        prog.addWidget(self.progress_label, 2)
        opts = QHBoxLayout()
        opts.addWidget(self.flagged_only)
        opts.addWidget(self.study_level)
        opts.addStretch(1)
        opts.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addLayout(prog)
        layout.addLayout(opts)
        layout.addWidget(self.table, 1)

        self.start_button.clicked.connect(self.startRequested)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.resume_button.clicked.connect(self.resumeRequested)
        self.save_button.clicked.connect(self.saveRequested)
        self.flagged_only.toggled.connect(self.proxy.set_flagged_only)
        self.study_level.toggled.connect(self.model.set_study_level)
        self.next_button.clicked.connect(self.next_flagged)
        self.table.doubleClicked.connect(self._on_double_click)

    # -- table helpers -----------------------------------------------------------------------
    def visible_rows(self) -> list[dict[str, Any]]:
        """Rows in the table's current order (after sorting and filtering)."""
        return [self.proxy.index(r, 0).data(ROW_ROLE) for r in range(self.proxy.rowCount())]

    def _on_double_click(self, index: QModelIndex) -> None:
        row = index.data(ROW_ROLE)
        if row and row.get("path"):
            self.openRequested.emit(str(row["path"]))

    def next_flagged(self) -> dict[str, Any] | None:
        """Select the next flagged row after the current one (wrapping) and open it."""
        n = self.proxy.rowCount()
        if n == 0:
            return None
        current = self.table.currentIndex()
        start = current.row() + 1 if current.isValid() else 0
        for step in range(n):
            r = (start + step) % n
            row = self.proxy.index(r, 0).data(ROW_ROLE)
            if row and row.get("flagged"):
                self.table.selectRow(r)
                self.table.setCurrentIndex(self.proxy.index(r, 0))
                self.table.scrollTo(self.proxy.index(r, 0))
                self.openRequested.emit(str(row["path"]))
                return row
        return None

    # -- state -------------------------------------------------------------------------------
    def set_running(self, running: bool, resumable: bool = False) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.resume_button.setEnabled(resumable and not running)

    def show_progress(self, p: Any) -> None:
        self.progress.setRange(0, max(1, p.total))
        self.progress.setValue(p.done)
        self.progress_label.setText(
            f"{p.done}/{p.total} files  |  {p.rate:.1f} img/s  |  ETA {_eta(p.eta_s)}  |  "
            f"{p.flagged} flagged, {p.errors} errors")
