"""The model network and its loader, shared by the app and ``training/``.

A model directory holds three files:

* ``model.safetensors`` - the weights (safetensors: no pickle, so loading cannot run code);
* ``metadata.json`` - architecture, input-contract version, input size, dataset mean/std, the
  calibration temperature, the operating threshold, test metrics and ``weights_sha256``;
* ``MODEL_CARD.md`` - intended use, data, metrics with intervals, known limits.

Reading and checking the metadata, and the model's identity (``weights_sha256`` and
``model_id``), live in the torch-free :mod:`pneumoview.core.modelinfo` (re-exported here). The
loader refuses a directory whose input contract is not one of :data:`contract.CONTRACTS`
(the model would see different pixels than it was trained on; each image is prepared for the
contract version and size the model records), metadata values out of range,
and weights whose sha256 differs from the metadata (an altered or corrupt file). ``torch`` is
imported by this module, which is only imported on the AI paths; :mod:`pneumoview.core` itself
never imports it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pneumoview.core import contract
from pneumoview.core.errors import DeviceUnavailableError, PneumoViewError
from pneumoview.core.modelinfo import (  # noqa: F401 - re-exported: the historical home
    ARCHITECTURE,
    CARD_FILE,
    METADATA_FILE,
    WEIGHTS_FILE,
    ModelInfo,
    calibrated_probability,
    model_id,
    read_model_info,
    sha256_file,
    verify_weights,
)


def build_model() -> torch.nn.Module:
    """ResNet18 with a one-channel first convolution and one output logit (random init)."""
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=1)
    model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def select_device(preference: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU; or an explicit ``cpu``/``cuda[:N]``/``mps``."""
    pref = str(preference).strip().lower() or "auto"
    mps_ok = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_ok:
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(pref)
    except (RuntimeError, ValueError):
        raise PneumoViewError(f"unknown device {preference!r}; use auto, cpu, cuda, cuda:N or "
                              "mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError("CUDA was requested but no CUDA GPU is available to "
                                         "this PyTorch build", device=str(preference))
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"CUDA device {dev.index} does not exist (found "
                                         f"{torch.cuda.device_count()})", device=str(preference))
        return dev
    if dev.type == "mps":
        if not mps_ok:
            raise DeviceUnavailableError("Apple MPS was requested but is not available here",
                                         device=str(preference))
        return dev
    raise PneumoViewError(f"unsupported device {preference!r}; use auto, cpu, cuda[:N] or mps")


@dataclass
class LoadedModel:
    info: ModelInfo
    module: torch.nn.Module
    device: torch.device
    # ``gate.*`` tensors of the weights file (the input gate's heads, numpy), see inputgate
    gate_tensors: dict[str, np.ndarray] = field(default_factory=dict)


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read safetensors weights (never ``torch.load``: no pickle, no code execution)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise PneumoViewError(f"cannot read the model weights ({exc}); reinstall PneumoView or "
                              "re-export the model", path) from exc


def load_model(model_dir: Path | str | PathLike[str] | None = None,
               device: str | torch.device = "auto") -> LoadedModel:
    """Check the metadata and weights, build the network and load it for inference."""
    info = read_model_info(model_dir)
    verify_weights(info)
    dev = select_device(device)
    from pneumoview.core.inputgate import split_gate_tensors

    state, gate = split_gate_tensors(load_state_dict_file(info.weights_path))
    module = build_model()
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PneumoViewError(f"the weights do not fit {ARCHITECTURE} ({str(exc)[:300]})",
                              info.weights_path) from exc
    module = module.to(dev, memory_format=torch.channels_last).eval()
    return LoadedModel(info=info, module=module, device=dev,
                       gate_tensors={k: v.numpy() for k, v in gate.items()})


def prepare_batch(inputs: Sequence[np.ndarray], info: ModelInfo) -> torch.Tensor:
    """Stack contract step-4 outputs (``size`` x ``size`` in [0, 1]) and apply step 5."""
    if len(inputs) == 0:
        raise ValueError("empty batch")
    size = info.input_size
    arrays = []
    for x in inputs:
        arr = np.asarray(x, dtype=np.float32)
        if arr.shape != (size, size):
            raise ValueError(f"model input must be {size}x{size}, got {arr.shape}")
        arrays.append(contract.normalise(arr, info.mean, info.std))
    batch = torch.from_numpy(np.stack(arrays)[:, None])
    return batch.contiguous(memory_format=torch.channels_last)


def predict_logits(model: LoadedModel, batch: torch.Tensor) -> np.ndarray:
    """Raw logits, float64 ``(N,)``."""
    with torch.inference_mode():
        x = batch.to(model.device, dtype=torch.float32, memory_format=torch.channels_last)
        out = model.module(x).reshape(-1)
        return out.detach().to("cpu", torch.float64).numpy()


def last_block_activations(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Activations A (N, 512, h, w) of the ResNet's last block: everything after it (pooled
    features, logit, CAM, input-gate heads) is computed from A."""
    m = module
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    return m.layer4(m.layer3(m.layer2(m.layer1(x))))


def predict_activations(model: LoadedModel,
                        batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass: raw logits float64 ``(N,)`` and the last block's activations A,
    float32 ``(N, 512, h, w)`` (the logit is ``fc`` of A's mean over h, w, as in the network's
    own forward; the input gate reads A too)."""
    with torch.inference_mode():
        x = batch.to(model.device, dtype=torch.float32, memory_format=torch.channels_last)
        act = last_block_activations(model.module, x)
        logits = model.module.fc(act.mean(dim=(2, 3))).reshape(-1)
        return (logits.detach().to("cpu", torch.float64).numpy(),
                act.detach().to("cpu", torch.float32).contiguous().numpy())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_model_dir(out_dir: Path | str | PathLike[str], state_dict: dict[str, torch.Tensor],
                    metadata: dict, card_text: str | None = None) -> Path:
    """Write weights (safetensors), ``metadata.json`` (plus ``weights_sha256``) and the card."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    weights = out / WEIGHTS_FILE
    save_file(tensors, str(weights), metadata={"architecture": ARCHITECTURE})
    weights.chmod(0o644)  # safetensors may create it owner-only; the app must read it anywhere
    meta = dict(metadata)
    meta.setdefault("architecture", ARCHITECTURE)
    meta.setdefault("input_contract", contract.INPUT_CONTRACT)
    meta["weights_sha256"] = sha256_file(weights)
    (out / METADATA_FILE).write_text(json.dumps(_jsonable(meta), indent=2, sort_keys=False)
                                     + "\n", encoding="utf-8")
    if card_text is not None:
        (out / CARD_FILE).write_text(card_text, encoding="utf-8")
    return out
