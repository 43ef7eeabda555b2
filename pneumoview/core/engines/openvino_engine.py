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

Precision ``int8`` runs the model folder's int8 graph instead (``python -m training quantize``
made it ahead of time: NNCF's quantisation of this same graph, checked against the accuracy
guard before it was written). Its xml and bin are read once, their sha256s checked against the
metadata's ``int8`` record, and the model is parsed from those same bytes in memory
(:func:`read_verified_int8`), never from a path that could be swapped after the check. The
weights file is still read and verified: the CAM, the gate and the atypicality use its
``fc`` and gate tensors.
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

#: The inference precision hint; int8's quantised layers run int8 and the rest f32.
_OV_PRECISION = {Precision.F32: "f32", Precision.BF16: "bf16", Precision.INT8: "f32"}
#: The graph's outputs, by index, as :mod:`.openvino_graph` names them.
OUTPUT_NAMES = ("logit", "activations")


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


def _read_checked(path: Any, limit: int, sha256: str, what: str) -> bytes:
    from pneumoview.core.paths import read_small_file

    try:
        data = read_small_file(path, limit)
    except FileNotFoundError:
        raise PneumoViewError(f"the metadata records an int8 graph but its {what} is missing; "
                              "run python -m training quantize again", path) from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PneumoViewError(f"the int8 graph's {what} does not match the sha256 recorded in "
                              "metadata.json (altered or corrupt file); run python -m training "
                              "quantize again or reinstall PneumoView", path)
    return data


def read_verified_int8(info: ModelInfo) -> Any:
    """The model's int8 graph as an ``openvino.Model``, parsed from the very xml and bin bytes
    whose sha256s were checked; EngineUnavailable(option="precision") when it has none."""
    from pneumoview.core.engines.ovimport import import_openvino
    from pneumoview.core.modelinfo import (
        MAX_INT8_BIN_BYTES,
        MAX_INT8_XML_BYTES,
        NO_INT8,
        int8_graph,
    )

    if not info.raw.get("int8"):
        raise EngineUnavailable(NO_INT8.replace("<folder>", str(info.directory)),
                                option="precision")
    graph = int8_graph(info)
    xml = _read_checked(graph.xml_path, MAX_INT8_XML_BYTES, graph.xml_sha256, "xml")
    weights = _read_checked(graph.bin_path, MAX_INT8_BIN_BYTES, graph.bin_sha256, "bin")
    ov = import_openvino()
    try:
        model = ov.Core().read_model(model=xml.decode("utf-8"),
                                     weights=ov.Tensor(np.frombuffer(weights, np.uint8).copy()))
    except (RuntimeError, UnicodeDecodeError) as exc:
        raise PneumoViewError(f"cannot read the int8 graph ({str(exc)[:300]})",
                              graph.xml_path) from exc
    names = tuple(next(iter(out.get_names()), "") for out in model.outputs)
    if names != OUTPUT_NAMES or len(model.inputs) != 1:
        raise PneumoViewError(f"the int8 graph has outputs {names}, not {OUTPUT_NAMES}; run "
                              "python -m training quantize again", graph.xml_path)
    return model


def _runs_int8(compiled: Any) -> bool:
    """True when a layer of the compiled model runs at an 8-bit integer precision."""
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if "runtimePrecision" in rt.keys() and \
                rt["runtimePrecision"].astype(str).lower() in ("i8", "u8"):
            return True
    return False


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
            self._model = (read_verified_int8(info) if precision is Precision.INT8
                           else build_resnet18(state))
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

    def _read_back(self, compiled: Any) -> Precision:
        """The precision the compiled model really runs at (OpenVINO may lower a hint); int8
        when the compiled graph runs quantised layers."""
        if self.requested is Precision.INT8:
            return Precision.INT8 if _runs_int8(compiled) else Precision.F32
        ran = str(compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
        # OpenVINO 2026 answers an element type, "<Type: 'bfloat16'>"; older ones "bf16"
        return Precision.BF16 if "bf16" in ran or "bfloat16" in ran else Precision.F32

    def forward(self, batch: np.ndarray) -> Forward:
        """Logits and A for a contract step-5 batch (N, 1, S, S) float32."""
        _compiled, request = self._request(threads.torch_threads())
        request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        logits = np.array(request.get_output_tensor(0).data, dtype=np.float64).reshape(-1)
        acts = np.array(request.get_output_tensor(1).data, dtype=np.float32)
        return Forward(logits=logits, activations=acts)

    def close(self) -> None:
        self._compiled.clear()
