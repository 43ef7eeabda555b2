"""The viewer's one long-lived inference worker: it owns the viewer's :class:`Engine`.

Why one dedicated thread: the model must be loaded once (hundreds of milliseconds, plus the slow
torch and grad-cam imports) and then stay warm; the engine is not thread-safe, so exactly one
thread touches it. The thread is a plain Python thread (like :mod:`pneumoview.qt.workers`, so
"no thread left running" can be checked with ``threading``) started by :meth:`start` after the
window is shown; it imports torch itself, so the first window never waits for torch.

Protocol (GUI thread -> worker): :meth:`submit` queues a request for one instance (path + frame,
optionally the already decoded image); a newer request replaces every queued one. The score and
the CAM come from one forward pass (:meth:`Engine.score_with_cam`): the probability is sent as
soon as the logit is known, the map right after. Results come back as signals carrying
the request id, path and frame; the receiver compares them with what it shows now and drops
stale ones, so the panel never shows another image's result. :meth:`pending` counts work not yet
answered (``busyChanged``), which ``--screenshot`` and the tests wait on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from pneumoview.core.errors import PneumoViewError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AIRequest:
    """What to score: the instance (path, frame) and, when the viewer has it, its pixels."""

    request_id: int
    path: str
    frame: int
    decoded: Any = None  # DecodedImage, or None to decode here
    force: bool = False  # "score anyway": ignore the validity gate
    want_cam: bool = True
    submitted: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> tuple[str, int]:
        return (self.path, self.frame)


@dataclass(frozen=True)
class AIResult:
    """The answer to one request: a prediction, or an error message."""

    request_id: int
    path: str
    frame: int
    force: bool
    prediction: Any = None  # Prediction | None
    error: str = ""
    elapsed_ms: float = 0.0  # submit -> result, in the worker
    cam_follows: bool = False  # a CamResult for this request will come next

    @property
    def key(self) -> tuple[str, int]:
        return (self.path, self.frame)


@dataclass(frozen=True)
class CamResult:
    request_id: int
    path: str
    frame: int
    cam: np.ndarray  # float32 (H, W) in [0, 1] on the image's own pixel grid
    cam_ms: float
    elapsed_ms: float

    @property
    def key(self) -> tuple[str, int]:
        return (self.path, self.frame)


@dataclass(frozen=True)
class _Load:
    model_dir: str | None
    device: str
    engine: str = "auto"
    precision: str = "auto"


_STOP = object()


class InferenceWorker(QObject):
    """Owns one Engine on one thread; see the module docstring for the protocol."""

    modelLoading = Signal(str)  # model folder ('' = bundled)
    modelReady = Signal(object, str)  # ModelInfo, engine ("openvino f32 on cpu")
    modelFailed = Signal(str)  # message; the previous model (if any) stays in use
    predicted = Signal(object)  # AIResult
    camReady = Signal(object)  # CamResult
    busyChanged = Signal(int)

    def __init__(self, model_dir: str | None = None, device: str = "auto",
                 parent: QObject | None = None, *, engine: str = "auto",
                 precision: str = "auto") -> None:
        super().__init__(parent)
        self._model_dir = model_dir
        self._device = device or "auto"
        self._engine = (engine or "auto", precision or "auto")  # engine, precision
        self._lock = threading.Condition()
        self._queue: deque[Any] = deque()
        self._thread: threading.Thread | None = None
        self._next_id = 0
        self._pending = 0
        self._stopping = False
        self.engine: Any = None  # Engine, touched only by the worker thread
        self.info: Any = None  # ModelInfo of the loaded model (set in the GUI thread)
        self.device = ""
        self.load_error = ""
        self.inferences = 0  # model runs (scores) done, for tests: a relabel must not add one
        self.predicted.connect(self._on_answer)
        self.camReady.connect(self._on_answer)
        self.modelReady.connect(self._on_ready)
        self.modelFailed.connect(self._on_failed)

    # -- GUI-thread API --------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread and load the configured model (call after the window is shown)."""
        if self._thread is not None or self._stopping:
            return
        self._post(_Load(self._model_dir, self._device, *self._engine), replace_requests=False)
        self._thread = threading.Thread(target=self._serve, name="pneumoview-inference",
                                        daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def load_model(self, model_dir: str | None, device: str | None = None) -> None:
        """Switch to another model folder (``None`` = bundled); failures keep the old one."""
        self._model_dir = model_dir
        if device:
            self._device = device
        if self._thread is None:
            self.start()
        else:
            self._post(_Load(model_dir, self._device, *self._engine), replace_requests=False)

    def submit(self, path: str, frame: int = 0, decoded: Any = None, force: bool = False,
               want_cam: bool = True) -> int:
        """Queue a scoring request; queued older requests are dropped. Returns its id."""
        self._next_id += 1
        req = AIRequest(self._next_id, str(path), int(frame), decoded, force, want_cam)
        if self._thread is None and not self._stopping:
            self.start()  # the model load goes first in the queue
        self._post(req, replace_requests=True)
        return req.request_id

    def pending(self) -> int:
        """Loads and requests not answered yet (a dropped request counts as answered)."""
        return self._pending

    def shutdown(self, timeout: float = 60.0) -> bool:
        """Stop the thread (after the current step) and join it; True when it ended.

        The current step may be the first ``import torch`` (seconds on a busy machine), which
        cannot be interrupted, hence the generous timeout; a normal step takes milliseconds.
        """
        self._stopping = True
        with self._lock:
            dropped = sum(1 for item in self._queue if item is not _STOP)
            self._queue.clear()
            self._queue.append(_STOP)
            self._lock.notify_all()
        self._change(-dropped)
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the inference thread did not stop in %.0f s", timeout)
            return False
        return True

    def thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- internals (GUI thread) ------------------------------------------------------------
    def _change(self, delta: int) -> None:
        if delta:
            self._pending = max(0, self._pending + delta)
            self.busyChanged.emit(self._pending)

    def _release_later(self) -> None:
        """Release one pending unit after the slots already queued have run; ``self`` is the
        timer's context, so a release queued just before the client is deleted is dropped
        instead of emitting from a deleted object."""
        QTimer.singleShot(0, self, lambda: self._change(-1))

    def _post(self, item: Any, replace_requests: bool) -> None:
        if self._stopping:
            return
        dropped = 0
        with self._lock:
            if replace_requests:
                kept = [i for i in self._queue if not isinstance(i, AIRequest)]
                dropped = len(self._queue) - len(kept)
                self._queue = deque(kept)
            self._queue.append(item)
            self._lock.notify_all()
        self._change(1 - dropped)

    def _on_answer(self, result: AIResult | CamResult) -> None:
        # one pending unit per request: released by its CAM, or by its result when no CAM follows
        if isinstance(result, CamResult) or not result.cam_follows:
            # after the receivers' slots already queued for this result have run, so whoever
            # waits for pending() == 0 sees the panel updated
            self._release_later()

    def _on_ready(self, info: Any, device: str) -> None:
        self.info, self.device, self.load_error = info, device, ""
        self._release_later()

    def _on_failed(self, message: str) -> None:
        self.load_error = message
        self._release_later()

    # -- the worker thread -----------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._lock.wait()
                item = self._queue.popleft()
            if item is _STOP:
                break
            try:
                if isinstance(item, _Load):
                    self._do_load(item)
                else:
                    self._do_request(item)
            except Exception:  # never kill the thread: every item is answered
                log.exception("unexpected error in the inference worker")
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def _do_load(self, item: _Load) -> None:
        self.modelLoading.emit(item.model_dir or "")
        from pneumoview.core.inference import Engine

        engine = Engine(item.model_dir, device=item.device, with_cam=True, engine=item.engine,
                        precision=item.precision)
        try:
            info = engine.load()
            if not self._stopping:  # closing: no need to import grad-cam and warm up
                engine.warm_up()
        except PneumoViewError as exc:  # reported by whoever listens (the window's log)
            from pneumoview.qt.advice import advice

            self.modelFailed.emit(f"{exc}{advice(exc)}")
            return
        except Exception as exc:  # a broken install (torch missing...) must not stop viewing
            log.exception("cannot load the model")
            self.modelFailed.emit(f"cannot load the model ({type(exc).__name__}: {exc})")
            return
        old, self.engine = self.engine, engine
        if old is not None:
            old.close()
        self.modelReady.emit(info, engine.engine_text)

    def _do_request(self, req: AIRequest) -> None:
        """Decode (when needed), gate, score and map one request; always answer it once."""
        def fail(message: str) -> None:
            self.predicted.emit(AIResult(req.request_id, req.path, req.frame, req.force, None,
                                         message, (time.perf_counter() - req.submitted) * 1000))

        if self.engine is None:
            fail(f"AI unavailable: {self.load_error or 'no model loaded'}")
            return
        answered: list[Any] = []

        def on_prediction(prediction: Any) -> None:
            cam_follows = bool(req.want_cam and prediction.scored and self.engine.with_cam)
            answered.append(cam_follows)
            self.inferences += int(prediction.scored)
            self.predicted.emit(AIResult(req.request_id, req.path, req.frame, req.force,
                                         prediction, "",
                                         (time.perf_counter() - req.submitted) * 1000,
                                         cam_follows))

        decoded = req.decoded
        try:
            if decoded is None:
                from pneumoview.core.dicomio import decode

                decoded = decode(req.path, req.frame)
            if req.want_cam:
                # one forward pass: the probability is emitted before the map is computed
                _pred, cam = self.engine.score_with_cam(decoded, force=req.force,
                                                        on_prediction=on_prediction)
            else:
                on_prediction(self.engine.score(decoded, force=req.force))
                cam = None
        except Exception as exc:  # PneumoViewError, or a bug: the viewer must go on
            if not isinstance(exc, PneumoViewError):
                log.exception("unexpected error while scoring")
            if not answered:
                fail(str(exc))
                return
            log.warning("no CAM for this image: %s", exc)
            cam = None
        if not (answered and answered[0]):
            return
        if cam is None:
            cam = np.zeros(decoded.shape, np.float32)
        now = time.perf_counter()
        cam_ms = self.engine.last_cam_timings.get("cam_ms", 0.0)
        self.camReady.emit(CamResult(req.request_id, req.path, req.frame, cam, cam_ms,
                                     (now - req.submitted) * 1000))
