"""File -> Batch Flag Folder: a panel with progress, Cancel and a live, sortable results table.

The batch itself is the core engine (:func:`pneumoview.core.batch.run_batch`) run by
:func:`pneumoview.qt.batchworker.gui_batch` on a background thread; rows and progress arrive as
queued signals. The table is sorted by probability (highest first) by default, can be filtered
to flagged images and switched to one row per study (its highest image probability).
Double-click opens the image in the viewer; "Next Flagged" (N) walks the flagged rows in the
table's order. Save Report copies the CSV that the run writes row by row into
``data_dir()/reports/``.

The viewer stays usable while a batch runs: decoding runs in separate, lower-priority processes
and the model's thread count gives way to the viewer's busy decode thread (the thread rule in
:mod:`pneumoview.core.threads`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QBrush, QColor, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QMainWindow,
    QMenu,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from pneumoview.core.paths import display_path
from pneumoview.qt.batchworker import Started, copy_report, gui_batch
from pneumoview.qt.plaintext import plain_label, tip
from pneumoview.qt.workers import Job, WorkRunner

log = logging.getLogger("pneumoview.batch")

FLAGGED_COLOUR = "#c62828"
NOT_FLAGGED_COLOUR = "#2e7d32"
MUTED_COLOUR = "#757575"

COLUMNS = ("Patient", "Study date", "File", "Probability", "State", "Status", "Message")
COL_PROB = COLUMNS.index("Probability")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ROW_ROLE = Qt.ItemDataRole.UserRole + 2
BATCH_DOCK_FRACTION = 0.4  # of the window height, when the Batch dock opens


def _date(value: str) -> str:
    v = (value or "").strip()
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 and v.isdigit() else v


def _state(row: dict[str, Any]) -> str:
    if row.get("status") != "scored":
        return ""
    return "Flagged" if row.get("flagged") else "Not flagged"


def study_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per study: its highest image probability, flagged if any image is.

    Files without a Study Instance UID (non-DICOM, unreadable) stay one row each.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        key = row.get("study_instance_uid") or f"\0{row.get('relpath')}"
        groups.setdefault(key, []).append(row)
    out = []
    for members in groups.values():
        if len(members) == 1 and not members[0].get("study_instance_uid"):
            out.append(dict(members[0], n_images=1))
            continue
        scored = [m for m in members if m.get("status") == "scored"
                  and m.get("probability") is not None]
        best = max(scored, key=lambda m: m["probability"]) if scored else members[0]
        n_flagged = sum(1 for m in scored if m.get("flagged"))
        statuses = sorted({m.get("status", "") for m in members})
        out.append({
            **best,
            "relpath": f"{len(members)} image(s); highest: {best.get('relpath')}",
            "status": "scored" if scored else ", ".join(statuses),
            "flagged": (n_flagged > 0) if scored else None,
            "message": f"{n_flagged} of {len(scored)} scored image(s) flagged"
                       + (f"; {len(members) - len(scored)} not scored" if
                          len(members) > len(scored) else ""),
            "n_images": len(members),
        })
    return out


class BatchResultsModel(QAbstractTableModel):
    """Rows of the running batch (typed report rows), per image or per study."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict[str, Any]] = []
        self.study_level = False
        self._shown: list[dict[str, Any]] = []
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(self._rebuild)

    # -- data in -----------------------------------------------------------------------------
    def clear(self) -> None:
        self.beginResetModel()
        self.rows, self._shown = [], []
        self.endResetModel()

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self.rows.extend(rows)
        if self.study_level:  # regrouping is cheap but not per row: coalesce
            if not self._timer.isActive():
                self._timer.start()
            return
        first = len(self._shown)
        self.beginInsertRows(QModelIndex(), first, first + len(rows) - 1)
        self._shown.extend(rows)
        self.endInsertRows()

    def set_study_level(self, on: bool) -> None:
        self.study_level = bool(on)
        self._rebuild()

    def _rebuild(self) -> None:
        self.beginResetModel()
        self._shown = study_rows(self.rows) if self.study_level else list(self.rows)
        self.endResetModel()

    # -- Qt model ----------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008,N802
        return 0 if parent.isValid() else len(self._shown)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008,N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            if section == COLUMNS.index("File") and self.study_level:
                return "Images"
            return COLUMNS[section]
        return None

    def row_at(self, row: int) -> dict[str, Any]:
        return self._shown[row]

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._shown[index.row()]
        col = index.column()
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(row, col)
        if role == SORT_ROLE:
            if col == COL_PROB:
                p = row.get("probability")
                return -1.0 if p is None else float(p)
            return self._text(row, col).lower()
        if role == Qt.ItemDataRole.ForegroundRole and col in (COL_PROB, COLUMNS.index("State")):
            if row.get("status") != "scored":
                return QBrush(QColor(MUTED_COLOUR))
            return QBrush(QColor(FLAGGED_COLOUR if row.get("flagged") else NOT_FLAGGED_COLOUR))
        if role == Qt.ItemDataRole.ToolTipRole:
            return tip(str(row.get("path", "")))
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_PROB:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _text(row: dict[str, Any], col: int) -> str:
        name = COLUMNS[col]
        if name == "Patient":
            return str(row.get("patient_id") or "")
        if name == "Study date":
            return _date(str(row.get("study_date") or ""))
        if name == "File":
            return display_path(str(row.get("relpath") or ""))
        if name == "Probability":
            p = row.get("probability")
            return "" if p is None else f"{float(p):.3f}"
        if name == "State":
            return _state(row)
        if name == "Status":
            return str(row.get("status") or "").replace("_", " ")
        return display_path(str(row.get("message") or ""))


