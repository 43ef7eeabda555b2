"""The life of the viewer's inference worker and its model: started shortly after the window
is first shown, File > Load Model / Use Bundled Model, then loading, ready or refused, the
status bar's text naming the model, pending work registered with the window's runner (so
``--screenshot`` waits for the probability and the CAM), and the thread joined at shutdown.

The wish is recorded in ``AIState.choose``; it becomes the choice (and the saved setting) only
when the model has loaded (``AIState.model_loaded``). A refused model changes nothing: the
loaded one stays in use and the panel says so; with none loaded the AI is unavailable and the
image on screen says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QLabel

from pneumoview.core.aistate import AIState
from pneumoview.qt.ai.onscreen import OnScreenFollower
from pneumoview.qt.ai.panel import AIPanel
from pneumoview.qt.ai.worker import InferenceWorker
from pneumoview.qt.plaintext import make_plain, tip

START_DELAY_MS = 500


class ModelLifecycle(QObject):
    """Starts ``worker``, loads models in it and answers its modelLoading / modelReady /
    modelFailed / busyChanged; ``report_error`` is the window's error sink."""

    def __init__(self, state: AIState, worker: InferenceWorker, panel: AIPanel,
                 screen: OnScreenFollower, report_error: Callable[[str], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.worker = worker
        self.panel = panel
        self.screen = screen
        self.report_error = report_error
        self.parent_window: Any = None  # the window: the folder dialog's parent
        self.status_label = make_plain(QLabel("AI: not started"))  # shows the model's name
        self.runner: Any = None  # the window's WorkRunner, once attached
        self._token: int | None = None
        self._start_armed = False
        worker.modelLoading.connect(self.on_loading)
        worker.modelReady.connect(self.on_ready)
        worker.modelFailed.connect(self.on_failed)
        worker.busyChanged.connect(self.on_busy)

    # -- the worker ------------------------------------------------------------------------
    def attach(self, window: Any) -> None:
        """Start when ``window`` is first shown; its runner hears of pending work."""
        self.parent_window = window
        self.runner = window.runner
        window.installEventFilter(self)

    def start(self) -> None:
        """Load the model in the background (call once the window is shown)."""
        self.worker.start()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        """Start loading the model shortly after the window is first shown.

        The delay lets the first window paint (and a --screenshot open its folder) before the
        worker thread starts importing torch; selecting an image starts it at once anyway.
        """
        if obj is self.parent_window and event.type() == QEvent.Type.Show \
                and not self._start_armed:
            self._start_armed = True
            QTimer.singleShot(START_DELAY_MS, self.start)
        return False

    def shutdown(self) -> None:
        """Stop the worker thread (joined)."""
        self.worker.shutdown()
        self.on_busy(0)

    def on_busy(self, pending: int) -> None:
        """The worker's pending work, registered with the runner (``--screenshot``, tests)."""
        if self.runner is None:
            return
        if pending > 0 and self._token is None:
            self._token = self.runner.begin("ai")
        elif pending == 0 and self._token is not None:
            self.runner.end(self._token)
            self._token = None

    # -- the model -------------------------------------------------------------------------
    def make_actions(self, parent: Any) -> tuple[QAction, QAction]:
        """File > Load Model... and File > Use Bundled Model."""
        load = QAction("Load &Model...", parent)
        load.triggered.connect(self.choose)
        bundled = QAction("Use &Bundled Model", parent)
        bundled.triggered.connect(lambda: self.load(None))
        return load, bundled

    def choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self.parent_window, "Load Model (a folder exported by training)")
        if folder:
            self.load(folder)

    def load(self, model_dir: str | None) -> None:
        """Switch models (the user's choice is remembered once the model has loaded)."""
        choice = self.state.choose(model_dir)
        self.worker.load_model(choice.model_dir, choice.device)

    def on_loading(self, _model_dir: str) -> None:
        self.status_label.setText("AI: loading model...")
        self.panel.show_model_loading()

    def on_ready(self, info: Any, device: str) -> None:
        replaced = self.state.model_loaded(info)
        self.panel.set_model(info, device)
        if self.state.profile is not None:
            self.panel.show_profile(self.state.profile)
        self.panel.show_model_error("")
        self.status_label.setText(f"AI: {device} | {info.name} {info.version}")
        self.status_label.setToolTip(tip(info.label))
        self.panel.set_threshold(self.state.threshold)
        self.screen.model_ready(replaced)

    def on_failed(self, message: str) -> None:
        self.state.model_refused(message)
        info = self.state.info
        if info is not None:  # a new model was refused: the loaded one stays in use
            self.panel.set_model(info, self.worker.device)
            self.panel.show_model_error(f"The model you chose was refused: {message}. Still "
                                        f"using {info.label}.")
            self.status_label.setText(f"AI: {self.worker.device} | {info.name} "
                                      f"{info.version} (new model refused)")
            self.status_label.setToolTip(tip(message))
            self.report_error(f"Load Model refused: {message} (still using {info.label})")
        else:
            self.panel.set_model(None, error=f"AI unavailable: {message}")
            self.status_label.setText("AI unavailable")
            self.status_label.setToolTip(tip(message))
            self.screen.model_unavailable(message)
            self.report_error(f"AI unavailable: {message}")
