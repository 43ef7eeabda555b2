"""Wires the AI into the viewer: worker, panel, CAM overlay, tree column, menus, status bar.

The controller listens to the main window's ``currentInstanceChanged`` / ``imageShown`` /
``imageFailed`` signals, asks the :class:`InferenceWorker` for a result for the image on screen,
and shows only results whose (path, frame) is still the one on screen. Results are cached per
(path, frame, forced), so going back to an image, or moving the threshold, never re-runs the
model. The worker's pending work is registered with the window's ``runner`` so ``--screenshot``
waits for the probability and the CAM.

Nothing here imports torch: the worker thread does, after :meth:`start`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QLabel,
    QScrollArea,
)

from pneumoview.core.aistate import AIState, resolve_choice
from pneumoview.qt.ai.cam import CamOverlay
from pneumoview.qt.ai.panel import AIPanel
from pneumoview.qt.ai.treecolumn import AITreeColumn
from pneumoview.qt.ai.worker import AIResult, CamResult, InferenceWorker
from pneumoview.qt.host import DETAILS_DOCK, DockArea, Host, MenuSlot
from pneumoview.qt.plaintext import make_plain, tip
from pneumoview.qt.radiographview import AI_LAYER_Z

log = logging.getLogger("pneumoview.ai")

START_DELAY_MS = 500


class AIController(QObject):
    """Owns the viewer's AI pieces. Use :meth:`attach` for a MainWindow, or drive it directly.

    The model choice, thresholds and results live in ``self.state`` (:class:`AIState`), which
    the window shares with its batch controller.
    """

    def __init__(self, settings: Any = None, model_dir: str | None = None,
                 device: str | None = None, parent: QObject | None = None, *,
                 state: AIState | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.state = state or AIState(settings, resolve_choice(model_dir, device, settings))
        self.panel = AIPanel()
        self.overlay = CamOverlay(getattr(settings, "cam_opacity", 60) / 100.0)
        self.panel.opacity.setValue(int(round(self.overlay.opacity * 100)))
        choice = self.state.choice
        self.worker = InferenceWorker(choice.model_dir, choice.device, self,
                                      engine=choice.engine, precision=choice.precision)
        self.error = ""
        self.current: tuple[str, int] | None = None
        self.current_decoded: Any = None
        self.inflight: set[tuple[str, int, bool]] = set()
        self.cam_wanted: bool | None = None  # the user's choice for the current image
        self.results = self.state.results
        self.window: Host | None = None
        self.view: Any = None
        self.tree: Any = None
        self.tree_column: AITreeColumn | None = None
        self.runner: Any = None
        self.status_label = make_plain(QLabel("AI: not started"))  # shows the model's name
        self._token: int | None = None
        self._start_armed = False
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(400)
        self._save_timer.timeout.connect(self._save_settings)

        self.worker.modelLoading.connect(self._on_loading)
        self.worker.modelReady.connect(self._on_ready)
        self.worker.modelFailed.connect(self._on_failed)
        self.worker.predicted.connect(self._on_predicted)
        self.worker.camReady.connect(self._on_cam)
        self.worker.busyChanged.connect(self._on_busy)
        self.panel.thresholdChanged.connect(self.set_threshold)
        self.panel.thresholdReset.connect(self.reset_threshold)
        self.panel.scoreAnywayRequested.connect(self.score_anyway)
        self.panel.camToggled.connect(self.set_cam_visible)
        self.panel.camOpacityChanged.connect(self._on_opacity)

    @property
    def info(self) -> Any:
        """The loaded model's :class:`ModelInfo` (``None`` until one has loaded)."""
        return self.state.info

    @property
    def threshold(self) -> float:
        return self.state.threshold

    @property
    def forced(self) -> set[tuple[str, int]]:
        return self.results.forced

    # -- wiring into the main window -------------------------------------------------------
    def attach(self, window: Host) -> None:
        """Dock the panel, stack the overlay, add menus, status text and signal hooks."""
        self.window = window
        self.view = window.view
        self.tree = window.tree
        self.runner = window.runner
        # scrolls rather than squeezing its labels over each other when the dock is short
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self.panel)
        self.dock = window.add_dock("ai", "AI", scroll, DockArea.RIGHT, tab_with=DETAILS_DOCK,
                                    raised=True)
        window.installEventFilter(self)
        self.view.add_layer(self.overlay.item, z=AI_LAYER_Z)
        self.tree_column = AITreeColumn(self.tree, self._best_for_path)
        self.state.batch_listeners.append(self._on_batch_paths)
        window.add_status_widget(self.status_label)
        window.currentInstanceChanged.connect(self.on_instance_changed)
        window.imageShown.connect(self.on_image_shown)
        window.imageFailed.connect(self.on_image_failed)
        window.folderOpened.connect(lambda _p: self._clear_results())
        moved = getattr(window, "activeViewportChanged", None)  # a window with viewports
        if moved is not None:
            moved.connect(lambda vp: self.follow_view(vp.view))

        self.act_cam = QAction("Show &CAM Overlay", window)
        self.act_cam.setShortcut("C")
        self.act_cam.setCheckable(True)
        self.act_cam.triggered.connect(lambda on: self.set_cam_visible(bool(on)))
        self.act_load_model = QAction("Load &Model...", window)
        self.act_load_model.triggered.connect(self.choose_model)
        self.act_bundled = QAction("Use &Bundled Model", window)
        self.act_bundled.triggered.connect(lambda: self.load_model(None))
        self.act_export = QAction("&Export Image...", window)
        self.act_export.setShortcut("Ctrl+E")
        self.act_export.triggered.connect(self.export_image)
        for act in (self.act_load_model, self.act_bundled, self.act_export):
            window.add_menu_action(MenuSlot.FILE_MODEL, act)
        window.add_menu_action(MenuSlot.VIEW_OVERLAYS, self.act_cam)

    def start(self) -> None:
        """Load the model in the background (call once the window is shown)."""
        self.worker.start()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        """Start loading the model shortly after the window is first shown.

        The delay lets the first window paint (and a --screenshot open its folder) before the
        worker thread starts importing torch; selecting an image starts it at once anyway.
        """
        if obj is self.window and event.type() == QEvent.Type.Show and not self._start_armed:
            self._start_armed = True
            QTimer.singleShot(START_DELAY_MS, self.start)
        return False

    def shutdown(self) -> None:
        """Stop the worker thread (joined); the window saves the settings afterwards."""
        self._save_timer.stop()
        self.worker.shutdown()
        self._on_busy(0)

    # -- pending work (for --screenshot and tests) -----------------------------------------
    def _on_busy(self, pending: int) -> None:
        if self.runner is None:
            return
        if pending > 0 and self._token is None:
            self._token = self.runner.begin("ai")
        elif pending == 0 and self._token is not None:
            self.runner.end(self._token)
            self._token = None

    def pending(self) -> int:
        return self.worker.pending()

    # -- model -----------------------------------------------------------------------------
    def choose_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Load Model (a folder exported "
                                                  "by training)")
        if folder:
            self.load_model(folder)

    def load_model(self, model_dir: str | None) -> None:
        """Switch models (the user's choice is remembered once the model has loaded)."""
        choice = self.state.choose(model_dir)
        self.worker.load_model(choice.model_dir, choice.device)

    def _on_loading(self, model_dir: str) -> None:
        self.status_label.setText("AI: loading model...")
        self.panel.show_model_loading()

    def _on_ready(self, info: Any, device: str) -> None:
        replaced = self.state.model_loaded(info)
        self.error = ""
        self.panel.set_model(info, device)
        if self.state.profile is not None:
            self.panel.show_profile(self.state.profile)
        self.panel.show_model_error("")
        self.status_label.setText(f"AI: {device} | {info.name} {info.version}")
        self.status_label.setToolTip(tip(info.label))
        self.panel.set_threshold(self.threshold)
        if replaced:  # another model's results must not stay on screen
            self._clear_results()
            self._request_current()
        elif self.current is not None:  # first model: answer an image that was refused
            rkey = self.results.key(self.current)
            if rkey not in self.results.predictions and rkey not in self.inflight:
                self._request_current()

    def _on_failed(self, message: str) -> None:
        self.error = message
        self.state.model_refused()
        if self.info is not None:  # a new model was refused: the loaded one stays in use
            self.panel.set_model(self.info, self.worker.device)
            self.panel.show_model_error(f"The model you chose was refused: {message}. Still "
                                        f"using {self.info.label}.")
            self.status_label.setText(f"AI: {self.worker.device} | {self.info.name} "
                                      f"{self.info.version} (new model refused)")
            self.status_label.setToolTip(tip(message))
        else:
            self.panel.set_model(None, error=f"AI unavailable: {message}")
            self.status_label.setText("AI unavailable")
            self.status_label.setToolTip(tip(message))
            if self.current is not None:
                self.panel.show_error(f"Not scored: AI unavailable ({message})")
        text = (f"Load Model refused: {message} (still using {self.info.label})"
                if self.info is not None else f"AI unavailable: {message}")
        self._report_error(text)

    def _report_error(self, message: str) -> None:
        """Errors go to the window's one sink (status bar and Log panel), else the log."""
        if self.window is not None:
            self.window.report_error(message)
        else:
            log.warning(message)

    # -- threshold -------------------------------------------------------------------------
    def set_threshold(self, value: float) -> None:
        """Relabel everything at ``value`` (no model run) and remember it for this model."""
        self.state.set_threshold(value)
        if self.panel.threshold != self.threshold:
            self.panel.set_threshold(self.threshold)
        if self.info is not None and hasattr(self.settings, "ai_thresholds"):
            self._save_timer.start()
        self._reshow_current()
        self._refresh_tree()

    def reset_threshold(self) -> None:
        """Back to the profile's or the model's threshold(s) (population points per image)."""
        if self.info is None:
            return
        self.state.reset_threshold()
        if hasattr(self.settings, "ai_thresholds"):
            self._save_timer.start()
        self.panel.set_threshold(self.state.threshold_for(self._current_path()))
        self._reshow_current()
        self._refresh_tree()

    def _reshow_current(self) -> None:
        """The image on screen read again (its operating point may have changed)."""
        if self.current is not None:
            cached = self.results.for_image(self.current)
            if cached is not None:
                self._show_result(cached, self.results.elapsed.get(self.results.key(
                    self.current)))

    def _current_path(self) -> str | None:
        return None if self.current is None else self.current[0]

    def _save_settings(self) -> None:
        if self.settings is None or self.window is None:
            return
        from pneumoview.core.settings import save_settings

        save_settings(self.settings)

    # -- images ----------------------------------------------------------------------------
    def follow_view(self, view: Any) -> None:
        """The map moves to the active viewport's view; the window then announces that
        viewport's image, whose cached result and map are shown (or computed)."""
        if view is self.view:
            return
        self.view.remove_layer(self.overlay.item)
        self.view = view
        view.add_layer(self.overlay.item, z=AI_LAYER_Z)
        self.current = None
        self.current_decoded = None
        self.overlay.clear()
        self.panel.clear("No image")

    def on_instance_changed(self, _instance: Any) -> None:
        """The reader moved on: hide the old image's result and map at once."""
        self.current = None
        self.current_decoded = None
        self.overlay.set_visible(False)
        self.panel.show_pending("Loading image...")

    def on_image_failed(self, path: str, _message: str) -> None:
        self.current = None
        self.current_decoded = None
        self.overlay.clear()
        self.panel.clear("No image")

    def on_image_shown(self, decoded: Any) -> None:
        """A new image (or frame) is on screen: show its cached result or ask the worker."""
        key = (decoded.path, decoded.frame)
        if key == self.current:
            self.current_decoded = decoded
            return
        self.current = key
        self.current_decoded = decoded
        self.state.note_header(decoded.path, decoded.header)
        self.cam_wanted = None
        if self.overlay.key != key:
            self.overlay.set_visible(False)
        rkey = self.results.key(key)
        cached = self.results.predictions.get(rkey)
        if cached is not None:
            self._show_result(cached, self.results.elapsed.get(rkey))
            cam = self.results.cams.get(key)
            if cam is not None:
                self._show_cam(key, cam)
            elif cached.scored:
                self._submit(decoded, rkey[2])  # the map was evicted: compute it again
            return
        self._submit(decoded, rkey[2])

    def _submit(self, decoded: Any, force: bool) -> None:
        if self.info is None and self.error and self.worker.started and not self.worker.pending():
            self.panel.show_error(f"Not scored: AI unavailable ({self.error})")
            return
        self.panel.show_pending("Loading model..." if self.info is None else "Scoring...")
        self.inflight = {(decoded.path, decoded.frame, force)}  # older queued ones are dropped
        self.worker.submit(decoded.path, decoded.frame, decoded, force=force)

    def _request_current(self) -> None:
        if self.current_decoded is not None:
            decoded = self.current_decoded
            self.current = None
            self.on_image_shown(decoded)

    def score_anyway(self) -> None:
        if self.current is None or self.current_decoded is None:
            return
        self.forced.add(self.current)
        decoded = self.current_decoded
        self.current = None
        self.on_image_shown(decoded)

    def _on_predicted(self, result: AIResult) -> None:
        pred = result.prediction
        self.inflight.discard((result.path, result.frame, result.force))
        if pred is not None:
            if self.info is not None and pred.model_id != self.info.model_id:
                return  # made by a model that has since been replaced
            self.results.put((result.path, result.frame, result.force), pred, result.elapsed_ms)
            self._update_tree_item(result.path)
        if result.key != self.current or result.force != (result.key in self.forced):
            return  # stale: the reader has moved on
        if pred is None:
            self.panel.show_error(f"Not scored: {result.error}")
            return
        self._show_result(pred, result.elapsed_ms)

    def _show_result(self, pred: Any, elapsed_ms: float | None) -> None:
        from pneumoview.core.oppoints import OVERRIDE_POINT, point_text

        shown = self.state.shown(pred)
        if shown.scored:  # the image's own operating point (population, profile, by hand)
            self.panel.set_threshold(shown.threshold)
        self.panel.show_operating_point(point_text(shown.operating_point)
                                        if shown.scored and shown.operating_point else "",
                                        by_hand=shown.operating_point == OVERRIDE_POINT)
        self.panel.show_prediction(shown, elapsed_ms)
        self.panel.set_cam_checked(self._cam_should_show())
        self._sync_cam_action()

    def _on_cam(self, result: CamResult) -> None:
        self.results.cams.put(result.key, result.cam)
        if result.key == self.current:
            self._show_cam(result.key, result.cam)
            self.panel.cam_status.setText(f"map computed in {result.cam_ms:.0f} ms")

    def _show_cam(self, key: tuple[str, int], cam: Any) -> None:
        self.overlay.set_cam(key, cam)
        self.overlay.set_visible(self._cam_should_show())
        self.panel.set_cam_checked(self._cam_should_show())
        self._sync_cam_action()

    # -- CAM visibility --------------------------------------------------------------------
    def current_prediction(self) -> Any:
        if self.current is None:
            return None
        return self.state.shown(self.results.for_image(self.current))

    def _cam_should_show(self) -> bool:
        """Flagged images show the map by default; others only when the user asks."""
        if self.cam_wanted is not None:
            return self.cam_wanted
        pred = self.current_prediction()
        return bool(pred is not None and pred.scored and pred.flagged)

    def set_cam_visible(self, on: bool) -> None:
        self.cam_wanted = bool(on)
        self.overlay.set_visible(on and self.overlay.key == self.current)
        self.panel.set_cam_checked(on)
        self._sync_cam_action()

    def toggle_cam(self) -> None:
        self.set_cam_visible(not self._cam_should_show())

    def _sync_cam_action(self) -> None:
        act = getattr(self, "act_cam", None)
        if act is not None:
            act.blockSignals(True)
            act.setChecked(self._cam_should_show())
            act.blockSignals(False)

    def _on_opacity(self, value: float) -> None:
        self.overlay.set_opacity(value)
        if self.settings is not None and hasattr(self.settings, "cam_opacity"):
            self.settings.cam_opacity = int(round(value * 100))
            self._save_timer.start()

    # -- study tree ------------------------------------------------------------------------
    def _clear_results(self) -> None:
        self.inflight.clear()
        self.results.clear()
        self.overlay.clear()
        self._refresh_tree()

    def _best_for_path(self, path: str) -> Any:
        """The result shown in the tree for a file: the viewer's (frame 0, forced result
        preferred), else a GUI batch run's."""
        pred = self.results.best_for_path(path)
        return self.state.shown(pred if pred is not None else self.state.batch_result(path))

    def _on_batch_paths(self, paths: list[str]) -> None:
        for path in paths:
            self._update_tree_item(path)

    def _update_tree_item(self, path: str) -> None:
        if self.tree_column is not None:
            self.tree_column.update_path(path)

    def _refresh_tree(self) -> None:
        if self.tree_column is not None:
            self.tree_column.refresh()

    # -- export ----------------------------------------------------------------------------
    def caption(self) -> list[str]:
        from pneumoview.qt.export_image import caption_lines

        status = self.error and f"AI unavailable ({self.error})"
        return caption_lines(self.current_prediction(), None,  # already read by the policy
                             self.info.label if self.info is not None else "",
                             cam_shown=self.overlay.visible, status=status)

    def export_image(self) -> None:
        """File > Export Image: the dialog here, the rendering and saving in the background
        (a full-resolution export of a large radiograph takes seconds)."""
        if self.view is None or self.current is None:
            return
        from pneumoview.qt.export_image import ask_export_options, export_job
        from pneumoview.qt.workers import Job

        stem = os.path.splitext(os.path.basename(self.current[0]))[0] or "image"
        choice = ask_export_options(self.window, self.view, f"{stem}_pneumoview.png")
        if choice is None:
            return
        out, include_patient, long_side = choice
        work = export_job(self.view, out, self.caption(), include_patient, long_side)
        job = Job(_export, work, name="export image")
        job.signals.result.connect(lambda path: self.window.report(f"Exported {path}"))
        job.signals.error.connect(lambda exc: self._report_error(
            f"Export Image failed: {getattr(exc, 'reason', exc)}"))
        self.runner.submit(job, lane="export")


def _export(work: Any) -> Any:
    """Run an export; a file that cannot be written is an expected error, not a bug."""
    from pneumoview.core.errors import PneumoViewError

    try:
        return work()
    except OSError as exc:
        raise PneumoViewError(str(exc)) from exc
