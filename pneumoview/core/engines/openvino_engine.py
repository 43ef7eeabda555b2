"""The OpenVINO CPU backend: the verified weights as an OpenVINO graph, compiled for this CPU.

The weights file is read once into memory, its sha256 checked against the metadata and the
same bytes parsed (safetensors, numpy): the graph (:mod:`.openvino_graph`) is built from
exactly what was verified, at every load, so there is no converted model or cache on disk
that could be swapped. Compiling takes about half a second.

Threads follow :mod:`pneumoview.core.threads`' rule like torch's: OpenVINO fixes the count at
compile time, so the backend keeps one compiled model per thread count it has been asked for
(the count changes only when decode workers come and go). Precision is OpenVINO's inference
precision hint; what runs is read back from the compiled model and reported. Importing this
module imports openvino; :func:`openvino_available` is the cheap probe.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from typing import Any

import numpy as np

from pneumoview.core import threads
from pneumoview.core.engines.base import (
    EngineName,
    EngineUnavailable,
    Forward,
    Precision,
)
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.modelinfo import ModelInfo, verify_weights

_OV_PRECISION = {Precision.F32: "f32", Precision.BF16: "bf16"}


def openvino_available() -> bool:
    """True when the ``openvino`` package can be imported (found, without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def _core() -> Any:
    from pneumoview.core.engines.ovimport import import_openvino

    try:
        ov = import_openvino()
    except ImportError as exc:  # a broken install: the loader says so and may fall back
        raise EngineUnavailable(f"the openvino engine cannot be imported ({exc})",
                                option="engine") from exc
    return ov.Core()


def cpu_has_native_bf16(core: Any | None = None) -> bool:
    """True when OpenVINO's CPU plugin reports native bf16 (AMX or AVX512-BF16)."""
    core = _core() if core is None else core
    try:
        caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False
    return "BF16" in [str(c).upper() for c in caps]


def read_verified_state(info: ModelInfo) -> dict[str, np.ndarray]:
    """The weights as numpy arrays, parsed from the very bytes whose sha256 was checked."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = info.weights_path
    if not path.is_file():
        verify_weights(info)  # raises its message for a missing or irregular file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PneumoViewError(f"cannot read the model weights ({exc.strerror or exc})",
                              path) from exc
    if hashlib.sha256(data).hexdigest() != info.weights_sha256:
        raise PneumoViewError("the model weights do not match the sha256 recorded in "
                              "metadata.json (altered or corrupt file); reinstall PneumoView "
                              "or re-export the model", path)
    try:
        return load(data)
    except (SafetensorError, ValueError) as exc:
        raise PneumoViewError(f"cannot read the model weights ({exc})", path) from exc


class OpenVINOBackend:
    """One compiled OpenVINO model of one verified model directory (see the module doc)."""

    engine = EngineName.OPENVINO

    def __init__(self, info: ModelInfo, precision: Precision) -> None:
        from pneumoview.core.engines.openvino_graph import GraphWeightsError, build_resnet18
        from pneumoview.core.inputgate import split_gate_tensors

        self.info = info
        self._core = _core()
        state, gate = split_gate_tensors(read_verified_state(info))
        self.gate_tensors = {k: np.asarray(v, dtype=np.float32) for k, v in gate.items()}
        try:
            self._model = build_resnet18(state)
        except (GraphWeightsError, RuntimeError) as exc:
            raise PneumoViewError(f"the weights do not fit {info.architecture} for the "
                                  f"openvino engine ({str(exc)[:300]})", info.weights_path) \
                from exc
        self.fc_weight = np.asarray(state["fc.weight"], dtype=np.float32).reshape(-1)
        self.fc_bias = float(np.asarray(state["fc.bias"]).reshape(-1)[0])
        self.requested = precision
        self._compiled: dict[int, tuple[Any, Any]] = {}  # threads -> (compiled, request)
        self.compile_ms = 0.0
        self.precision = self._read_back(self._request(threads.torch_threads())[0])

    @property
    def device(self) -> str:
        return "cpu"

    def _request(self, n_threads: int) -> tuple[Any, Any]:
        if n_threads not in self._compiled:
            t0 = time.perf_counter()
            config = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[self.requested],
                      "INFERENCE_NUM_THREADS": int(n_threads), "NUM_STREAMS": 1,
                      "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
            try:
                compiled = self._core.compile_model(self._model, "CPU", config)
            except RuntimeError as exc:
                raise EngineUnavailable(f"OpenVINO cannot compile the model for this CPU "
                                        f"({str(exc)[:300]})", option="engine") from exc
            self._compiled[n_threads] = (compiled, compiled.create_infer_request())
            self.compile_ms += (time.perf_counter() - t0) * 1000
        return self._compiled[n_threads]

    @staticmethod
    def _read_back(compiled: Any) -> Precision:
        """The precision the compiled model really runs at (OpenVINO may lower a hint)."""
        ran = str(compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
        return Precision.BF16 if "bf16" in ran else Precision.F32

    def forward(self, batch: np.ndarray) -> Forward:
        """Logits and A for a contract step-5 batch (N, 1, S, S) float32."""
        _compiled, request = self._request(threads.torch_threads())
        request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        logits = np.array(request.get_output_tensor(0).data, dtype=np.float64).reshape(-1)
        acts = np.array(request.get_output_tensor(1).data, dtype=np.float32)
        return Forward(logits=logits, activations=acts)

    def close(self) -> None:
        self._compiled.clear()
