"""Loading a model into the engine the user asked for (``auto``: :func:`base.choose_engine`).

The metadata is read and checked the same way for every engine (:mod:`modelinfo`); each
backend verifies the weights' sha256 itself before it builds anything from them. ``auto``
never fails for want of OpenVINO: when it cannot be imported or cannot compile here, the
torch engine runs and :attr:`LoadResult.fallback` says why (the panel and report show it).
An explicit ``--engine openvino`` that cannot run is an error.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from pneumoview.core.engines.base import (
    Backend,
    EngineName,
    EngineUnavailable,
    Precision,
    choose_engine,
    choose_precision,
    parse_engine,
    parse_precision,
)

log = logging.getLogger(__name__)


@dataclass
class LoadResult:
    backend: Backend
    fallback: str = ""  # why auto did not take the engine it would have preferred


def no_gpu_possible() -> bool:
    """True on Linux without NVIDIA or AMD (ROCm) GPU device nodes: torch could find no GPU
    there, so ``auto`` need not import torch (seconds) just to learn that. Elsewhere (macOS's
    MPS, Windows) only torch can tell."""
    return (sys.platform.startswith("linux") and not glob.glob("/dev/nvidia[0-9]*")
            and not os.path.exists("/dev/kfd"))


def _device_type(device: str) -> str:
    """'cpu' without importing torch when the preference says cpu (or ``auto`` where no GPU
    can exist); else torch's rule."""
    pref = str(device or "auto").strip().lower()
    if pref == "cpu" or (pref == "auto" and no_gpu_possible()):
        return "cpu"
    from pneumoview.core.model import select_device

    return select_device(pref).type


def load_torch(model_dir: Path | None, device: str) -> Backend:
    from pneumoview.core.engines.torch_engine import TorchBackend
    from pneumoview.core.model import load_model

    return TorchBackend(load_model(model_dir, device))


def load_openvino(model_dir: Path | None, precision: Precision) -> Backend:
    from pneumoview.core.engines.openvino_engine import (
        OpenVINOBackend,
        cpu_has_native_bf16,
    )
    from pneumoview.core.modelinfo import read_model_info

    info = read_model_info(model_dir)
    chosen = choose_precision(precision, cpu_has_native_bf16(), EngineName.OPENVINO)
    return OpenVINOBackend(info, chosen)


def load_backend(model_dir: str | PathLike[str] | None = None, device: str = "auto",
                 engine: str | EngineName = "auto",
                 precision: str | Precision = "auto") -> LoadResult:
    """The backend for this engine/precision/device request (see the module docstring)."""
    from pneumoview.core.engines.openvino_engine import openvino_available

    directory = None if model_dir is None else Path(model_dir)
    asked, prec = parse_engine(engine), parse_precision(precision)
    device_type = _device_type(device)
    if asked is EngineName.OPENVINO and device_type != "cpu":
        raise EngineUnavailable(f"the openvino engine runs on the CPU, not on device "
                                f"{device!r}", option="engine")
    chosen = choose_engine(asked, device_type, openvino_available())
    if chosen is EngineName.TORCH:
        choose_precision(prec, False, EngineName.TORCH)  # refuses bf16 and int8 on torch
        return LoadResult(load_torch(directory, device))
    if asked is EngineName.OPENVINO:
        return LoadResult(load_openvino(directory, prec))
    try:
        return LoadResult(load_openvino(directory, prec))
    except EngineUnavailable as exc:
        if prec in (Precision.BF16, Precision.INT8):  # torch cannot give them either
            raise
        log.warning("openvino engine unavailable, running torch: %s", exc.reason)
        return LoadResult(load_torch(directory, device), fallback=exc.reason)
