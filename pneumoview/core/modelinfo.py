"""A model folder's metadata and identity, without torch (the batch and the viewer need them
before, or instead of, loading the network).

A model folder holds ``model.safetensors`` (weights), ``metadata.json`` and ``MODEL_CARD.md``,
and may hold an int8 graph made ahead of time by ``python -m training quantize``
(``int8.xml`` + ``int8.bin``, OpenVINO IR), whose sha256s the metadata's ``int8`` field records
(:func:`int8_graph`; the backend checks them before it compiles those very bytes).
Two digests identify a model:

* ``weights_sha256`` (reported as ``model_sha256``): the weights file's sha256, recorded in the
  metadata and checked before the weights are used;
* :func:`model_id`: a digest of the weights' sha256 **and every behavioural metadata field**:
  everything that changes a result (input contract and size, mean/std, calibration temperature,
  threshold, operating points, gate and atypicality parameters, conversions...). Editing
  ``metadata.json`` leaves the weights' hash as it was but changes the ``model_id``, so a report,
  a site profile or a saved threshold made with one calibration is never mixed with another.

Which keys are behavioural is decided by an explicit allow-list of the *descriptive* ones
(:data:`DESCRIPTIVE_KEYS`: name, version, metrics, provenance...); every other key, known
(:data:`BEHAVIOURAL_KEYS`) or not, is digested, so a field added later changes the identity
until someone deliberately lists it as descriptive. A test fails when a key the project writes
is in neither list.

Every behavioural value is range-checked on reading (:func:`read_model_info`): a tampered file
cannot ask for a 4096 px input (24 GiB), a mean/std that turns every input into NaN, or a
temperature of 1e-300. Files are read only when they are regular and small
(:func:`paths.read_small_file`), so a FIFO or a link to ``/dev/zero`` cannot block the loader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from pneumoview.core import contract
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.paths import read_small_file

log = logging.getLogger(__name__)

ARCHITECTURE = "resnet18-1ch-1logit"
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"
CARD_FILE = "MODEL_CARD.md"
INT8_XML_FILE = "int8.xml"
INT8_BIN_FILE = "int8.bin"
#: The int8 IR's topology (xml, ~100 KiB) and weights (bin, ~12 MB) are read whole, checked
#: and compiled from memory; anything far larger is not this graph.
MAX_INT8_XML_BYTES = 16 * 2**20
MAX_INT8_BIN_BYTES = 256 * 2**20
#: metadata.json is a few KiB (the bundled one with its metrics: 20 KiB).
MAX_METADATA_BYTES = 4 * 2**20

REQUIRED_KEYS = ("architecture", "input_contract", "input_size", "mean", "std", "temperature",
                 "threshold", "weights_sha256")

#: Keys that change what the model outputs or how the output is read (all digested into the
#: model_id). Later features add theirs here: the digest covers unknown keys anyway.
BEHAVIOURAL_KEYS = frozenset({
    *REQUIRED_KEYS,
    "operating_points",  # population thresholds (adult / paediatric)
    "gate",  # validity-gate heads: class names, thresholds
    "atypicality",  # out-of-distribution score parameters
    "conversions",  # e.g. input or output conversions a backend applies
    "int8",  # the int8 graph's files and sha256s: what runs at --precision int8
})

#: Keys that only describe the model (shown, never used to compute a result): changing them
#: keeps the model_id. Add a key here only if no code path reads it to score, threshold,
#: gate or convert.
DESCRIPTIVE_KEYS = frozenset({
    "name", "version", "target_sensitivity", "threshold_applies_to", "metrics", "data",
    "training", "seed", "command", "init_from", "versions", "git_commit", "created", "note",
    "description", "license", "authors", "intended_use",
    "gate_training",  # how the input gate was made and its figures (the gate itself: "gate")
    "int8_quantisation",  # how the int8 graph was made, its guard figures (the graph: "int8")
})

#: The scheme of :func:`model_id` (its prefix); a new scheme gets a new prefix.
MODEL_ID_SCHEME = "pvm1"

#: Range of every behavioural number. Inputs are contract step-4 outputs in [0, 1], so their
#: mean lies in [0, 1] and their std in (0, 0.5]; a calibration temperature outside
#: [0.01, 100] is no calibration; input sizes are those the contract is trained and tested at
#: (a 512 px ResNet18 batch of 32 needs ~2 GiB; 4096 px would need 24 GiB).
INPUT_SIZES = {version: (16, 512) for version in contract.CONTRACTS}
MEAN_RANGE = (0.0, 1.0)
STD_RANGE = (1e-3, 1.0)
TEMPERATURE_RANGE = (0.01, 100.0)


@dataclass(frozen=True)
class ModelInfo:
    """The parsed, range-checked ``metadata.json`` of a model directory."""

    name: str
    version: str
    architecture: str
    input_contract: str
    input_size: int
    mean: float
    std: float
    temperature: float
    threshold: float
    target_sensitivity: float
    weights_sha256: str
    metrics: dict = field(hash=False, compare=False)
    directory: Path = field(compare=False)
    raw: dict = field(hash=False, compare=False, repr=False)
    model_id: str = ""

    @property
    def weights_path(self) -> Path:
        return self.directory / WEIGHTS_FILE

    @property
    def short_id(self) -> str:
        """The model_id's first 8 hex digits (for labels)."""
        return self.model_id.split("-", 1)[-1][:8]

    @property
    def label(self) -> str:
        """Shown with every result so a reader knows which model produced it."""
        return (f"{self.name} {self.version} (sha256 {self.weights_sha256[:8]}, "
                f"id {self.short_id})")


