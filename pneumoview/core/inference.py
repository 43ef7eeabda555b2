"""The inference engine: calibrated pneumonia probability, threshold state and Grad-CAM.

One :class:`Engine` owns one model instance and is used from one thread (the GUI's inference
worker, or the batch engine, which makes its own with ``with_cam=False``). Importing this module
is cheap: torch, :mod:`pneumoview.core.model` and the (slow) grad-cam package are imported only
when a model is loaded or a CAM is asked for, so the viewer's first window never waits on them.

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
from pneumoview.core.cam import normalise_cam, resample_to_grid
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.gate import not_scorable_reason
from pneumoview.core.gatepolicy import GateMode, objection, refuses
from pneumoview.core.inputgate import GateFormatError, GateVerdict, InputGate, content_statistics
from pneumoview.core.threads import apply_torch_threads

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pneumoview.core.dicomio import DecodedImage
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
                 gate_mode: GateMode = GateMode.CONTENT) -> None:
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.device_preference = device or "auto"
        self.with_cam = with_cam
        self.gate_mode = GateMode(gate_mode)
        self.input_gate: InputGate | None = None  # the model's content gate, when it has one
        # the viewer's engine (with CAM) goes first; a batch engine waits for it between runs
        self.interactive = with_cam if interactive is None else bool(interactive)
        self.info: ModelInfo | None = None
        self._loaded: LoadedModel | None = None
        self.last_cam_timings: dict[str, float] = {}  # of the last score_with_cam

    # -- loading -------------------------------------------------------------------------
    def load(self) -> ModelInfo:
        """Read, verify (sha256, input contract, architecture) and load the model.

        Raises :class:`PneumoViewError` for a missing, altered or incompatible model.
        """
        t0 = time.perf_counter()
        try:
            model = _model_module()
            loaded = model.load_model(self.model_dir, self.device_preference)
        except PneumoViewError:
            raise
        except Exception as exc:  # torch/safetensors failures we did not foresee
            raise PneumoViewError(f"cannot load the model ({type(exc).__name__}: {exc})",
                                  self.model_dir) from exc
        try:
            self.input_gate = InputGate.from_model(loaded.info.raw, loaded.gate_tensors)
        except GateFormatError as exc:
            raise PneumoViewError(f"the model's input gate is malformed ({exc}); re-export "
                                  "the model", loaded.info.directory) from exc
        if self.with_cam:
            _limit_gradients_to_cam_layer(loaded.module)
        self._loaded = loaded
        self.info = loaded.info
        log.info("loaded model %s on %s in %.0f ms", loaded.info.label, loaded.device,
                 (time.perf_counter() - t0) * 1000)
        return loaded.info

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def device(self) -> str:
        """The device the model runs on ('cpu', 'cuda', 'mps'), or '' before loading."""
        return "" if self._loaded is None else str(self._loaded.device)

    def _require(self) -> LoadedModel:
        if self._loaded is None:
            raise PneumoViewError("no model is loaded (call Engine.load first)")
        return self._loaded

    def _threads(self) -> None:
        if self._loaded is not None and self._loaded.device.type == "cpu":
            apply_torch_threads()

    def _turn(self) -> AbstractContextManager[None]:
        """The context a model run happens in: first in line (viewer) or after it (batch)."""
        if self.interactive:
            return threads.interactive()
        threads.wait_for_interactive()
        return nullcontext()

    # -- scoring -------------------------------------------------------------------------
    def logits(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Raw logits (float64, ``(N,)``) for contract step-4 outputs."""
        loaded = self._require()
        model = _model_module()
        batch = model.prepare_batch(inputs, loaded.info)
        with self._turn():
            self._threads()
            return model.predict_logits(loaded, batch)

    def probabilities(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Calibrated probabilities (float64, ``(N,)``) for contract step-4 outputs."""
        return self.calibrated(self.logits(inputs))

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """The model's calibrated probabilities of raw logits."""
        loaded = self._require()
        return _model_module().calibrated_probability(logits, loaded.info.temperature)

    def model_input(self, decoded: DecodedImage) -> np.ndarray:
        """Contract steps 1-4 for a decoded image, errors as PneumoViewError."""
        size = self.info.input_size if self.info is not None else contract.INPUT_SIZE
        try:
            return contract.model_input(decoded.values, decoded.invert, size=size)
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
        loaded = self._require()
        model = _model_module()
        batch = model.prepare_batch(inputs, loaded.info)
        with self._turn():
            self._threads()
            logits, act = model.predict_activations(loaded, batch)
        return logits, self._verdicts(inputs, shapes, stats, act)

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
        prob = float(_model_module().calibrated_probability(np.array([logit]),
                                                            info.temperature)[0])
        if not (math.isfinite(logit) and math.isfinite(prob)):
            raise PneumoViewError(NON_FINITE, decoded.path)
        return Prediction(path=decoded.path, frame=decoded.frame, status=SCORED,
                          probability=prob, logit=logit, threshold=threshold,
                          flagged=label_state(prob, threshold),
                          reason=f"scored anyway despite: {reason}" if reason else "",
                          model_label=info.label, model_sha256=info.weights_sha256,
                          model_id=info.model_id, timings=timings, gate=verdict)

    # -- CAM -----------------------------------------------------------------------------
    def _gradcam(self, x: np.ndarray,
                 on_logit: Callable[[float, np.ndarray], bool] | None = None,
                 ) -> tuple[float, np.ndarray | None]:
        """One forward pass with Grad-CAM hooks on ``layer4[-1]``: the logit, then the map.

        This is the grad-cam package's GradCAM (its hooks, weights and map), driven step by step
        so that ``on_logit(logit, activations)`` can report the logit before the backward pass
        and the map are done: the probability reaches the screen without waiting for the CAM,
        and the CAM costs no second forward pass. ``activations`` is the hooked block's output
        A (the content gate reads it); when ``on_logit`` returns False the map is not computed
        (None). The target is the single logit (evidence for pneumonia).
        """
        loaded = self._require()
        if not self.with_cam:
            raise PneumoViewError("this engine was created without CAM support")
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
        grid = None
        with self._turn(), torch.enable_grad(), torch.inference_mode(False):
            self._threads()
            cam = _LayerGridGradCAM(model=module, target_layers=[module.layer4[-1]])
            try:
                outputs = cam.activations_and_grads(batch)
                logit = float(outputs.reshape(-1)[0].detach().to("cpu", torch.float64))
                go_on = True
                if on_logit is not None:
                    act = cam.activations_and_grads.activations[0]
                    go_on = on_logit(logit, act.to(torch.float32).contiguous().numpy())
                if go_on:
                    module.zero_grad(set_to_none=True)
                    _Logit()(outputs).backward()
                    grid = cam.aggregate_multi_layers(
                        cam.compute_cam_per_layer(batch, [_Logit()], False))
            finally:
                cam.activations_and_grads.release()
                module.zero_grad(set_to_none=True)
        if grid is None:
            return logit, None
        return logit, normalise_cam(np.asarray(grid, dtype=np.float32)[0])

    def cam_from_input(self, x: np.ndarray) -> np.ndarray:
        """Grad-CAM of the logit on ``layer4[-1]`` for one contract output, on the layer grid.

        Returns a float32 map in [0, 1] (7 x 7 for a 224 input), ReLU'd and scaled to its
        maximum; an image with no positive evidence gives all zeros.
        """
        grid = self._gradcam(x)[1]
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

        _logit, grid = self._gradcam(x, report)
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
        """Import grad-cam and run one forward (and CAM) on a blank input, so the user's first
        image does not pay for imports, allocator growth or lazy kernel set-up."""
        loaded = self._require()
        blank = np.full((loaded.info.input_size,) * 2, 0.5, dtype=np.float32)
        self.logits([blank])
        if self.with_cam:
            self.cam_from_input(blank)

    def close(self) -> None:
        """Drop the model (frees GPU memory when on CUDA)."""
        self._loaded = None
        self.info = None
        self.input_gate = None
