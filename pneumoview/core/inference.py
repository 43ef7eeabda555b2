"""The inference engine: calibrated pneumonia probability, threshold state and Grad-CAM.

One :class:`Engine` owns one model instance and is used from one thread (the GUI's inference
worker, or the batch engine, which makes its own with ``with_cam=False``). The network runs in a
backend (:mod:`pneumoview.core.engines`: torch or OpenVINO, chosen by ``engine``/``precision``)
that returns the logit and the last block's activations A; the CAM is Grad-CAM's closed form on
A (:func:`pneumoview.core.cam.linear_cam`), from the same forward pass; the model's input gate
(:mod:`pneumoview.core.inputgate`, built from the backend's metadata and gate tensors) reads the
same A, so the gate costs no pass of its own, whichever engine runs. The grad-cam package
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
from pneumoview.core.gatepolicy import GateMode, objection, refuses
from pneumoview.core.inputgate import GateFormatError, GateVerdict, InputGate, content_statistics
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
    # the content gate's verdict (None: the model has no gate, or it did not run)
    gate: GateVerdict | None = field(default=None, compare=False)

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
                 engine: str = "auto", precision: str = "auto",
                 gate_mode: GateMode = GateMode.CONTENT) -> None:
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.device_preference = device or "auto"
        self.engine_preference = engine or "auto"
        self.precision_preference = precision or "auto"
        self.with_cam = with_cam
        self.gate_mode = GateMode(gate_mode)
        self.input_gate: InputGate | None = None  # the model's content gate, when it has one
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
        try:
            # built from the backend's metadata and gate tensors: the same for every engine
            input_gate = InputGate.from_model(backend.info.raw, backend.gate_tensors)
        except GateFormatError as exc:
            backend.close()
            raise PneumoViewError(f"the model's input gate is malformed ({exc}); re-export "
                                  "the model", backend.info.directory) from exc
        self.input_gate = input_gate
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
        return self.calibrated(self.logits(inputs))

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """The model's calibrated probabilities of raw logits."""
        return calibrated_probability(logits, self._require().info.temperature)

    def model_input(self, decoded: DecodedImage) -> np.ndarray:
        """Contract steps 1-4 for a decoded image, errors as PneumoViewError."""
        size = self.info.input_size if self.info is not None else contract.INPUT_SIZE
        version = self.info.input_contract if self.info is not None else contract.INPUT_CONTRACT
        try:
            return contract.model_input(decoded.values, decoded.invert, size=size,
                                        version=version)
        except ValueError as exc:
            raise PneumoViewError(f"cannot prepare the image for the model: {exc}",
                                  decoded.path) from exc

    def gate(self, decoded: DecodedImage) -> str | None:
        """The validity (tag) gate's reason for this image, or None."""
        return not_scorable_reason(decoded.header, decoded.n_frames, values=decoded.values)

    @property
    def content_gate_active(self) -> bool:
        """Whether the content gate runs (the model has one and --no-gate is not set)."""
        return self.input_gate is not None and self.gate_mode is GateMode.CONTENT

    def gated_logits(self, inputs: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]],
                     stats: Sequence[dict[str, float] | None] | None = None,
                     ) -> tuple[np.ndarray, list[GateVerdict | None]]:
        """Raw logits of contract step-4 outputs and the content gate's verdict on each, from
        one forward pass (the gate reads the activations the logit is computed from).

        ``shapes`` are the decoded images' (height, width); ``stats`` their inputs'
        :func:`~pneumoview.core.inputgate.content_statistics` when already known (the batch's
        decode workers compute them). Verdicts are None when the model has no gate; under
        ``--no-gate`` they are computed (the atypicality is reported) but not applied.
        """
        out = self.forward(inputs)
        return out.logits, self._verdicts(inputs, shapes, stats, out.activations)

    def _verdicts(self, inputs: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]],
                  stats: Sequence[dict[str, float] | None] | None,
                  act: np.ndarray) -> list[GateVerdict | None]:
        gate = self.input_gate
        if gate is None:
            return [None] * len(inputs)
        feats = gate.features(act)
        known = list(stats) if stats is not None else [None] * len(inputs)
        return [gate.judge_statistics(tuple(shape), st or content_statistics(x), f)
                for x, shape, st, f in zip(inputs, shapes, known, feats, strict=True)]

    def pre_verdict(self, shape: tuple[int, int], x: np.ndarray,
                    stats: dict[str, float] | None = None) -> GateVerdict | None:
        """The content gate's rules (size, aspect, no content), which need no forward pass:
        a refusal, or None (also when the content gate does not run)."""
        if not self.content_gate_active:
            return None
        assert self.input_gate is not None
        return self.input_gate.pre_check_statistics(shape, stats or content_statistics(x))

    def score(self, decoded: DecodedImage, threshold: float | None = None,
              force: bool = False) -> Prediction:
        """Gate, prepare and score one decoded frame (``force`` scores despite the gates)."""
        info = self._require().info
        thr = float(info.threshold if threshold is None else threshold)
        t0 = time.perf_counter()
        reason = self.gate(decoded) or ""
        if reason and not force:
            return self._not_scored(decoded, thr, reason, None, t0)
        x = self.model_input(decoded)
        rule = self.pre_verdict(decoded.shape, x)
        if rule is not None and not force:
            return self._not_scored(decoded, thr, rule.reason, rule, t0)
        t1 = time.perf_counter()
        logits, verdicts = self.gated_logits([x], [decoded.shape])
        t2 = time.perf_counter()
        verdict = verdicts[0]
        if refuses(verdict, self.gate_mode) and not force:
            assert verdict is not None
            return self._not_scored(decoded, thr, verdict.reason, verdict, t0)
        timings = {"preprocess_ms": (t1 - t0) * 1000, "forward_ms": (t2 - t1) * 1000,
                   "total_ms": (t2 - t0) * 1000}
        return self._scored(decoded, float(logits[0]), thr, self._objection(reason, verdict),
                            timings, verdict)

    def _objection(self, tag_reason: str, verdict: GateVerdict | None) -> str:
        return objection(tag_reason, verdict if refuses(verdict, self.gate_mode) else None)

    def _not_scored(self, decoded: DecodedImage, threshold: float, reason: str,
                    verdict: GateVerdict | None, t0: float) -> Prediction:
        info = self._require().info
        return Prediction(path=decoded.path, frame=decoded.frame, status=NOT_SCORED,
                          probability=None, logit=None, threshold=threshold, flagged=None,
                          reason=reason, model_label=info.label,
                          model_sha256=info.weights_sha256, model_id=info.model_id,
                          timings={"total_ms": (time.perf_counter() - t0) * 1000},
                          gate=verdict)

    def _scored(self, decoded: DecodedImage, logit: float, threshold: float, reason: str,
                timings: dict[str, float], verdict: GateVerdict | None = None) -> Prediction:
        info = self._require().info
        prob = float(calibrated_probability(np.array([logit]), info.temperature)[0])
        if not (math.isfinite(logit) and math.isfinite(prob)):
            raise PneumoViewError(NON_FINITE, decoded.path)
        return Prediction(path=decoded.path, frame=decoded.frame, status=SCORED,
                          probability=prob, logit=logit, threshold=threshold,
                          flagged=label_state(prob, threshold),
                          reason=f"scored anyway despite: {reason}" if reason else "",
                          model_label=info.label, model_sha256=info.weights_sha256,
                          model_id=info.model_id, timings=timings, gate=verdict)

    # -- CAM -----------------------------------------------------------------------------
    def _require_cam(self) -> Backend:
        backend = self._require()
        if not self.with_cam:
            raise PneumoViewError("this engine was created without CAM support")
        return backend

    def _logit_and_cam(self, x: np.ndarray,
                       on_logit: Callable[[float, np.ndarray], bool] | None = None,
                       ) -> tuple[float, np.ndarray | None]:
        """One forward pass: the logit (reported to ``on_logit`` at once), then Grad-CAM's map
        in closed form from the same pass's activations (no backward pass).

        ``on_logit(logit, activations)`` gets the pass's A (N=1, C, h, w; the content gate
        reads it); when it returns False the map is not computed (None).
        """
        backend = self._require_cam()
        out = self.forward([x])
        logit = float(out.logits[0])
        if on_logit is not None and not on_logit(logit, out.activations):
            return logit, None
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
        grid = self._logit_and_cam(x)[1]
        assert grid is not None
        return grid

    def cam(self, decoded: DecodedImage) -> np.ndarray:
        """Grad-CAM as float32 ``(H, W)`` in [0, 1] on the decoded image's own pixel grid."""
        grid = self.cam_from_input(self.model_input(decoded))
        return resample_to_grid(grid, decoded.shape)

    def score_with_cam(self, decoded: DecodedImage, threshold: float | None = None,
                       force: bool = False,
                       on_prediction: Callable[[Prediction], None] | None = None,
                       ) -> tuple[Prediction, np.ndarray | None]:
        """:meth:`score` and :meth:`cam` from one forward pass (the viewer's path).

        ``on_prediction`` is called with the prediction as soon as the logit (and the content
        gate's verdict, read from the same forward pass) is known, before the map is computed.
        The map is None when the image is not scored.
        """
        info = self._require().info
        thr = float(info.threshold if threshold is None else threshold)
        t0, c0 = time.perf_counter(), time.thread_time()
        reason = self.gate(decoded) or ""
        if (reason and not force) or not self.with_cam:
            pred = self.score(decoded, thr, force)
            if on_prediction is not None:
                on_prediction(pred)
            return pred, None
        x = self.model_input(decoded)
        stats = content_statistics(x) if self.input_gate is not None else None
        rule = self.pre_verdict(decoded.shape, x, stats)
        if rule is not None and not force:
            pred = self._not_scored(decoded, thr, rule.reason, rule, t0)
            if on_prediction is not None:
                on_prediction(pred)
            return pred, None
        t1 = time.perf_counter()
        made: list[Prediction] = []

        def report(logit: float, act: np.ndarray) -> bool:
            verdict = self._verdicts([x], [decoded.shape], [stats], act)[0]
            t2 = time.perf_counter()
            if refuses(verdict, self.gate_mode) and not force:
                assert verdict is not None
                made.append(self._not_scored(decoded, thr, verdict.reason, verdict, t0))
            else:
                # cpu_ms: this thread's CPU time (the whole cost when torch runs on one
                # thread); on a busy machine it shows what the wall-clock figures would be on
                # a quiet one
                timings = {"preprocess_ms": (t1 - t0) * 1000, "forward_ms": (t2 - t1) * 1000,
                           "total_ms": (t2 - t0) * 1000,
                           "cpu_ms": (time.thread_time() - c0) * 1000}
                made.append(self._scored(decoded, logit, thr, self._objection(reason, verdict),
                                         timings, verdict))
            if on_prediction is not None:
                on_prediction(made[0])
            return made[0].scored

        _logit, grid = self._logit_and_cam(x, report)
        if grid is None:
            return made[0], None
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
        # the thread rule gives one thread fewer while the viewer's decode thread is busy,
        # and OpenVINO compiles a model per thread count (~0.3 s): not on the reader's click
        with threads.busy(1):
            self.logits([blank])

    def close(self) -> None:
        """Drop the model (frees GPU memory when on CUDA)."""
        if self._backend is not None:
            self._backend.close()
        self._backend = self._reference = None
        self.info = None
        self.input_gate = None