# --------------------------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------------------------
def behavioural_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """The metadata fields the model_id digests: every key not on :data:`DESCRIPTIVE_KEYS`
    (``weights_sha256`` is digested separately, normalised)."""
    return {k: v for k, v in raw.items() if k not in DESCRIPTIVE_KEYS and k != "weights_sha256"}


def model_id(weights_sha256: str, raw: dict[str, Any]) -> str:
    """``pvm1-`` + sha256 of the canonical JSON of the weights' sha256 and behavioural fields.

    Canonical JSON: keys sorted, no whitespace (``separators=(",", ":")``), ASCII only, numbers
    as Python writes them (``json.dumps``), of the object
    ``{"scheme": "pvm1", "weights_sha256": <lower-case hex>, "behaviour": {...}}``. The same
    metadata gives the same id on every platform; any change to a behavioural value (even
    ``224`` -> ``224.0``) gives another.
    """
    payload = {"scheme": MODEL_ID_SCHEME, "weights_sha256": str(weights_sha256).lower(),
               "behaviour": behavioural_fields(raw)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return f"{MODEL_ID_SCHEME}-{hashlib.sha256(text.encode('ascii')).hexdigest()}"


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def sha256_file(path: Path | str) -> str:
    """sha256 of a regular file (a FIFO or device is refused, it would block or never end)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        h = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _resolve_dir(model_dir: Path | str | PathLike[str] | None) -> Path:
    if model_dir is None:
        from pneumoview.core.resources import bundled_model_dir

        return bundled_model_dir()
    return Path(model_dir)


def _load_json(directory: Path) -> dict[str, Any]:
    meta_path = directory / METADATA_FILE
    try:
        text = read_small_file(meta_path, MAX_METADATA_BYTES).decode("utf-8")
        raw = json.loads(text)
    except FileNotFoundError:
        raise PneumoViewError(f"no {METADATA_FILE} in the model folder; it is not a PneumoView "
                              "model (export one with `python -m training export`)",
                              directory) from None
    except PneumoViewError as exc:
        raise PneumoViewError(f"model metadata {exc.reason}; re-export the model",
                              meta_path) from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PneumoViewError(f"model metadata is not valid JSON ({str(exc)[:200]}); "
                              "re-export the model", meta_path) from None
    if not isinstance(raw, dict):
        raise PneumoViewError("model metadata is not a JSON object; re-export the model",
                              meta_path)
    return raw


# --------------------------------------------------------------------------------------------
# Range checks
# --------------------------------------------------------------------------------------------
def _number(raw: dict, key: str, path: Path, bounds: tuple[float, float],
            open_low: bool = False) -> float:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PneumoViewError(f"metadata field {key!r} is not a number; re-export the model",
                              path)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise PneumoViewError(f"metadata field {key!r} is not a number; re-export the model",
                              path) from None
    lo, hi = bounds
    low_ok = number > lo if open_low else number >= lo
    if not math.isfinite(number) or not low_ok or number > hi:
        raise PneumoViewError(f"metadata field {key!r} has an invalid value {value!r} (it must "
                              f"be in {'(' if open_low else '['}{lo:g}, {hi:g}]); the metadata "
                              "was damaged or altered: re-export the model", path)
    return number


def _input_size(raw: dict, path: Path) -> int:
    lo, hi = INPUT_SIZES[raw["input_contract"]]
    value = raw["input_size"]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise PneumoViewError(f"metadata input_size {value!r} is invalid: input contract "
                              f"{raw['input_contract']} supports {lo} to {hi} px; re-export "
                              "the model", path)
    return value


def _sha(raw: dict, path: Path) -> str:
    sha = str(raw["weights_sha256"]).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise PneumoViewError("metadata weights_sha256 is not a sha256 digest; re-export the "
                              "model", path)
    return sha


def _check_kind(raw: dict, path: Path) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise PneumoViewError(f"model metadata lacks {', '.join(missing)}; re-export the model",
                              path)
    if raw["architecture"] != ARCHITECTURE:
        raise PneumoViewError(f"unknown model architecture {str(raw['architecture'])[:80]!r} "
                              f"(this version of PneumoView runs {ARCHITECTURE!r})", path)
    if not isinstance(raw["input_contract"], str) or raw["input_contract"] not in INPUT_SIZES:
        raise PneumoViewError(f"the model was trained for input contract "
                              f"{str(raw['input_contract'])[:80]!r} but this PneumoView "
                              f"prepares images as {' or '.join(map(repr, INPUT_SIZES))}; use a "
                              "matching model or version", path)


def _optional_float(raw: dict, key: str) -> float:
    try:
        value = float(raw.get(key, float("nan")))
    except (TypeError, ValueError, OverflowError):
        return float("nan")
    return value


def read_model_info(model_dir: Path | str | PathLike[str] | None = None) -> ModelInfo:
    """Parse and check ``metadata.json`` (``None`` = the bundled model); computes model_id."""
    directory = _resolve_dir(model_dir)
    if not directory.is_dir():
        raise PneumoViewError("model folder not found; reinstall PneumoView or pass a model "
                              "folder that holds metadata.json and model.safetensors", directory)
    raw = _load_json(directory)
    meta_path = directory / METADATA_FILE
    _check_kind(raw, meta_path)
    sha = _sha(raw, meta_path)
    unknown = sorted(set(raw) - BEHAVIOURAL_KEYS - DESCRIPTIVE_KEYS)
    if unknown:
        log.debug("model metadata has keys this version does not know (digested into the "
                  "model_id): %s", ", ".join(k[:40] for k in unknown[:20]))
    metrics = raw.get("metrics") or {}
    from pneumoview.core.oppoints import parse_operating_points

    parse_operating_points(raw.get("operating_points"), meta_path)  # refuse damaged points now
    return ModelInfo(
        name=str(raw.get("name", "pneumoview-model"))[:200],
        version=str(raw.get("version", "0"))[:80],
        architecture=raw["architecture"],
        input_contract=raw["input_contract"],
        input_size=_input_size(raw, meta_path),
        mean=_number(raw, "mean", meta_path, MEAN_RANGE),
        std=_number(raw, "std", meta_path, STD_RANGE),
        temperature=_number(raw, "temperature", meta_path, TEMPERATURE_RANGE),
        threshold=_number(raw, "threshold", meta_path, (0.0, 1.0)),
        target_sensitivity=_optional_float(raw, "target_sensitivity"),
        weights_sha256=sha,
        metrics=metrics if isinstance(metrics, dict) else {},
        directory=directory,
        raw=raw,
        model_id=model_id(sha, raw),
    )


@dataclass(frozen=True)
class Int8Graph:
    """The metadata's record of the model's int8 graph (``python -m training quantize``)."""

    xml_path: Path
    bin_path: Path
    xml_sha256: str
    bin_sha256: str
    from_weights_sha256: str  # the weights it was quantised from


NO_INT8 = ("this model has no int8 graph; make one with python -m training quantize --model "
           "<folder>")


def _hex64(value: Any) -> str:
    text = str(value or "").lower()
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else ""


def int8_graph(info: ModelInfo) -> Int8Graph:
    """The int8 graph the metadata records, or :class:`PneumoViewError` with :data:`NO_INT8`
    when it records none (the files are checked by the backend that reads them)."""
    rec = info.raw.get("int8")
    if not rec:
        raise PneumoViewError(NO_INT8, info.directory)
    meta_path = info.directory / METADATA_FILE
    if not isinstance(rec, dict):
        raise PneumoViewError("metadata field 'int8' is not an object; run python -m training "
                              "quantize again", meta_path)
    shas = {k: _hex64(rec.get(k)) for k in ("xml_sha256", "bin_sha256", "weights_sha256")}
    if not all(shas.values()):
        raise PneumoViewError("metadata field 'int8' lacks a sha256 of the int8 graph; run "
                              "python -m training quantize again", meta_path)
    if shas["weights_sha256"] != info.weights_sha256:
        raise PneumoViewError("the int8 graph was quantised from other weights than "
                              "model.safetensors; run python -m training quantize again",
                              meta_path)
    return Int8Graph(info.directory / INT8_XML_FILE, info.directory / INT8_BIN_FILE,
                     shas["xml_sha256"], shas["bin_sha256"], shas["weights_sha256"])


def verify_weights(info: ModelInfo) -> None:
    """The weights file must be a regular file matching the sha256 in the metadata."""
    path = info.weights_path
    if not path.is_file():
        raise PneumoViewError(f"no {WEIGHTS_FILE} in the model folder; reinstall PneumoView or "
                              "re-export the model", info.directory)
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise PneumoViewError(f"cannot read the model weights ({exc})", path) from exc
    if digest != info.weights_sha256:
        raise PneumoViewError("the model weights were altered or corrupt (sha256 "
                              f"{digest[:12]}... differs from the metadata's "
                              f"{info.weights_sha256[:12]}...); reinstall PneumoView or "
                              "re-export the model", path)


def calibrated_probability(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled sigmoid ``1 / (1 + exp(-logit / T))``, numerically stable."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out
