"""Wires the AI into the viewer: worker, panel, CAM overlay, tree column, menus, status bar.

:class:`AIController` is the façade; each job is a piece of its own:

* :class:`~pneumoview.qt.ai.lifecycle.ModelLifecycle` — the worker started, Load Model,
  loading / ready / refused, the status bar's text, pending work for the runner;
* :class:`~pneumoview.qt.ai.onscreen.OnScreenFollower` — the view and image on screen, the
  requests to the :class:`InferenceWorker`, which answers are shown;
* :class:`~pneumoview.qt.ai.thresholds.ThresholdControl` — the panel's threshold set / reset;
* :class:`~pneumoview.qt.ai.camtoggle.CamToggle` — the CAM overlay's visibility and opacity;
* :class:`~pneumoview.qt.ai.treecolumn.AITreeColumn` — the study tree's AI column;
* :class:`~pneumoview.qt.ai.export.ImageExport` — File > Export Image and its caption.

The model choice, thresholds and results live in :class:`~pneumoview.core.aistate.AIState`.
Nothing here imports torch: the worker thread does, after :meth:`AIController.start`.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QFrame, QScrollArea

from pneumoview.core.aistate import AIState, resolve_choice
from pneumoview.qt.ai.cam import CamOverlay
from pneumoview.qt.ai.camtoggle import CamToggle
from pneumoview.qt.ai.export import ImageExport
from pneumoview.qt.ai.lifecycle import ModelLifecycle
from pneumoview.qt.ai.onscreen import OnScreenFollower
from pneumoview.qt.ai.panel import AIPanel
from pneumoview.qt.ai.saving import DeferredSave
from pneumoview.qt.ai.thresholds import ThresholdControl
from pneumoview.qt.ai.treecolumn import AITreeColumn
from pneumoview.qt.ai.worker import InferenceWorker
from pneumoview.qt.host import DETAILS_DOCK, DockArea, Host, MenuSlot

log = logging.getLogger("pneumoview.ai")


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
        self.results = self.state.results
        self.panel = AIPanel()
        self.overlay = CamOverlay(getattr(settings, "cam_opacity", 60) / 100.0)
        self.panel.opacity.setValue(int(round(self.overlay.opacity * 100)))
        choice = self.state.choice
        self.worker = InferenceWorker(choice.model_dir, choice.device, self,
                                      engine=choice.engine, precision=choice.precision)
        self.window: Host | None = None
        self.tree: Any = None
        self.runner: Any = None
        self.saver = DeferredSave(settings, self)
        self.tree_column = AITreeColumn(self.state.result_for_path)
        self.cam = CamToggle(self.overlay, self.panel, settings, self.saver,
                             on_screen=lambda: self.screen.current,
                             prediction=self.current_prediction)
        self.screen = OnScreenFollower(self.state, self.worker, self.panel, self.cam,
                                       self.tree_column)
        self.lifecycle = ModelLifecycle(self.state, self.worker, self.panel, self.screen,
                                        self._report_error, self)
        self.status_label = self.lifecycle.status_label
        self.threshold_control = ThresholdControl(self.state, self.panel, settings, self.saver,
                                                  self.screen, self.tree_column)
        self.exporter = ImageExport(self.state, self.screen, self.overlay, self._report_error)

        self.worker.predicted.connect(self.screen.on_predicted)
        self.worker.camReady.connect(self.screen.on_cam)
        self.panel.thresholdChanged.connect(self.threshold_control.set_threshold)
        self.panel.thresholdReset.connect(self.threshold_control.reset_threshold)
        self.panel.scoreAnywayRequested.connect(self.screen.score_anyway)
        self.panel.camToggled.connect(self.cam.set_visible)
        self.panel.camOpacityChanged.connect(self.cam.set_opacity)

    # -- what other code reads (kept from before the pieces) -------------------------------
    @property
    def info(self) -> Any:
        """The loaded model's :class:`ModelInfo` (``None`` until one has loaded)."""
        return self.state.info

    @property
    def error(self) -> str:
        """Why the model asked for last did not load ("" once one has loaded)."""
        return self.state.error

    @property
    def threshold(self) -> float:
        return self.state.threshold

    @property
    def view(self) -> Any:
        return self.screen.view

    @property
    def current(self) -> tuple[str, int] | None:
        return self.screen.current

    @current.setter
    def current(self, key: tuple[str, int] | None) -> None:
        self.screen.current = key

    # -- wiring into the main window -------------------------------------------------------
    def attach(self, window: Host) -> None:
        """Dock the panel, stack the overlay, add menus, status text and signal hooks."""
        self.window = window
        self.tree = window.tree
        self.runner = window.runner
        self.saver.attached = True
        # scrolls rather than squeezing its labels over each other when the dock is short
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self.panel)
        self.dock = window.add_dock("ai", "AI", scroll, DockArea.RIGHT, tab_with=DETAILS_DOCK,
                                    raised=True)
        self.lifecycle.attach(window)
        self.screen.attach_view(window.view)
        self.tree_column.attach(self.tree)
        self.state.batch_listeners.append(self.tree_column.update_paths)
        window.add_status_widget(self.status_label)
        window.currentInstanceChanged.connect(self.on_instance_changed)
        window.imageShown.connect(self.on_image_shown)
        arriving = getattr(window, "imageArriving", None)  # a window that announces decodes
        if arriving is not None:
            arriving.connect(self.screen.on_image_arriving)
        window.imageFailed.connect(self.on_image_failed)
        window.folderOpened.connect(lambda _p: self.screen.clear_results())
        moved = getattr(window, "activeViewportChanged", None)  # a window with viewports
        if moved is not None:
            moved.connect(lambda vp: self.follow_view(vp.view))

        self.act_cam = self.cam.make_action(window)
        self.act_load_model, self.act_bundled = self.lifecycle.make_actions(window)
        self.act_export = self.exporter.make_action(window)
        for act in (self.act_load_model, self.act_bundled, self.act_export):
            window.add_menu_action(MenuSlot.FILE_MODEL, act)
        window.add_menu_action(MenuSlot.VIEW_OVERLAYS, self.act_cam)

    def start(self) -> None:
        """Load the model in the background (the window's first show starts it, too)."""
        self.lifecycle.start()

    def shutdown(self) -> None:
        """Stop the worker thread (joined); the window saves the settings afterwards."""
        self.saver.stop()
        self.lifecycle.shutdown()

    def pending(self) -> int:
        return self.worker.pending()

    def _report_error(self, message: str) -> None:
        """Errors go to the window's one sink (status bar and Log panel), else the log."""
        if self.window is not None:
            self.window.report_error(message)
        else:
            log.warning(message)

    # -- the pieces' public methods, as before ---------------------------------------------
    def choose_model(self) -> None:
        self.lifecycle.choose()

    def load_model(self, model_dir: str | None) -> None:
        self.lifecycle.load(model_dir)

    def set_threshold(self, value: float) -> None:
        self.threshold_control.set_threshold(value)

    def reset_threshold(self) -> None:
        self.threshold_control.reset_threshold()

    def follow_view(self, view: Any) -> None:
        self.screen.follow_view(view)

    def on_instance_changed(self, instance: Any) -> None:
        self.screen.on_instance_changed(instance)

    def on_image_failed(self, path: str, message: str) -> None:
        self.screen.on_image_failed(path, message)

    def on_image_shown(self, decoded: Any) -> None:
        self.screen.on_image_shown(decoded)

    def score_anyway(self) -> None:
        self.screen.score_anyway()

    def current_prediction(self) -> Any:
        return self.screen.current_prediction()

    def set_cam_visible(self, on: bool) -> None:
        self.cam.set_visible(on)

    def toggle_cam(self) -> None:
        self.cam.toggle()

    def caption(self) -> list[str]:
        return self.exporter.caption()

    def export_image(self) -> None:
        self.exporter.export_image()

    def _best_for_path(self, path: str) -> Any:
        return self.state.result_for_path(path)
