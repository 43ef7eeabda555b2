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
from collections import OrderedDict
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QAction, QBrush, QColor
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMenu,
    QScrollArea,
)

from pneumoview.qt.aipanel import FLAGGED_COLOUR, NOT_FLAGGED_COLOUR, AIPanel
from pneumoview.qt.camoverlay import CamOverlay
from pneumoview.qt.inference_worker import AIResult, CamResult, InferenceWorker
from pneumoview.qt.plaintext import make_plain, tip

log = logging.getLogger("pneumoview.ai")

CAM_CACHE = 4
START_DELAY_MS = 500
RESULT_CACHE = 10000


def _menu(window: QMainWindow, title: str) -> QMenu | None:
    for action in window.menuBar().actions():
        if action.menu() is not None and action.text().replace("&", "") == title:
            return action.menu()
    return None


class AIController(QObject):
    """Owns the viewer's AI pieces. Use :meth:`attach` for a MainWindow, or drive it directly."""

    def __init__(self, settings: Any = None, model_dir: str | None = None,
                 device: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        chosen_dir = model_dir or (getattr(settings, "ai_model_dir", "") or None)
        self.device_preference = device or getattr(settings, "ai_device", "") or "auto"
        self.panel = AIPanel()
        self.overlay = CamOverlay(getattr(settings, "cam_opacity", 60) / 100.0)
        self.panel.opacity.setValue(int(round(self.overlay.opacity * 100)))
        self.worker = InferenceWorker(chosen_dir, self.device_preference, self)
        self.info: Any = None
        self.error = ""
        self.threshold = 0.5
        self.current: tuple[str, int] | None = None
        self.current_decoded: Any = None
        self.forced: set[tuple[str, int]] = set()
        self.inflight: set[tuple[str, int, bool]] = set()
        self.cam_wanted: bool | None = None  # the user's choice for the current image
        self.results: OrderedDict[tuple[str, int, bool], Any] = OrderedDict()
        self.elapsed: dict[tuple[str, int, bool], float] = {}
        self.cams: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self.window: QMainWindow | None = None
        self.view: Any = None
        self.tree: Any = None
        self.runner: Any = None
        self.status_label = make_plain(QLabel("AI: not started"))  # shows the model's name
        self._token: int | None = None
        self._start_armed = False
        self._chosen_dir: str | None = None
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

    # -- wiring into the main window -------------------------------------------------------
    def attach(self, window: QMainWindow) -> None:
        """Dock the panel, stack the overlay, add menus, status text and signal hooks."""
        self.window = window
        self.view = getattr(window, "view", None)
        self.tree = getattr(window, "tree", None)
        self.runner = getattr(window, "runner", None)
        dock = QDockWidget("AI", window)
        dock.setObjectName("ai")
        # scrolls rather than squeezing its labels over each other when the dock is short
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self.panel)
        dock.setWidget(scroll)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        details = getattr(window, "details_dock", None)
        if details is not None:
            window.tabifyDockWidget(details, dock)
            dock.raise_()
        self.dock = dock
        window.installEventFilter(self)
        if self.view is not None:
            self.view.add_layer(self.overlay.item, z=10.0)
        if self.tree is not None:
            from pneumoview.qt.studytree import AI_COLUMN

            # the AI column right after the name, so it is seen without scrolling sideways
            # (the tree sizes it to its text as results arrive)
            header = self.tree.header()
            header.moveSection(header.visualIndex(AI_COLUMN), 1)
        window.statusBar().addPermanentWidget(self.status_label)
        window.currentInstanceChanged.connect(self.on_instance_changed)
        window.imageShown.connect(self.on_image_shown)
        window.imageFailed.connect(self.on_image_failed)
        window.folderOpened.connect(lambda _p: self._clear_results())

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
        file_menu = _menu(window, "File")
        if file_menu is not None:
            first = file_menu.actions()[-1] if file_menu.actions() else None
            for act in (self.act_load_model, self.act_bundled, self.act_export):
                file_menu.insertAction(first, act)
            file_menu.insertSeparator(first)
        view_menu = _menu(window, "View")
        if view_menu is not None:
            view_menu.addSeparator()
            view_menu.addAction(self.act_cam)
        for act in (self.act_cam, self.act_load_model, self.act_export):
            window.addAction(act)

    def start(self) -> None:
        """Load the model in the background (call once the window is shown)."""
        self.worker.start()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
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
        self._chosen_dir = model_dir or ""
        self.worker.load_model(model_dir, self.device_preference)

    def _on_loading(self, model_dir: str) -> None:
        self.status_label.setText("AI: loading model...")
        self.panel.show_model_loading()

    def _on_ready(self, info: Any, device: str) -> None:
        replaced = self.info is not None and self.info.model_id != info.model_id
        self.info, self.error = info, ""
        if self._chosen_dir is not None and hasattr(self.settings, "ai_model_dir"):
            self.settings.ai_model_dir = self._chosen_dir  # File > Load Model... is remembered
            self._chosen_dir = None
        self.panel.set_model(info, device)
        self.panel.show_model_error("")
        self.status_label.setText(f"AI: {device} | {info.name} {info.version}")
        self.status_label.setToolTip(tip(info.label))
        self.threshold = self._saved_threshold(info)
        self.panel.set_threshold(self.threshold)
        if replaced:  # another model's results must not stay on screen
            self._clear_results()
            self._request_current()
        elif self.current is not None:  # first model: answer an image that was refused
            rkey = (*self.current, self.current in self.forced)
            if rkey not in self.results and rkey not in self.inflight:
                self._request_current()

    def _on_failed(self, message: str) -> None:
        self.error = message
        self._chosen_dir = None
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
        if self.window is not None and hasattr(self.window, "report_error"):
            self.window.report_error(message)
        else:
            log.warning(message)

    # -- threshold -------------------------------------------------------------------------
    def _saved_threshold(self, info: Any) -> float:
        saved = getattr(self.settings, "ai_thresholds", {}) or {}
        value = saved.get(info.model_id)
        try:
            value = float(value)
        except (TypeError, ValueError):
            return float(info.threshold)
        return value if 0.0 <= value <= 1.0 else float(info.threshold)

    def set_threshold(self, value: float) -> None:
        """Relabel everything at ``value`` (no model run) and remember it for this model."""
        self.threshold = float(value)
        if self.panel.threshold != self.threshold:
            self.panel.set_threshold(self.threshold)
        if self.info is not None and self.settings is not None \
                and hasattr(self.settings, "ai_thresholds"):
            if abs(self.threshold - float(self.info.threshold)) < 1e-12:
                self.settings.ai_thresholds.pop(self.info.model_id, None)
            else:
                self.settings.ai_thresholds[self.info.model_id] = self.threshold
            self._save_timer.start()
        self._refresh_tree()

    def reset_threshold(self) -> None:
        if self.info is not None:
            self.set_threshold(float(self.info.threshold))

    def _save_settings(self) -> None:
        if self.settings is None or self.window is None:
            return
        from pneumoview.core.settings import save_settings

        save_settings(self.settings)

    # -- images ----------------------------------------------------------------------------
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
        self.cam_wanted = None
        if self.overlay.key != key:
            self.overlay.set_visible(False)
        forced = key in self.forced
        cached = self.results.get((*key, forced))
        if cached is not None:
            self._show_result(cached, self.elapsed.get((*key, forced)))
            cam = self.cams.get(key)
            if cam is not None:
                self._show_cam(key, cam)
            elif cached.scored:
                self._submit(decoded, forced)  # the map was evicted: compute it again
            return
        self._submit(decoded, forced)

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
            rkey = (result.path, result.frame, result.force)
            self.results[rkey] = pred
            self.results.move_to_end(rkey)
            self.elapsed[rkey] = result.elapsed_ms
            while len(self.results) > RESULT_CACHE:
                old, _ = self.results.popitem(last=False)
                self.elapsed.pop(old, None)
            self._update_tree_item(result.path)
        if result.key != self.current or result.force != (result.key in self.forced):
            return  # stale: the reader has moved on
        if pred is None:
            self.panel.show_error(f"Not scored: {result.error}")
            return
        self._show_result(pred, result.elapsed_ms)

    def _show_result(self, pred: Any, elapsed_ms: float | None) -> None:
        self.panel.show_prediction(pred.with_threshold(self.threshold)
                                   if pred.scored else pred, elapsed_ms)
        self.panel.set_cam_checked(self._cam_should_show())
        self._sync_cam_action()

    def _on_cam(self, result: CamResult) -> None:
        self.cams[result.key] = result.cam
        self.cams.move_to_end(result.key)
        while len(self.cams) > CAM_CACHE:
            self.cams.popitem(last=False)
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
        pred = self.results.get((*self.current, self.current in self.forced))
        if pred is not None and pred.scored:
            pred = pred.with_threshold(self.threshold)
        return pred

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
        self.elapsed.clear()
        self.cams.clear()
        self.forced.clear()
        self.overlay.clear()
        self._refresh_tree()

    def _best_for_path(self, path: str) -> Any:
        """The result shown in the tree for a file: frame 0, forced result preferred."""
        for force in (True, False):
            pred = self.results.get((path, 0, force))
            if pred is not None:
                return pred.with_threshold(self.threshold) if pred.scored else pred
        return None

    def _update_tree_item(self, path: str) -> None:
        if self.tree is None:
            return
        from pneumoview.qt.studytree import AI_COLUMN

        item = self.tree.instance_item(path)
        if item is None:
            return
        pred = self._best_for_path(path)
        if pred is None:
            item.setText(AI_COLUMN, "")
            item.setToolTip(AI_COLUMN, "")
        elif pred.scored:
            item.setText(AI_COLUMN, f"{pred.probability * 100:.0f} %"
                         + (" flagged" if pred.flagged else ""))
            item.setForeground(AI_COLUMN, QBrush(QColor(
                FLAGGED_COLOUR if pred.flagged else NOT_FLAGGED_COLOUR)))
            item.setToolTip(AI_COLUMN, tip(f"{pred.state_text}; {pred.model_label}"))
        else:
            item.setText(AI_COLUMN, "not scored")
            item.setForeground(AI_COLUMN, QBrush(QColor("#757575")))
            item.setToolTip(AI_COLUMN, tip(pred.state_text))
        self._update_study(item)

    def _update_study(self, instance_item: Any) -> None:
        from pneumoview.qt.studytree import AI_COLUMN, INSTANCE_ROLE, NAME

        series = instance_item.parent()
        study = series.parent() if series is not None else None
        if study is None:
            return
        best = None
        for s in range(study.childCount()):
            ser = study.child(s)
            for i in range(ser.childCount()):
                inst = ser.child(i).data(NAME, INSTANCE_ROLE)
                pred = self._best_for_path(inst.path) if inst is not None else None
                if pred is not None and pred.scored and (best is None
                                                         or pred.probability > best.probability):
                    best = pred
        if best is None:
            study.setText(AI_COLUMN, "")
            return
        study.setText(AI_COLUMN, f"max {best.probability * 100:.0f} %"
                      + (" flagged" if best.flagged else ""))
        study.setForeground(AI_COLUMN, QBrush(QColor(
            FLAGGED_COLOUR if best.flagged else NOT_FLAGGED_COLOUR)))
        study.setToolTip(AI_COLUMN, "Study state: the highest probability of its scored images")

    def _refresh_tree(self) -> None:
        if self.tree is None:
            return
        for item in list(self.tree.iter_instance_items()):
            from pneumoview.qt.studytree import INSTANCE_ROLE, NAME

            inst = item.data(NAME, INSTANCE_ROLE)
            if inst is not None:
                self._update_tree_item(inst.path)

    # -- export ----------------------------------------------------------------------------
    def caption(self) -> list[str]:
        from pneumoview.qt.export_image import caption_lines

        status = self.error and f"AI unavailable ({self.error})"
        return caption_lines(self.current_prediction(), self.threshold,
                             self.info.label if self.info is not None else "",
                             cam_shown=self.overlay.visible, status=status)

    def export_image(self) -> None:
        if self.view is None or self.current is None:
            return
        from pneumoview.qt.export_image import ask_and_export

        stem = os.path.splitext(os.path.basename(self.current[0]))[0] or "image"
        try:
            out = ask_and_export(self.window, self.view, self.caption(),
                                 f"{stem}_pneumoview.png")
        except OSError as exc:
            self._report_error(f"Export Image failed: {exc}")
            return
        if out is not None and self.window is not None and hasattr(self.window, "report"):
            self.window.report(f"Exported {out}")
