"""Loading a model folder of any input-contract version for training-side scoring.

The app's loader (:func:`pneumoview.core.model.load_model`) also checks every behavioural
metadata field the app acts on (operating points, gate); intermediate folders of a training run
(a base model, whose validation has one population and so one threshold in older exports) need
not pass those checks to be scored. ``export``, ``evaluate`` and ``cv`` score through the same
pieces the app uses: the sha256 check of the weights, :func:`build_model`, the contract
version's :func:`contract.model_input` and :func:`contract.normalise`, and ``predict_logits``.
Tensors beyond the network (``gate.*`` heads) are kept aside, as the app's loader does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pneumoview.core import contract
from pneumoview.core.errors import PneumoViewError

NETWORK_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.", "fc.")


@dataclass(frozen=True)
class TrainingModelInfo:
    """The metadata fields scoring needs (duck-compatible with ``ModelInfo`` for
    :func:`pneumoview.core.model.prepare_batch`)."""

    name: str
    version: str
    input_contract: str
    input_size: int
    mean: float
    std: float
    temperature: float
    threshold: float
    weights_sha256: str
    directory: Path
    raw: dict = field(hash=False, compare=False, repr=False)

    @property
    def weights_path(self) -> Path:
        return self.directory / "model.safetensors"

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} (sha256 {self.weights_sha256[:8]})"

    @property
    def operating_points(self) -> dict:
        return dict(self.raw.get("operating_points") or {})


@dataclass
class TrainingModel:
    info: TrainingModelInfo
    module: object  # torch.nn.Module
    device: object  # torch.device
    extra_tensors: dict = field(default_factory=dict)


def read_info(model_dir: Path | str | None) -> TrainingModelInfo:
    if model_dir is None:
        from pneumoview.core.resources import bundled_model_dir

        model_dir = bundled_model_dir()
    d = Path(model_dir)
    path = d / "metadata.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PneumoViewError(f"cannot read the model metadata ({exc})", path) from exc
    version = raw.get("input_contract")
    if version not in contract.CONTRACTS:
        raise PneumoViewError(f"unknown input contract {version!r} (known: "
                              f"{', '.join(contract.CONTRACTS)})", path)
    try:
        return TrainingModelInfo(
            str(raw.get("name", "model")), str(raw.get("version", "0")), version,
            int(raw["input_size"]), float(raw["mean"]), float(raw["std"]),
            float(raw["temperature"]), float(raw["threshold"]),
            str(raw["weights_sha256"]).lower(), d, raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise PneumoViewError(f"model metadata lacks or mangles {exc}", path) from exc


def load(model_dir: Path | str | None, device: str = "cpu") -> TrainingModel:
    """Verify and load a model folder (any known contract) for scoring."""
    import torch

    from pneumoview.core.model import build_model, load_state_dict_file, select_device, sha256_file

    info = read_info(model_dir)
    if not info.weights_path.is_file() or sha256_file(info.weights_path) != info.weights_sha256:
        raise PneumoViewError("the weights are missing or differ from the metadata's sha256",
                              info.weights_path)
    state = load_state_dict_file(info.weights_path)
    net = {k: v for k, v in state.items() if k.startswith(NETWORK_PREFIXES)}
    extra = {k: v for k, v in state.items() if k not in net}
    module = build_model()
    module.load_state_dict(net, strict=True)
    dev = select_device(device)
    module = module.to(dev, memory_format=torch.channels_last).eval()
    return TrainingModel(info, module, dev, extra)


def model_input(loaded: TrainingModel, values: np.ndarray, invert: bool) -> np.ndarray:
    """Contract steps 1-4 of the model's own version and size."""
    return contract.model_input(values, invert, loaded.info.input_size,
                                loaded.info.input_contract)
