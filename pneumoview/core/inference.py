"""The inference engine: calibrated pneumonia probability, threshold state and Grad-CAM.

One :class:`Engine` owns one model instance and is used from one thread (the GUI's inference
worker, or the batch engine, which makes its own with ``with_cam=False``). The network runs in a
backend (:mod:`pneumoview.core.engines`: torch or OpenVINO, chosen by ``engine``/``precision``)
that returns the logit and the last block's activations A; the CAM is Grad-CAM's closed form on
A (:func:`pneumoview.core.cam.linear_cam`), from the same forward pass. The grad-cam package
stays the reference (:meth:`Engine.gradcam_from_input`, on a torch model). Importing this module
is cheap: torch, openvino, :mod:`pneumoview.core.model` and grad-cam are imported only when a
model is loaded or a reference CAM is asked for, so the viewer's first window never waits.

Every :class:`Prediction` names the model that made it (label and sha256) and carries its
timings. The probability is ``sigmoid(logit / temperature)``; an image is flagged iff the
probability is at least the threshold, so changing the threshold re-labels a prediction without
running the model again (:meth:`Prediction.with_threshold`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pneumoview.core import contract, threads
from pneumoview.core.cam import linear_cam, normalise_cam, resample_to_grid
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.gate import not_scorable_reason
from pneumoview.core.modelinfo import calibrated_probability
from pneumoview.core.threads import apply_torch_threads

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pneumoview.core.dicomio import DecodedImage
    from pneumoview.core.engines import Backend, Forward
    from pneumoview.core.model import LoadedModel, ModelInfo

log = logging.getLogger(__name__)

SCORED = "scored"
NOT_SCORED = "not_scored"
#: Why an image whose logit or probability is NaN or infinite is an error, never "scored".
NON_FINITE = ("the model gave a non-finite output (NaN or infinity) for this image; the model "
              "or its metadata is damaged: re-export or reinstall it")


def label_state(probability: float, threshold: float) -> bool:
    """Flagged iff ``probability >= threshold``."""
    return bool(float(probability) >= float(threshold))


@dataclass(frozen=True)
class Prediction:
    """One image's result; ``probability``/``logit``/``flagged`` are None when not scored."""

    path: str
    frame: int
    status: str  # "scored" | "not_scored"
    probability: float | None
    logit: float | None
    threshold: float
    flagged: bool | None
    reason: str  # why not scored, or what the gate said when scored anyway; "" otherwise
    model_label: str
    model_sha256: str
    model_id: str = ""  # ModelInfo.model_id: weights plus behavioural metadata
    operating_point: str = ""  # which threshold applies (core.oppoints labels), once decided
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def scored(self) -> bool:
        return self.status == SCORED

    def with_threshold(self, threshold: float) -> Prediction:
        """The same result re-labelled at another threshold (no model run)."""
        flagged = None if self.probability is None else label_state(self.probability, threshold)
        return dataclasses.replace(self, threshold=float(threshold), flagged=flagged)

    @property
    def state_text(self) -> str:
        """The state in words, as the panel, the tree and exported captions show it."""
        if not self.scored:
            return f"Not scored: {self.reason}"
        return "Flagged: possible pneumonia" if self.flagged else "Not flagged"


def _limit_gradients_to_cam_layer(module: Any) -> None:
    """Only the CAM's target block (``layer4[-1]``) and the head need gradients.

    Grad-CAM needs d(logit)/d(activation of layer4[-1]); with every parameter requiring grad,
    autograd would record the whole network and back-propagate to the input, tripling the cost.
    Freezing everything before the target block leaves the map unchanged and makes a CAM cost
    about one forward pass. Inference (under ``inference_mode``) is not affected.
    """
    target = module.layer4[-1]
    keep = {id(p) for p in target.parameters()} | {id(p) for p in module.fc.parameters()}
    for param in module.parameters():
        param.requires_grad_(id(param) in keep)


def _model_module():  # the pneumoview.core.model module (imports torch)
    from pneumoview.core import model

    return model


