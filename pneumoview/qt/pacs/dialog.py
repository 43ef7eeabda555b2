"""File > Open from PACS...: a query form, the matching studies, retrieval with progress and
cancel. The dialog only shows; the query and the retrieval run as jobs on the window's
WorkRunner, and their errors go to the window's one error sink (and the dialog's status line).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from pneumoview.core.errors import PneumoViewError
from pneumoview.qt.pacs import jobs
from pneumoview.qt.plaintext import plain_label

COLUMNS = ("Patient ID", "Patient name", "Study date", "Accession", "Description",
           "Modalities", "Images")
LANE = "pacs"


class PacsDialog(QDialog):
    """Emits ``studyRetrieved(folder)`` once a retrieval brought studies: the folder of all
    retrieved studies (the window opens it, so they appear in the study tree)."""

    studyRetrieved = Signal(str)

    def __init__(self, settings: Any, runner: Any, report_error: Callable[[str], None],
                 report: Callable[[str], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open from PACS")
        self.settings = settings
        self.runner = runner
        self.report_error = report_error
        self.report = report
        self.job: Any = None
        self.matches: list[Any] = []
        self._build()

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.node = QComboBox(editable=True)
        self.node.addItems(list(getattr(self.settings, "pacs_nodes", []) or []))
        self.node.lineEdit().setPlaceholderText("dicom://AET@HOST:PORT or https://HOST/PATH")
        self.patient_id = QLineEdit()
        self.patient_name = QLineEdit(placeholderText="DOE^JOHN or DOE*")
        self.date_from = QLineEdit(placeholderText="YYYYMMDD")
        self.date_to = QLineEdit(placeholderText="YYYYMMDD")
        self.modality = QComboBox(editable=True)
        self.modality.addItems(["", "CR", "DX", "CT", "MR", "US", "SR"])
        self.accession = QLineEdit()
        form = QFormLayout()
        form.addRow("PACS node", self.node)
        form.addRow("Patient ID", self.patient_id)
        form.addRow("Patient name", self.patient_name)
        dates = QHBoxLayout()
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to)
        form.addRow("Study date", dates)
        form.addRow("Modality", self.modality)
        form.addRow("Accession number", self.accession)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = plain_label("")
        self.search_button = QPushButton("&Search")
        self.retrieve_button = QPushButton("&Retrieve")
        self.cancel_button = QPushButton("&Cancel")
        self.close_button = QPushButton("Close")
        self.retrieve_button.setEnabled(False)
        self.cancel_button.setEnabled(False)
        self.search_button.clicked.connect(self.search)
        self.retrieve_button.clicked.connect(self.retrieve_selected)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)
        self.table.itemSelectionChanged.connect(self._sync_buttons)
        buttons = QHBoxLayout()
        for b in (self.search_button, self.retrieve_button, self.cancel_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.resize(860, 520)

    # -- inputs ----------------------------------------------------------------------------
    def _node(self) -> Any:
        from pneumoview.core.pacs.nodes import parse_node

        return parse_node(self.node.currentText())

    def _query(self) -> Any:
        from pneumoview.core.pacs.query import StudyQuery

        return StudyQuery(patient_id=self.patient_id.text().strip(),
                          patient_name=self.patient_name.text().strip(),
                          date_from=self.date_from.text().strip(),
                          date_to=self.date_to.text().strip(),
                          modality=self.modality.currentText().strip(),
                          accession=self.accession.text().strip())

    def _connection(self) -> Any:
        from pneumoview.core.pacs.transfer import Connection
        from pneumoview.core.runoptions import resolve_network

        chosen = resolve_network(None, self.settings)
        return Connection(calling_ae=chosen.calling_ae, timeout_s=float(chosen.timeout_s))

    def _fail(self, message: str) -> None:
        self.status.setText(message)
        self.report_error(message)

    # -- actions -----------------------------------------------------------------------------
    def search(self) -> None:
        try:
            node, query, conn = self._node(), self._query(), self._connection()
        except PneumoViewError as exc:
            self._fail(str(exc))
            return
        from pneumoview.qt.workers import Job

        job = Job(jobs.query, node, query, conn, name="pacs-query")
        job.bind(cancel=job.is_cancelled)
        job.signals.result.connect(lambda matches: self._show_matches(node, matches))
        self._start(job, f"Searching {node.label}...")

    def retrieve_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        uids = [self.matches[r].study_uid for r in rows if r < len(self.matches)]
        if not uids:
            return
        try:
            node, conn = self._node(), self._connection()
        except PneumoViewError as exc:
            self._fail(str(exc))
            return
        from pneumoview.qt.workers import Job

        job = Job(jobs.retrieve, node, uids, conn, name="pacs-retrieve")
        job.bind(cancel=job.is_cancelled, progress=job.signals.progress.emit)
        job.signals.progress.connect(self._on_progress)
        job.signals.result.connect(self._on_retrieved)
        self._start(job, f"Retrieving {len(uids)} studies from {node.label}...")

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("Cancelling...")

    def _start(self, job: Any, text: str) -> None:
        job.signals.error.connect(self._on_error)
        job.signals.finished.connect(lambda: self._done(job))
        self.job = job
        self.status.setText(text)
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self._sync_buttons()
        self.runner.submit(job, lane=LANE)

    def _done(self, job: Any) -> None:
        if self.job is job:
            self.job = None
        self.progress.setVisible(False)
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        busy = self.job is not None
        self.search_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.retrieve_button.setEnabled(not busy and bool(self.table.selectedIndexes()))

    # -- results (GUI thread, queued from the job) -------------------------------------------
    def _show_matches(self, node: Any, matches: list[Any]) -> None:
        self.matches = list(matches)
        self.table.setRowCount(len(self.matches))
        for r, m in enumerate(self.matches):
            values = (m.patient_id, m.patient_name, m.study_date, m.accession, m.description,
                      m.modalities, "" if m.instances is None else str(m.instances))
            for c, value in enumerate(values):
                item = QTableWidgetItem(str(value))
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(r, c, item)
        self.status.setText(f"{len(self.matches)} studies on {node.label}")
        self._remember(node)

    def _remember(self, node: Any) -> None:
        """A node that answered is kept in the settings (most recent first)."""
        nodes = list(getattr(self.settings, "pacs_nodes", []) or [])
        text = node.label
        if nodes[:1] != [text] and self.settings is not None:
            self.settings.pacs_nodes = [text] + [n for n in nodes if n != text][:9]

    def _on_progress(self, value: Any) -> None:
        index, studies, done, total = value
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
        self.status.setText(f"Study {index + 1} of {studies}: {done}"
                            f"{'/' + str(total) if total else ''} images")

    def _on_retrieved(self, result: Any) -> None:
        for what, reason in result.failed[:5]:
            self.report_error(f"PACS retrieval: {what}: {reason}")
        state = "cancelled" if result.cancelled else "done"
        studies = len(result.folders)
        self.status.setText(f"Retrieval {state}: {result.instances} images in {studies} "
                            f"{'study' if studies == 1 else 'studies'}"
                            + (f", {len(result.failed)} failures" if result.failed else ""))
        self.report(self.status.text())
        if result.folders:
            from pneumoview.core.pacs.cache import retrieval_root

            self.studyRetrieved.emit(str(retrieval_root()))

    def _on_error(self, exc: Any) -> None:
        self._fail(str(exc) if isinstance(exc, PneumoViewError)
                   else f"PACS: {type(exc).__name__}: {exc}")

    def reject(self) -> None:  # closing cancels what runs
        self.cancel()
        super().reject()
