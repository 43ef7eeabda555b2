"""The worklist feature: registered with the main window through the host protocol.

* the **Worklist** dock (tabbed with Studies): the last GUI batch's results, or a report opened
  with **File > Open Report...** (a report made by ``pneumoview flag`` elsewhere: its paths are
  resolved against a folder the reader chooses), one row per study in triage order;
* **reviews**: the panel's keys and buttons record Agree / Disagree (what is right) / Uncertain
  with an optional note in the review store (:mod:`pneumoview.core.review.store`), then open
  the next unreviewed study; the running sensitivity and PPV of the reviews are shown;
* **Tools > Calibrate from Reviews...** (the reviewed cases with their logits ->
  :class:`~pneumoview.qt.worklist.calibration.CalibrationDialog`), **Tools > Export
  Reviews...** (the labelled CSV) and **File > Use Site Profile...** (remembered per model in
  the settings; the next GUI batch uses it).

Reviews are bound to the report rows' ``model_id``: the model that produced what the reader
judged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog

from pneumoview.core import worklist as wl
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.review import store as rs
from pneumoview.core.sitefit import Cases
from pneumoview.qt.advice import advice
from pneumoview.qt.host import STUDIES_DOCK, DockArea, Host, MenuSlot
from pneumoview.qt.worklist.panel import WorklistPanel


class WorklistController(QObject):
    """See the module docstring."""

    reviewed = Signal(object)  # the Review stored

    def __init__(self, settings: Any = None, parent: QObject | None = None, *,
                 store_path: str | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.store_path = store_path
        self.panel = WorklistPanel()
        self.window: Host | None = None
        self.rows: list[dict[str, Any]] = []
        self.entries: list[wl.Entry] = []
        self.model_id = ""
        self.model_sha256 = ""
        self.ai_state: Any = None  # the window's AIState: a report's rows fill the study tree
        self.panel.openRequested.connect(self._open)
        self.panel.reviewRequested.connect(self.review)

    # -- wiring ------------------------------------------------------------------------------
    def attach(self, window: Host, batch: Any = None) -> None:
        self.window = window
        self.dock = window.add_dock("dock-worklist", "Worklist", self.panel, DockArea.LEFT,
                                    tab_with=STUDIES_DOCK, hidden=True)
        self.act_open_report = QAction("Open &Report...", window)
        self.act_open_report.triggered.connect(self.choose_report)
        self.act_profile = QAction("Use Site &Profile...", window)
        self.act_profile.triggered.connect(self.choose_profile)
        self.act_calibrate = QAction("&Calibrate from Reviews...", window)
        self.act_calibrate.triggered.connect(self.open_calibration)
        self.act_export = QAction("&Export Reviews...", window)
        self.act_export.triggered.connect(self.choose_export)
        window.add_menu_action(MenuSlot.FILE_OPEN, self.act_open_report)
        window.add_menu_action(MenuSlot.FILE_MODEL, self.act_profile)
        window.add_menu_action(MenuSlot.TOOLS, self.act_calibrate)
        window.add_menu_action(MenuSlot.TOOLS, self.act_export)
        if batch is not None:
            batch.finished.connect(self._batch_finished)
            self.ai_state = getattr(batch, "state", None)

    def _say(self, message: str, error: bool = False) -> None:
        if self.window is not None:
            (self.window.report_error if error else self.window.report)(message)

    def _batch_finished(self, summary: Any) -> None:
        if summary is not None and getattr(summary, "output", None):
            self.load_report(summary.output)

    # -- content -----------------------------------------------------------------------------
    def load_report(self, path: str, folder: str | None = None) -> bool:
        """Fill the worklist from a report (``folder``: resolve its rows' paths there)."""
        from pneumoview.core import report as rep

        try:
            rows = [rep.parse_row(r) for r in rep.read_report(path)]
        except PneumoViewError as exc:
            self._say(f"Cannot open the report: {exc}{advice(exc)}", error=True)
            return False
        if folder:
            rows = wl.resolve_rows(rows, folder)
        self.set_rows(rows, source=f"Report {os.path.basename(path)}"
                      + (f", files in {folder}" if folder else ""))
        if self.ai_state is not None:
            self.ai_state.add_batch_rows(rows)
        return True

    def set_rows(self, rows: Sequence[dict[str, Any]], source: str = "") -> None:
        ids = {r.get("model_id") for r in rows if r.get("status") == "scored"
               and r.get("model_id")}
        self.rows = list(rows)
        self.model_id = next(iter(ids)) if len(ids) == 1 else ""
        self.model_sha256 = next((str(r.get("model_sha256")) for r in rows
                                  if r.get("model_sha256")), "")
        if len(ids) > 1:
            self._say("The report mixes models: reviews are not recorded for it.", error=True)
        self.entries = wl.build(self.rows, self._reviews())
        self.panel.set_entries(self.entries)
        self.panel.set_source(source)
        self._update_figures()
        if self.window is not None and hasattr(self, "dock"):
            self.window.show_dock(self.dock)

    def _store(self, readonly: bool = False) -> rs.ReviewStore:
        return rs.ReviewStore(self.store_path, readonly=readonly)

    def _reviews(self) -> dict[str, rs.Review]:
        if not self.model_id:
            return {}
        try:
            with self._store(readonly=True) as store:
                return store.current(self.model_id)
        except PneumoViewError:
            return {}  # nothing reviewed yet

    def _update_figures(self, reviews: dict[str, rs.Review] | None = None) -> None:
        reviews = self._reviews() if reviews is None else reviews
        keys = {wl.row_image_key(r) for r in self.rows if r.get("sop_instance_uid")
                or r.get("path")}
        figures = rs.running_figures(r for k, r in reviews.items() if k in keys)
        self.panel.set_figures(figures.text())

    # -- actions -----------------------------------------------------------------------------
    def _open(self, entry: wl.Entry) -> None:
        if self.window is not None and entry.path:
            self.window.open_in_viewer(entry.path)

    def review(self, entry: wl.Entry, decision: rs.Decision, truth: rs.Truth | None,
               note: str = "") -> rs.Review | None:
        """Store one decision on the entry's shown (highest-scoring) image, then move on."""
        if not self.model_id:
            self._say("No single model behind these results: the review was not recorded.",
                      error=True)
            return None
        best = entry.best
        frame = best.get("frame")
        image = rs.ImageRef(
            model_id=self.model_id, model_sha256=self.model_sha256,
            sop_instance_uid=str(best.get("sop_instance_uid") or ""),
            frame=int(frame) if isinstance(frame, int) else 0,
            study_instance_uid=str(best.get("study_instance_uid") or ""),
            relpath=str(best.get("relpath") or ""), path=str(best.get("path") or ""),
            ai_flagged=best.get("flagged") if best.get("status") == "scored" else None,
            probability=best.get("probability"), threshold=best.get("threshold"),
            operating_point=str(best.get("operating_point") or ""))
        reader = str(getattr(self.settings, "reviewer", "") or "")
        try:
            with self._store() as store:
                saved = store.add(image, decision, truth=truth, note=note, reader=reader)
                reviews = store.current(self.model_id)
        except PneumoViewError as exc:
            self._say(f"The review was not saved: {exc}", error=True)
            return None
        self.entries = wl.with_reviews(self.entries, reviews)
        self.panel.set_entries(self.entries, keep_key=entry.key)
        self._update_figures(reviews)
        self.panel.advance(entry.key)
        self.reviewed.emit(saved)
        return saved

    def choose_report(self) -> None:
        parent = self.window if self.window is not None else self.panel
        path, _ = QFileDialog.getOpenFileName(parent, "Open Report", "", "Reports (*.csv)")
        if not path:
            return
        folder = QFileDialog.getExistingDirectory(
            parent, "Folder the report's files are in (Cancel: use the paths as written)",
            getattr(self.window, "current_root", None) or "")
        self.load_report(path, folder or None)

    def review_cases(self) -> Cases:
        """The reviewed images of the current results with a label, as calibration cases."""
        reviews = self._reviews()
        ys, zs, gs = [], [], []
        for r in self.rows:
            if r.get("status") != "scored" or r.get("logit") is None:
                continue
            review = reviews.get(wl.row_image_key(r))
            if review is None or review.label is None:
                continue
            ys.append(review.label)
            zs.append(float(r["logit"]))
            gs.append(str(r.get("patient_id") or r.get("relpath")))
        return Cases(np.asarray(ys, dtype=np.int64), np.asarray(zs, dtype=np.float64),
                     np.asarray(gs) if gs else None, model_ids={self.model_id})

    def open_calibration(self) -> Any:
        from pneumoview.qt.worklist.calibration import CalibrationDialog

        if not self.model_id:
            self._say("Open batch results (a report with logits) and review some studies "
                      "first.", error=True)
            return None
        info = _model_for(self.model_id, self.settings)
        temperature = info.temperature if info is not None else 1.0
        label = info.label if info is not None else next(
            (str(r.get("model_label")) for r in self.rows if r.get("model_label")), "")
        dlg = CalibrationDialog(self.review_cases(), model_id=self.model_id,
                                model_sha256=self.model_sha256, model_label=label,
                                model_temperature=temperature, submit=self._submit,
                                parent=self.window)
        dlg.saved.connect(lambda p: self.use_profile(p.path))
        dlg.show()
        return dlg

    def _submit(self, fn: Any, done: Any, failed: Any) -> None:
        from pneumoview.qt.workers import Job

        job = Job(fn, name="calibrate")
        job.signals.result.connect(done)
        job.signals.error.connect(failed)
        if self.window is not None:
            self.window.runner.submit(job, lane="calibrate")
        else:
            try:
                done(fn())
            except PneumoViewError as exc:
                failed(exc)

    def choose_profile(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Use Site Profile", "",
                                              "Site profiles (*.json)")
        if path:
            self.use_profile(path)

    def use_profile(self, path: str) -> bool:
        """Make ``path`` the active profile of its model (remembered in the settings)."""
        from pneumoview.core.siteprofile import load_profile

        try:
            profile = load_profile(path)
        except PneumoViewError as exc:
            self._say(f"Not a usable site profile: {exc}", error=True)
            return False
        if self.settings is not None:
            profiles = dict(getattr(self.settings, "site_profiles", {}) or {})
            profiles[profile.model_id] = os.path.abspath(path)
            self.settings.site_profiles = profiles
            from pneumoview.core.settings import save_settings

            save_settings(self.settings)
        self._say(f"Using {profile.summary()} for model_id {profile.model_id[:17]}...")
        return True

    def choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Export Reviews", "reviews.csv",
                                              "CSV (*.csv)")
        if path:
            self.export(path)

    def export(self, path: str) -> int:
        try:
            n = rs.write_export(path, self._reviews().values())
        except (PneumoViewError, OSError) as exc:
            self._say(f"Reviews not exported: {exc}", error=True)
            return 0
        self._say(f"Exported {n} labelled reviews to {path}")
        return n


def _model_for(model_id: str, settings: Any) -> Any:
    """The ModelInfo of ``model_id`` when it is the bundled or the configured model."""
    from pneumoview.core.modelinfo import read_model_info

    for folder in (getattr(settings, "ai_model_dir", "") or None, None):
        try:
            info = read_model_info(folder)
        except PneumoViewError:
            continue
        if info.model_id == model_id:
            return info
    return None