class FlaggedFilter(QSortFilterProxyModel):
    """Sorting by the numeric sort role; optionally only flagged rows."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.flagged_only = False
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def set_flagged_only(self, on: bool) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9 (invalidateFilter is deprecated)
            self.beginFilterChange()
            self.flagged_only = bool(on)
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.flagged_only = bool(on)
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int,  # noqa: N802
                         source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        if not self.flagged_only:
            return True
        model = self.sourceModel()
        return bool(model.row_at(source_row).get("flagged"))  # type: ignore[attr-defined]


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
    saveRequested = Signal()
    openRequested = Signal(str)  # a file path to show in the viewer

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder_label = plain_label("No batch yet: File > Batch Flag Folder...")
        self.folder_label.setWordWrap(True)
        self.start_button = QPushButton("Flag Folder...")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
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
    def set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def show_progress(self, p: Any) -> None:
        self.progress.setRange(0, max(1, p.total))
        self.progress.setValue(p.done)
        self.progress_label.setText(
            f"{p.done}/{p.total} files  |  {p.rate:.1f} img/s  |  ETA {_eta(p.eta_s)}  |  "
            f"{p.flagged} flagged, {p.errors} errors")


class BatchController(QObject):
    """Runs batches for a main window (or standalone in tests) and feeds the panel."""

    finished = Signal(object)  # BatchSummary, or None after a failure
    started = Signal(object)  # batchworker.Started

    def __init__(self, settings: Any = None, runner: WorkRunner | None = None,
                 model_dir: str | None = None, device: str | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._own_runner = runner is None
        self.runner = runner or WorkRunner(self)
        self.model_dir = model_dir
        self.device = device
        self.panel = BatchPanel()
        self.window: QMainWindow | None = None
        self.job: Job | None = None
        self.info: Started | None = None
        self.summary: Any = None
        self.report_path: str | None = None
        self.open_image: Callable[[str], None] | None = None
        self.default_folder: Callable[[], str | None] = lambda: None
        self.panel.startRequested.connect(self.choose_and_start)
        self.panel.cancelRequested.connect(self.cancel)
        self.panel.saveRequested.connect(self.choose_and_save)
        self.panel.openRequested.connect(self._open)

    # -- wiring into the main window ---------------------------------------------------------
    def attach(self, window: QMainWindow) -> None:
        """Add File > Batch Flag Folder..., Go > Next Flagged (N) and the Batch dock."""
        self.window = window
        self.runner = getattr(window, "runner", None) or self.runner
        self._own_runner = self._own_runner and getattr(window, "runner", None) is None
        options = getattr(window, "options", None)
        self.model_dir = self.model_dir or getattr(options, "model", None)
        self.device = self.device or getattr(options, "device", None)
        self.default_folder = lambda: getattr(window, "current_root", None)
        self.open_image = getattr(window, "open_in_viewer", None) or self._open_in_window
        dock = QDockWidget("Batch", window)
        dock.setObjectName("dock-batch")
        dock.setWidget(self.panel)
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        log_dock = getattr(window, "log_dock", None)
        if log_dock is not None:
            window.tabifyDockWidget(log_dock, dock)
        dock.hide()
        self.dock = dock
        self.act_batch = QAction("&Batch Flag Folder...", window)
        self.act_batch.setShortcut(QKeySequence("Ctrl+B"))
        self.act_batch.triggered.connect(self.choose_and_start)
        self.act_next = QAction("Next &Flagged (batch)", window)
        self.act_next.setShortcut(QKeySequence("N"))
        self.act_next.triggered.connect(self.panel.next_flagged)
        window.addAction(self.act_batch)
        window.addAction(self.act_next)
        file_menu = _menu(window, "File")
        if file_menu is not None:
            actions = file_menu.actions()
            after_open = next((i for i, a in enumerate(actions)
                               if a.text().replace("&", "").startswith("Open Folder")), None)
            before = actions[after_open + 1] if after_open is not None and \
                after_open + 1 < len(actions) else None
            file_menu.insertAction(before, self.act_batch)
        go_menu = _menu(window, "Go")
        if go_menu is not None:
            go_menu.addSeparator()
            go_menu.addAction(self.act_next)
        if not hasattr(window, "view_menu"):  # the main window lists every dock itself
            view_menu = _menu(window, "View")
            if view_menu is not None:
                view_menu.addAction(dock.toggleViewAction())

    def _show_dock(self) -> None:
        """Show and raise the Batch dock; tall enough for a dozen result rows when it was
        hidden or squeezed (the bottom area is sized for the short Log), else as the user
        left it."""
        was_hidden = not self.dock.isVisible()
        self.dock.show()
        self.dock.raise_()
        window = self.window
        want = int(window.height() * BATCH_DOCK_FRACTION) if window is not None else 0
        if window is not None and (was_hidden or self.dock.height() < want // 2):
            window.resizeDocks([self.dock], [want], Qt.Orientation.Vertical)

    def _open_in_window(self, path: str) -> None:
        w = self.window
        if w is None:
            return
        tree = getattr(w, "tree", None)
        if tree is not None and tree.select_instance(path):
            return
        if hasattr(w, "open_files"):
            w.open_files([path])

    def _open(self, path: str) -> None:
        if self.open_image is not None:
            self.open_image(path)

    # -- running -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.job is not None

    def choose_and_start(self) -> None:
        if self.running:
            self._say("A batch is already running; cancel it first.")
            return
        start = self.default_folder() or ""
        folder = QFileDialog.getExistingDirectory(self.window or self.panel,
                                                  "Batch Flag Folder", start)
        if folder:
            self.start(folder)

    def start(self, folder: str, *, workers: int | None = None, batch_size: int = 32,
              out_dir: str | None = None) -> Job | None:
        """Start flagging ``folder`` in the background (one batch at a time)."""
        if self.running:
            return None
        if hasattr(self, "dock"):
            self._show_dock()
        panel = self.panel
        panel.model.clear()
        panel.progress.setRange(0, 0)  # busy until the scan has counted the files
        panel.progress_label.setText("Loading the model and scanning the folder...")
        panel.folder_label.setText(display_path(folder))
        panel.save_button.setEnabled(False)
        panel.set_running(True)
        self.summary, self.report_path, self.info = None, None, None
        settings = self.settings
        model_dir = self.model_dir or (getattr(settings, "ai_model_dir", "") or None)
        device = self.device or getattr(settings, "ai_device", "") or "auto"
        thresholds = dict(getattr(settings, "ai_thresholds", {}) or {})
        job = Job(gui_batch, os.path.abspath(folder), name="batch", model_dir=model_dir,
                  device=device, thresholds=thresholds, workers=workers,
                  batch_size=batch_size, out_dir=out_dir)
        job.bind(on_started=job.signals.progress.emit, on_progress=job.signals.progress.emit,
                 on_rows=job.signals.partial.emit, cancel=job.is_cancelled)
        job.signals.progress.connect(lambda p, j=job: self._on_progress(j, p))
        job.signals.partial.connect(lambda rows, j=job: self._on_rows(j, rows))
        job.signals.result.connect(lambda s, j=job: self._on_result(j, s))
        job.signals.error.connect(lambda e, j=job: self._on_error(j, e))
        job.signals.finished.connect(lambda j=job: self._on_finished(j))
        self.job = job
        self.runner.submit(job, lane="batch")
        return job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.panel.progress_label.setText("Cancelling...")
            self.panel.cancel_button.setEnabled(False)

    def _on_progress(self, job: Job, p: Any) -> None:
        if job is not self.job:
            return
        if isinstance(p, Started):
            self.info = p
            self.report_path = p.output
            self.panel.folder_label.setText(display_path(
                f"{p.folder}  —  {p.model_label}, threshold {p.threshold:.3f}"))
            return
        self.panel.show_progress(p)

    def _on_rows(self, job: Job, rows: list[dict[str, Any]]) -> None:
        if job is self.job:
            self.panel.model.add_rows(rows)

    def _on_result(self, job: Job, summary: Any) -> None:
        self.summary = summary
        self.report_path = summary.output
        self.panel.show_progress(_final_progress(summary))
        c = summary.counts
        word = "Cancelled" if summary.cancelled else "Finished"
        self._say(f"Batch {word.lower()}: {summary.done}/{summary.total} files, "
                  f"{c.get('scored', 0)} scored, {summary.flagged} flagged, "
                  f"{c.get('error', 0)} errors. Report: {summary.output}")
        self.panel.progress_label.setText(
            self.panel.progress_label.text() + f"  |  {word}"
            + (" (partial report kept)" if summary.cancelled else ""))

    def _on_error(self, job: Job, exc: Exception) -> None:
        self.summary = None
        self.panel.progress.setRange(0, 1)
        self.panel.progress_label.setText(display_path(f"Batch failed: {exc}"))
        self._say(f"Batch failed: {exc}", error=True)

    def _on_finished(self, job: Job) -> None:
        if job is not self.job:
            return
        self.job = None
        self.panel.set_running(False)
        self.panel.save_button.setEnabled(bool(self.report_path
                                               and os.path.exists(self.report_path)))
        self.finished.emit(self.summary)

    # -- saving ------------------------------------------------------------------------------
    def choose_and_save(self) -> None:
        if not self.report_path:
            return
        dest, _ = QFileDialog.getSaveFileName(self.window or self.panel, "Save Report",
                                              os.path.basename(self.report_path),
                                              "CSV (*.csv)")
        if dest:
            self.save_report(dest)

    def save_report(self, dest: str) -> bool:
        from pneumoview.core.errors import PneumoViewError

        if not self.report_path:
            return False
        try:
            copy_report(self.report_path, dest)
        except PneumoViewError as exc:
            self._say(str(exc), error=True)
            return False
        self._say(f"Report saved to {dest}")
        return True

    # -- messages and shutdown ---------------------------------------------------------------
    def _say(self, message: str, error: bool = False) -> None:
        w = self.window
        if w is not None and hasattr(w, "report_error") and error:
            w.report_error(message)
        elif w is not None and hasattr(w, "report"):
            w.report(message)
        else:
            (log.warning if error else log.info)("%s", message)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel a running batch and wait for it (the main window's runner does this too)."""
        if self.job is not None:
            self.job.cancel()
        if self._own_runner:
            self.runner.shutdown(timeout)


def _final_progress(summary: Any) -> Any:
    from pneumoview.core.batch import BatchProgress

    c = summary.counts
    return BatchProgress(summary.done, summary.total, c.get("scored", 0), summary.flagged,
                         c.get("not_scored", 0), c.get("skipped", 0), c.get("error", 0),
                         summary.elapsed_s, summary.rate, 0.0 if summary.finished else None,
                         "finished" if summary.finished else "cancelled")


def _menu(window: QMainWindow, title: str) -> QMenu | None:
    for action in window.menuBar().actions():
        if action.menu() is not None and action.text().replace("&", "") == title:
            return action.menu()
    return None