class Engine:
    """One model instance; not thread-safe: create, load and use it from one owner thread."""

    def __init__(self, model_dir: str | PathLike[str] | None = None, device: str = "auto",
                 with_cam: bool = True, interactive: bool | None = None,
                 engine: str = "auto", precision: str = "auto") -> None:
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.device_preference = device or "auto"
        self.engine_preference = engine or "auto"
        self.precision_preference = precision or "auto"
        self.with_cam = with_cam
        # the viewer's engine (with CAM) goes first; a batch engine waits for it between runs
        self.interactive = with_cam if interactive is None else bool(interactive)
        self.info: ModelInfo | None = None
        self._backend: Backend | None = None
        self._reference: LoadedModel | None = None  # torch model for grad-cam (loaded lazily)
        self.engine_fallback = ""  # why auto ran torch instead of openvino ('' when it did not)
        self.last_cam_timings: dict[str, float] = {}  # of the last score_with_cam

    # -- loading -------------------------------------------------------------------------
    def load(self) -> ModelInfo:
        """Read, verify (sha256, input contract, architecture) and load the model.

        Raises :class:`PneumoViewError` for a missing, altered or incompatible model.
        """
        t0 = time.perf_counter()
        try:
            from pneumoview.core.engines.loader import load_backend

            result = load_backend(self.model_dir, self.device_preference,
                                  self.engine_preference, self.precision_preference)
        except PneumoViewError:
            raise
        except Exception as exc:  # torch/openvino/safetensors failures we did not foresee
            raise PneumoViewError(f"cannot load the model ({type(exc).__name__}: {exc})",
                                  self.model_dir) from exc
        backend = result.backend
        self._backend, self.engine_fallback = backend, result.fallback
        self._reference = getattr(backend, "loaded", None)
        if self.with_cam and self._reference is not None:
            _limit_gradients_to_cam_layer(self._reference.module)
        self.info = backend.info
        log.info("loaded model %s (%s) in %.0f ms", backend.info.label, self.engine_text,
                 (time.perf_counter() - t0) * 1000)
        return backend.info

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    @property
    def device(self) -> str:
        """The device the model runs on ('cpu', 'cuda', 'mps'), or '' before loading."""
        return "" if self._backend is None else self._backend.device

    @property
    def engine_name(self) -> str:
        """The engine that runs ('torch', 'openvino'), or '' before loading."""
        return "" if self._backend is None else self._backend.engine.value

    @property
    def precision(self) -> str:
        """The precision that runs ('f32', 'bf16'), or '' before loading."""
        return "" if self._backend is None else self._backend.precision.value

    @property
    def engine_text(self) -> str:
        """'openvino f32 on cpu' (the panel's, the report's and the self-test's words)."""
        from pneumoview.core.engines import describe

        return "" if self._backend is None else describe(self._backend)

    def _require(self) -> Backend:
        if self._backend is None:
            raise PneumoViewError("no model is loaded (call Engine.load first)")
        return self._backend

    def _reference_model(self) -> LoadedModel:
        """The torch model grad-cam runs on: the backend's own, or loaded now on the CPU."""
        backend = self._require()
        if self._reference is None:
            self._reference = _model_module().load_model(self.model_dir, "cpu")
            if self._reference.info.model_id != backend.info.model_id:
                self._reference = None
                raise PneumoViewError("the model changed on disk since it was loaded; load "
                                      "it again", self.model_dir)
            _limit_gradients_to_cam_layer(self._reference.module)
        return self._reference

    def _threads(self) -> None:
        if self._reference is not None and self._reference.device.type == "cpu":
            apply_torch_threads()

    def _turn(self) -> AbstractContextManager[None]:
        """The context a model run happens in: first in line (viewer) or after it (batch)."""
        if self.interactive:
            return threads.interactive()
        threads.wait_for_interactive()
        return nullcontext()

    # -- scoring -------------------------------------------------------------------------
    def forward(self, inputs: Sequence[np.ndarray]) -> Forward:
        """One forward pass for contract step-4 outputs: the logits and the last block's
        activations A (what the CAM and the input gate read)."""
        from pneumoview.core.engines import normalised_batch

        backend = self._require()
        batch = normalised_batch(inputs, backend.info)
        with self._turn():
            return backend.forward(batch)

    def logits(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Raw logits (float64, ``(N,)``) for contract step-4 outputs."""
        return self.forward(inputs).logits

    def probabilities(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Calibrated probabilities (float64, ``(N,)``) for contract step-4 outputs."""
        return calibrated_probability(self.logits(inputs), self._require().info.temperature)

    def model_input(self, decoded: DecodedImage) -> np.ndarray:
        """Contract steps 1-4 for a decoded image, errors as PneumoViewError."""
        size = self.info.input_size if self.info is not None else contract.INPUT_SIZE
        try:
            return contract.model_input(decoded.values, decoded.invert, size=size)
        except ValueError as exc:
            raise PneumoViewError(f"cannot prepare the image for the model: {exc}",
                                  decoded.path) from exc

    def gate(self, decoded: DecodedImage) -> str | None:
        """The validity gate's reason for this image, or None."""
        return not_scorable_reason(decoded.header, decoded.n_frames, values=decoded.values)

    def score(self, decoded: DecodedImage, threshold: float | None = None,
              force: bool = False) -> Prediction:
        """Gate, prepare and score one decoded frame (``force`` scores despite the gate)."""
        loaded = self._require()
        info = loaded.info
        thr = float(info.threshold if threshold is None else threshold)
        t0 = time.perf_counter()
        reason = self.gate(decoded) or ""
        timings: dict[str, float] = {}
        common: dict[str, Any] = dict(path=decoded.path, frame=decoded.frame, threshold=thr,
                                      model_label=info.label, model_sha256=info.weights_sha256,
                                      model_id=info.model_id)
        if reason and not force:
            timings["total_ms"] = (time.perf_counter() - t0) * 1000
            return Prediction(status=NOT_SCORED, probability=None, logit=None, flagged=None,
                              reason=reason, timings=timings, **common)
        x = self.model_input(decoded)
        t1 = time.perf_counter()
        logit = float(self.logits([x])[0])
        t2 = time.perf_counter()
        timings.update(preprocess_ms=(t1 - t0) * 1000, forward_ms=(t2 - t1) * 1000,
                       total_ms=(t2 - t0) * 1000)
        return self._scored(decoded, logit, thr, reason, timings)

    def _scored(self, decoded: DecodedImage, logit: float, threshold: float, reason: str,
                timings: dict[str, float]) -> Prediction:
        info = self._require().info
        prob = float(calibrated_probability(np.array([logit]), info.temperature)[0])
        if not (math.isfinite(logit) and math.isfinite(prob)):
            raise PneumoViewError(NON_FINITE, decoded.path)
        return Prediction(path=decoded.path, frame=decoded.frame, status=SCORED,
                          probability=prob, logit=logit, threshold=threshold,
                          flagged=label_state(prob, threshold),
                          reason=f"scored anyway despite: {reason}" if reason else "",
                          model_label=info.label, model_sha256=info.weights_sha256,
                          model_id=info.model_id, timings=timings)

    # -- CAM -----------------------------------------------------------------------------
    def _require_cam(self) -> Backend:
        backend = self._require()
        if not self.with_cam:
            raise PneumoViewError("this engine was created without CAM support")
        return backend

    def _logit_and_cam(self, x: np.ndarray,
                       on_logit: Callable[[float], None] | None = None,
                       ) -> tuple[float, np.ndarray]:
        """One forward pass: the logit (reported to ``on_logit`` at once), then Grad-CAM's map
        in closed form from the same pass's activations (no backward pass)."""
        backend = self._require_cam()
        out = self.forward([x])
        logit = float(out.logits[0])
        if on_logit is not None:
            on_logit(logit)
        return logit, linear_cam(out.activations[0], backend.fc_weight)

    def gradcam_from_input(self, x: np.ndarray) -> np.ndarray:
        """The grad-cam package's GradCAM of the logit on ``layer4[-1]`` (torch, forward and
        backward): the reference the closed form is tested against, on the layer grid."""
        self._require_cam()
        loaded = self._reference_model()
        model = _model_module()
        import torch
        from pytorch_grad_cam import GradCAM  # slow import: only here

        class _LayerGridGradCAM(GradCAM):
            """Grad-CAM that returns the raw layer grid; we resample it ourselves, exactly."""

            def get_target_width_height(self, input_tensor):
                return None

        class _Logit:
            def __call__(self, output):
                return output.reshape(-1)[0]

        batch = model.prepare_batch([x], loaded.info).to(loaded.device)
        module = loaded.module
        with self._turn(), torch.enable_grad(), torch.inference_mode(False):
            self._threads()
            cam = _LayerGridGradCAM(model=module, target_layers=[module.layer4[-1]])
            try:
                outputs = cam.activations_and_grads(batch)
                module.zero_grad(set_to_none=True)
                _Logit()(outputs).backward()
                grid = cam.aggregate_multi_layers(
                    cam.compute_cam_per_layer(batch, [_Logit()], False))
            finally:
                cam.activations_and_grads.release()
                module.zero_grad(set_to_none=True)
        return normalise_cam(np.asarray(grid, dtype=np.float32)[0])

    def cam_from_input(self, x: np.ndarray) -> np.ndarray:
        """Grad-CAM of the logit on the last block for one contract output, on the layer grid.

        Returns a float32 map in [0, 1] (7 x 7 for a 224 input), scaled as grad-cam scales it;
        an image with no positive evidence gives all zeros.
        """
        return self._logit_and_cam(x)[1]

    def cam(self, decoded: DecodedImage) -> np.ndarray:
        """Grad-CAM as float32 ``(H, W)`` in [0, 1] on the decoded image's own pixel grid."""
        grid = self.cam_from_input(self.model_input(decoded))
        return resample_to_grid(grid, decoded.shape)

    def score_with_cam(self, decoded: DecodedImage, threshold: float | None = None,
                       force: bool = False,
                       on_prediction: Callable[[Prediction], None] | None = None,
                       ) -> tuple[Prediction, np.ndarray | None]:
        """:meth:`score` and :meth:`cam` from one forward pass (the viewer's path).

        ``on_prediction`` is called with the prediction as soon as the logit is known, before
        the map is computed. The map is None when the image is not scored.
        """
        loaded = self._require()
        info = loaded.info
        thr = float(info.threshold if threshold is None else threshold)
        t0, c0 = time.perf_counter(), time.thread_time()
        reason = self.gate(decoded) or ""
        if (reason and not force) or not self.with_cam:
            pred = self.score(decoded, thr, force)
            if on_prediction is not None:
                on_prediction(pred)
            return pred, None
        x = self.model_input(decoded)
        t1 = time.perf_counter()
        made: list[Prediction] = []

        def report(logit: float) -> None:
            t2 = time.perf_counter()
            # cpu_ms: this thread's CPU time (the whole cost when torch runs on one thread);
            # on a busy machine it shows what the wall-clock figures would be on a quiet one
            timings = {"preprocess_ms": (t1 - t0) * 1000, "forward_ms": (t2 - t1) * 1000,
                       "total_ms": (t2 - t0) * 1000, "cpu_ms": (time.thread_time() - c0) * 1000}
            made.append(self._scored(decoded, logit, thr, reason, timings))
            if on_prediction is not None:
                on_prediction(made[0])

        _logit, grid = self._logit_and_cam(x, report)
        t3 = time.perf_counter()
        cam = resample_to_grid(grid, decoded.shape)
        now = time.perf_counter()
        # the prediction may already be on another thread: its timings are not touched again
        self.last_cam_timings = {"cam_ms": (now - t1) * 1000, "total_ms": (now - t0) * 1000,
                                 "resample_ms": (now - t3) * 1000,
                                 "cpu_ms": (time.thread_time() - c0) * 1000}
        return made[0], cam

    def warm_up(self) -> None:
        """Run one forward (and CAM) on a blank input, so the user's first image does not pay
        for allocator growth or lazy kernel set-up."""
        backend = self._require()
        blank = np.full((backend.info.input_size,) * 2, 0.5, dtype=np.float32)
        if self.with_cam:
            self.cam_from_input(blank)
        else:
            self.logits([blank])

    def close(self) -> None:
        """Drop the model (frees GPU memory when on CUDA)."""
        if self._backend is not None:
            self._backend.close()
        self._backend = self._reference = None
        self.info = None
