"""File -> Batch Flag Folder: a panel with progress, Cancel and a live, sortable results table.

The batch itself is the core engine (:func:`pneumoview.core.batch.run_batch`) run by
:func:`pneumoview.qt.batch.job.gui_batch` on a background thread; rows and progress arrive as
queued signals. The table is sorted by probability (highest first) by default, can be filtered
to flagged images and switched to one row per study (its highest image probability).
Double-click opens the image in the viewer; "Next Flagged" (N) walks the flagged rows in the
table's order. Save Report copies the CSV that the run writes row by row into
``data_dir()/reports/``.

Resume continues a run that stopped early into its own report (``flag --resume``'s rules: the
same model, threshold and operating points, or a refusal): the last run of this session, or a
report an earlier session left (cancelled, or interrupted by a crash or a kill). File > Resume
Batch Report... lists those (:func:`pneumoview.core.savedreports.unfinished_reports`); opening a
folder that has one enables the panel's Resume button for it.

The viewer stays usable while a batch runs: decoding runs in separate, lower-priority processes
and the model's thread count gives way to the viewer's busy decode thread (the thread rule in
:mod:`pneumoview.core.threads`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog

from pneumoview.core import runoptions
from pneumoview.core.aistate import AIState, resolve_choice
from pneumoview.core.errors import ReportError
from pneumoview.core.paths import display_path
from pneumoview.core.report import RunState
from pneumoview.core.savedreports import (
    SkippedReport,
    UnfinishedReport,
    copy_report,
    reports_dir,
    unfinished_for_folder,
    unfinished_reports,
)
from pneumoview.qt.advice import advice
from pneumoview.qt.batch.job import Started, gui_batch
from pneumoview.qt.batch.panel import BatchPanel
from pneumoview.qt.host import LOG_DOCK, DockArea, Host, MenuSlot
from pneumoview.qt.workers import Job, WorkRunner

log = logging.getLogger("pneumoview.batch")

BATCH_DOCK_FRACTION = 0.4  # of the window height, when the Batch dock opens


class BatchController(QObject):
    """Runs batches for a main window (or standalone in tests) and feeds the panel."""

    finished = Signal(object)  # BatchSummary, or None after a failure
    started = Signal(object)  # batch.job.Started

    def __init__(self, settings: Any = None, runner: WorkRunner | None = None,
                 model_dir: str | None = None, device: str | None = None,
                 parent: QObject | None = None, *, state: AIState | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._own_runner = runner is None
        self.runner = runner or WorkRunner(self)
        #: the viewer's AI state: the batch flags with the model and threshold the AI panel uses
        self.state = state or AIState(settings, resolve_choice(model_dir, device, settings))
        self.panel = BatchPanel()
        self._resume_tip = self.panel.resume_button.toolTip()
        self.window: Host | None = None
        self.job: Job | None = None
        self.info: Started | None = None
        self.summary: Any = None
        self.report_path: str | None = None
        #: a report an earlier session left for the open folder (Resume continues it)
        self.pending: UnfinishedReport | None = None
        self._resuming: str | None = None  # the report the running job continues
        self.open_image: Callable[[str], None] | None = None
        self.default_folder: Callable[[], str | None] = lambda: None
        self.panel.startRequested.connect(self.choose_and_start)
        self.panel.cancelRequested.connect(self.cancel)
        self.panel.resumeRequested.connect(self.resume)
        self.panel.saveRequested.connect(self.choose_and_save)
        self.panel.openRequested.connect(self._open)

    # -- wiring into the main window ---------------------------------------------------------
    def attach(self, window: Host) -> None:
        """Add File > Batch Flag Folder..., Go > Next Flagged (N) and the Batch dock."""
        self.window = window
        self.runner = window.runner
        self._own_runner = False
        self.default_folder = lambda: window.current_root
        self.open_image = window.open_in_viewer
        self.dock = window.add_dock("dock-batch", "Batch", self.panel, DockArea.BOTTOM,
                                    tab_with=LOG_DOCK, hidden=True)
        self.act_batch = QAction("&Batch Flag Folder...", window)
        self.act_batch.setShortcut(QKeySequence("Ctrl+B"))
        self.act_batch.triggered.connect(self.choose_and_start)
        self.act_next = QAction("Next &Flagged (batch)", window)
        self.act_next.setShortcut(QKeySequence("N"))
        self.act_next.triggered.connect(self.panel.next_flagged)
        self.act_resume = QAction("&Resume Batch Report...", window)
        self.act_resume.setStatusTip("Continue a batch run that was cancelled or interrupted")
        self.act_resume.triggered.connect(self.choose_and_resume)
        window.add_menu_action(MenuSlot.FILE_OPEN, self.act_batch)
        window.add_menu_action(MenuSlot.FILE_OPEN, self.act_resume)
        window.add_menu_action(MenuSlot.GO_RESULTS, self.act_next)
        window.folderOpened.connect(self.offer_resume)

    def _show_dock(self) -> None:
        """Show and raise the Batch dock, tall enough for a dozen result rows (the bottom
        area is sized for the short Log)."""
        if self.window is not None:
            self.window.show_dock(self.dock, BATCH_DOCK_FRACTION)

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

    @property
    def last_run_resumable(self) -> bool:
        """This session's last run stopped early (cancelled or failed); its report is there."""
        return (not self.running and self.info is not None and bool(self.report_path)
                and os.path.exists(str(self.report_path))
                and (self.summary is None or not self.summary.finished))

    @property
    def resumable(self) -> bool:
        """Resume has something to continue: the last run, or an earlier session's report."""
        return self.last_run_resumable or (not self.running and self.pending is not None)

    def resume(self) -> Job | None:
        """Continue the last run's report where it stopped (``flag --resume``), else the
        earlier session's report found for the open folder (:meth:`offer_resume`)."""
        if self.last_run_resumable:
            assert self.info is not None
            return self.start(self.info.folder, resume=str(self.report_path))
        if self.pending is not None and not self.running:
            return self.resume_report(self.pending)
        return None

    # -- reports an earlier session left -----------------------------------------------------
    def unfinished(self) -> tuple[list[UnfinishedReport], list[SkippedReport]]:
        """The resumable reports in the reports folder, newest first (not the one this
        controller is writing), and those passed over with the reason."""
        found, skipped = unfinished_reports()
        mine = self.report_path if self.running else None
        return [r for r in found if r.path != mine], skipped

    def offer_resume(self, folder: str | None) -> UnfinishedReport | None:
        """When ``folder`` (just opened) has an unfinished report, enable Resume for it."""
        if self.running or not folder:
            return None
        entry = unfinished_for_folder(folder, self.unfinished()[0])
        self.pending = entry
        self.panel.resume_button.setToolTip(self._resume_tip)
        if entry is not None and not self.last_run_resumable:
            self.panel.resume_button.setToolTip(
                f"Continue {display_path(os.path.basename(entry.path))}: {_stopped(entry)}")
            self._say(f"This folder has an unfinished batch report ({_stopped(entry)}); "
                      "Resume in the Batch panel or File > Resume Batch Report... continues it.")
        self.panel.set_running(False, self.resumable)
        return entry

    def choose_and_resume(self) -> Job | None:
        """File > Resume Batch Report...: choose an unfinished report and continue it."""
        if self.running:
            self._say("A batch is already running; cancel it first.")
            return None
        found, skipped = self.unfinished()
        for passed in skipped:  # the chooser's note points here
            self._say(f"Cannot resume {display_path(os.path.basename(passed.path))}: "
                      f"{display_path(passed.reason)}")
        if not found:
            self._say(f"No unfinished batch reports in {display_path(str(reports_dir()))}.")
            return None
        from pneumoview.qt.batch.resumedialog import ResumeDialog

        dialog = ResumeDialog(found, len(skipped), self.window or self.panel)  # type: ignore[arg-type]
        chosen = dialog.chosen() if dialog.exec() == ResumeDialog.DialogCode.Accepted else None
        dialog.deleteLater()
        return self.resume_report(chosen) if chosen is not None else None

    def resume_report(self, entry: UnfinishedReport) -> Job | None:
        """Continue ``entry`` through :meth:`start` (the core decides whether it may)."""
        name = display_path(os.path.basename(entry.path))
        if not os.path.exists(entry.path):
            self._say(f"Cannot resume {name}: the report is no longer in the reports folder.",
                      error=True)
            return None
        if not entry.folder_exists:
            self._say(f"Cannot resume {name}: the folder it flagged, "
                      f"{display_path(entry.folder)}, is no longer there (reconnect or restore "
                      "it, then resume again).", error=True)
            return None
        return self.start(entry.folder, resume=entry.path)

    def start(self, folder: str, *, workers: int | None = None, batch_size: int = 32,
              out_dir: str | None = None, resume: str | None = None) -> Job | None:
        """Start flagging ``folder`` in the background (one batch at a time); ``resume``: a
        report of an earlier run of ``folder`` to continue."""
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
        panel.resume_button.setToolTip(self._resume_tip)
        panel.set_running(True)
        self.summary, self.report_path, self.info = None, None, None
        self.pending, self._resuming = None, resume
        choice = self.state.choice
        job = Job(gui_batch, os.path.abspath(folder), name="batch", model_dir=choice.model_dir,
                  device=choice.device, engine_name=choice.engine, precision=choice.precision,
                  thresholds=self.state.thresholds.snapshot(),
                  workers=workers, batch_size=batch_size, out_dir=out_dir,
                  max_image_mib=runoptions.resolve(None, self.settings).max_image_mib,
                  profiles=dict(getattr(self.settings, "site_profiles", None) or {}),
                  resume=resume)
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
            self.state.add_batch_rows(rows)  # the study tree's AI column shows them

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
        what = "Cannot resume the batch report" if self._resuming and isinstance(
            exc, ReportError) else "Batch failed"
        message = f"{what}: {exc}{advice(exc)}"
        self.panel.progress_label.setText(display_path(message))
        self._say(message, error=True)

    def _on_finished(self, job: Job) -> None:
        if job is not self.job:
            return
        self.job = None
        self.panel.set_running(False, self.resumable)
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
            self._say(f"{exc}{advice(exc)}", error=True)
            return False
        self._say(f"Report saved to {dest}")
        return True

    # -- messages and shutdown ---------------------------------------------------------------
    def _say(self, message: str, error: bool = False) -> None:
        w = self.window
        if w is not None and error:
            w.report_error(message)
        elif w is not None:
            w.report(message)
        else:
            (log.warning if error else log.info)("%s", message)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel a running batch and wait for it (the main window's runner does this too)."""
        if self.job is not None:
            self.job.cancel()
        if self._own_runner:
            self.runner.shutdown(timeout)


def _stopped(entry: UnfinishedReport) -> str:
    import time

    how = "cancelled" if entry.state is RunState.CANCELLED else "interrupted"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.when))
    return f"{how} {when}, {entry.rows} of {entry.files} rows done, {entry.model}"


def _final_progress(summary: Any) -> Any:
    from pneumoview.core.batch import BatchProgress

    c = summary.counts
    return BatchProgress(summary.done, summary.total, c.get("scored", 0), summary.flagged,
                         c.get("not_scored", 0), c.get("skipped", 0), c.get("error", 0),
                         summary.elapsed_s, summary.rate, 0.0 if summary.finished else None,
                         "finished" if summary.finished else "cancelled")
