"""What every inference backend provides, and the rule that picks one.

A backend runs the network up to the ResNet's last block and returns its activations A
(N, 512, h, w) with the logit (PLAN "Model format"): everything after A - the pooled features,
the closed-form CAM (:func:`pneumoview.core.cam.linear_cam`), the input gate's heads and the
atypicality - is numpy on A, so it is the same code whichever backend ran. Backends take the
contract's step-5 output as a float32 numpy batch (N, 1, S, S) (:func:`normalised_batch`), so
no backend's tensor type leaks into the callers.

Engines: ``torch`` (today's eager float32; CUDA or MPS when present) and ``openvino`` (CPU,
float32, bfloat16, or int8 from the model folder's own quantised graph). ``auto`` keeps a GPU
on torch, takes OpenVINO on the CPU when it imports, and torch on the CPU otherwise
(:func:`choose_engine`). Precision ``auto`` is bfloat16 only where the CPU computes it
natively (AMX or AVX512-BF16): elsewhere OpenVINO would emulate it or fall back to float32, so
auto means float32 there. ``int8`` is never chosen by auto: it is an explicit choice, and only
for a model folder that carries an int8 graph made ahead of time (``python -m training
quantize``). Nothing here imports torch or openvino.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pneumoview.core import contract
from pneumoview.core.errors import PneumoViewError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pneumoview.core.modelinfo import ModelInfo


class EngineName(str, enum.Enum):
    AUTO = "auto"
    TORCH = "torch"
    OPENVINO = "openvino"


class Precision(str, enum.Enum):
    AUTO = "auto"
    BF16 = "bf16"
    F32 = "f32"
    INT8 = "int8"


ENGINE_CHOICES = tuple(e.value for e in EngineName)
PRECISION_CHOICES = tuple(p.value for p in Precision)


class EngineUnavailable(PneumoViewError):
    """The engine or precision asked for cannot run here (not installed, unsupported CPU).
    ``option`` names the choice to change ("engine" or "precision"; "" when neither would
    help), so each front end can say how in its own terms."""

    def __init__(self, reason: str, *, option: str = "") -> None:
        super().__init__(reason)
        self.option = option


def parse_engine(value: str | EngineName | None) -> EngineName:
    """``auto``/``torch``/``openvino`` (case-insensitive; empty means auto)."""
    text = (value.value if isinstance(value, EngineName) else str(value or "")).strip().lower()
    try:
        return EngineName(text or "auto")
    except ValueError:
        raise PneumoViewError(f"unknown engine {value!r}; use one of "
                              f"{', '.join(ENGINE_CHOICES)}") from None


def parse_precision(value: str | Precision | None) -> Precision:
    """``auto``/``bf16``/``f32``/``int8`` (case-insensitive; empty means auto; fp32/float32 =
    f32)."""
    text = (value.value if isinstance(value, Precision) else str(value or "")).strip().lower()
    text = {"fp32": "f32", "float32": "f32", "bfloat16": "bf16"}.get(text, text)
    try:
        return Precision(text or "auto")
    except ValueError:
        raise PneumoViewError(f"unknown precision {value!r}; use one of "
                              f"{', '.join(PRECISION_CHOICES)}") from None


def choose_engine(requested: EngineName, device_type: str, openvino_ok: bool) -> EngineName:
    """The auto rule: torch on a GPU, OpenVINO on the CPU when it imports, else torch.

    ``device_type`` is what the device preference resolves to ('cpu', 'cuda', 'mps');
    an explicit engine is returned as it is (the loader refuses what cannot run).
    """
    if requested is not EngineName.AUTO:
        return requested
    if device_type != "cpu":
        return EngineName.TORCH
    return EngineName.OPENVINO if openvino_ok else EngineName.TORCH


def choose_precision(requested: Precision, native_bf16: bool, engine: EngineName) -> Precision:
    """auto: bf16 where the CPU has it natively (OpenVINO only), else f32 (never int8); bf16
    on a CPU without it, or bf16 or int8 on the torch engine, is refused rather than silently
    run as f32. Whether the model has an int8 graph is the OpenVINO backend's check."""
    if requested is Precision.AUTO:
        return Precision.BF16 if engine is EngineName.OPENVINO and native_bf16 else Precision.F32
    if requested is Precision.INT8 and engine is not EngineName.OPENVINO:
        raise EngineUnavailable("int8 runs on the openvino engine only (the model folder's "
                                "quantised graph); the torch engine runs f32",
                                option="precision")
    if requested is Precision.BF16:
        if engine is not EngineName.OPENVINO:
            raise EngineUnavailable("bf16 runs on the openvino engine only; the torch engine "
                                    "runs f32", option="precision")
        if not native_bf16:
            raise EngineUnavailable("this CPU has no native bf16 (AMX or AVX512-BF16), so "
                                    "bf16 would be emulated or run as f32", option="precision")
    return requested


@dataclass(frozen=True)
class Forward:
    """One forward pass: raw logits float64 (N,) and the last block's A float32 (N, C, h, w)."""

    logits: np.ndarray
    activations: np.ndarray

    @property
    def pooled(self) -> np.ndarray:
        """The features the logit and the gate heads read: A's mean over h, w (N, C)."""
        return self.activations.mean(axis=(2, 3))


class Backend(Protocol):
    """A loaded network of one verified model; used from one thread."""

    engine: EngineName
    precision: Precision  # what runs (read back from the runtime where it can tell)
    info: ModelInfo
    gate_tensors: dict[str, np.ndarray]
    fc_weight: np.ndarray  # (C,) float32: the logit's weights over A's channels
    fc_bias: float

    @property
    def device(self) -> str: ...

    def forward(self, batch: np.ndarray) -> Forward: ...

    def close(self) -> None: ...


def describe(backend: Any) -> str:
    """'openvino f32 on cpu': the words the panel, the report and the self-test use."""
    return f"{backend.engine.value} {backend.precision.value} on {backend.device}"


def normalised_batch(inputs: Sequence[np.ndarray], info: ModelInfo) -> np.ndarray:
    """Stack contract step-4 outputs (``size`` x ``size`` in [0, 1]) and apply step 5:
    float32 (N, 1, size, size), C-contiguous."""
    if len(inputs) == 0:
        raise ValueError("empty batch")
    size = info.input_size
    out = np.empty((len(inputs), 1, size, size), dtype=np.float32)
    for i, x in enumerate(inputs):
        arr = np.asarray(x, dtype=np.float32)
        if arr.shape != (size, size):
            raise ValueError(f"model input must be {size}x{size}, got {arr.shape}")
        out[i, 0] = contract.normalise(arr, info.mean, info.std)
    return out
