"""``python -m training quantize``: give a model folder an int8 graph, made ahead of time.

The app offers ``--precision int8`` only for a folder that carries one (it never quantises at
load: NNCF takes minutes and is not one of the app's dependencies). This command:

1. builds the OpenVINO graph the app builds from the sha256-verified weights
   (:func:`pneumoview.core.engines.openvino_graph.build_resnet18`);
2. calibrates NNCF's post-training quantisation (default preset) on ``--calibration`` films of
   the model's own TRAINING split (rebuilt and checked against the metadata as
   ``training oppoints`` does), prepared by the model-input contract exactly as the app
   prepares them (:func:`training.prepare.load_model_input`). The head (pooling and the one
   linear logit) stays float32, so the logit is the exact function of the activations A the
   CAM and the gate read, as in the float32 graph;
3. checks the accuracy guard on the validation split: AUROC within 0.002 of torch float32's,
   and the same flag decision at every threshold the model carries (its ``threshold`` and each
   operating point) for every film whose torch probability is not within 0.01 of it. It
   REFUSES to write when the guard fails;
4. writes ``int8.xml`` + ``int8.bin`` (OpenVINO IR) into the folder and records in
   ``metadata.json`` their sha256s and the weights' (``int8``, digested into the ``model_id``)
   and the guard figures and calibration provenance (``int8_quantisation``); the card is
   regenerated; finally the app's own loader scores the validation films again from the
   written folder and must give the same logits.

    python -m training quantize --model resources/model [--calibration 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumoview.core.errors import PneumoViewError
from training.provenance import CHECKOUT, command_line

log = logging.getLogger("training.quantize")

AUROC_TOLERANCE = 0.002
THRESHOLD_MARGIN = 0.01
BATCH = 32
#: The head stays float32: the logit is then fc(mean(A)) exactly, as the CAM and gate assume.
HEAD_TYPES = ("MatMul", "ReduceMean")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="resources/model", help="model folder to give an int8 "
                   "graph")
    p.add_argument("--calibration", type=int, default=300, metavar="N",
                   help="training-split films NNCF calibrates on (default 300)")
    p.add_argument("--seed", type=int, default=0, help="which training films (default 0)")
    p.add_argument("--threads", type=int, default=2, help="torch and OpenVINO threads")
    p.add_argument("--dry-run", action="store_true", help="quantise and check, write nothing")


class GuardFailed(PneumoViewError):
    """The int8 graph does not keep the accuracy guard: nothing is written."""


# --------------------------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------------------------
def quantise(info: Any, state: dict[str, np.ndarray], inputs: Sequence[np.ndarray]) -> Any:
    """NNCF int8 of the app's float32 graph, calibrated on contract step-4 ``inputs``."""
    import nncf

    from pneumoview.core.engines.base import normalised_batch
    from pneumoview.core.engines.openvino_graph import build_resnet18

    dataset = nncf.Dataset(list(inputs), lambda x: normalised_batch([x], info))
    return nncf.quantize(build_resnet18(state), dataset, subset_size=len(inputs),
                         ignored_scope=nncf.IgnoredScope(types=list(HEAD_TYPES)))


def forward(model: Any, info: Any, inputs: Sequence[np.ndarray],
            threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N,) and pooled A (N, C) of an ``openvino.Model`` on step-4 ``inputs``."""
    from pneumoview.core.engines.base import normalised_batch
    from pneumoview.core.engines.ovimport import import_openvino

    compiled = import_openvino().Core().compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": int(threads), "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    logits, pooled = [], []
    for start in range(0, len(inputs), BATCH):
        request.infer({0: normalised_batch(inputs[start:start + BATCH], info)})
        logits.append(np.array(request.get_output_tensor(0).data, np.float64).reshape(-1))
        pooled.append(np.array(request.get_output_tensor(1).data, np.float32).mean(axis=(2, 3)))
    return np.concatenate(logits), np.concatenate(pooled)


def ir_bytes(model: Any) -> tuple[bytes, bytes]:
    """The model as OpenVINO IR: (xml, bin) bytes (weights as they are, no fp16 squeeze)."""
    from pneumoview.core.engines.ovimport import import_openvino

    ov = import_openvino()
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "int8.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        return xml.read_bytes(), xml.with_suffix(".bin").read_bytes()


# --------------------------------------------------------------------------------------------
# The guard
# --------------------------------------------------------------------------------------------
def model_thresholds(meta: dict) -> dict[str, float]:
    """Every threshold the model applies: its ``threshold`` and each operating point."""
    out = {"threshold": float(meta["threshold"])}
    for pop, point in (meta.get("operating_points") or {}).items():
        out[f"{pop} point"] = float(point["threshold"])
    return out


def check_guard(labels: np.ndarray, p_ref: np.ndarray, p_int8: np.ndarray,
                thresholds: dict[str, float]) -> dict:
    """The guard's figures; ``passed`` is False when the AUROC moves by more than
    :data:`AUROC_TOLERANCE` or a decision differs for a film whose reference probability lies
    :data:`THRESHOLD_MARGIN` or further from a threshold."""
    from training.metrics import auroc

    ref, fast = float(auroc(labels, p_ref)), float(auroc(labels, p_int8))
    out: dict = {"n": int(len(labels)), "positive": int(np.sum(labels)),
                 "auroc_torch_f32": ref, "auroc_int8": fast, "auroc_delta": abs(fast - ref),
                 "auroc_tolerance": AUROC_TOLERANCE, "threshold_margin": THRESHOLD_MARGIN,
                 "max_abs_probability_difference": float(np.abs(p_int8 - p_ref).max()),
                 "decisions": {}}
    passed = out["auroc_delta"] <= AUROC_TOLERANCE
    for name, t in thresholds.items():
        differ = (p_ref >= t) != (p_int8 >= t)
        far = differ & (np.abs(p_ref - t) >= THRESHOLD_MARGIN)
        out["decisions"][name] = {"threshold": t, "differ": int(differ.sum()),
                                  "differ_outside_margin": int(far.sum())}
        passed = passed and not far.any()
    out["passed"] = bool(passed)
    return out


def guard_text(guard: dict) -> str:
    parts = [f"{name} {d['threshold']:.4f}: {d['differ']} differ, {d['differ_outside_margin']} "
             f"outside the margin" for name, d in guard["decisions"].items()]
    return (f"{guard['n']} validation films: AUROC int8 {guard['auroc_int8']:.5f} vs torch f32 "
            f"{guard['auroc_torch_f32']:.5f} (delta {guard['auroc_delta']:.1e}, limit "
            f"{guard['auroc_tolerance']}); max |dp| {guard['max_abs_probability_difference']:.3f}"
            f"; decisions: {'; '.join(parts)}")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    import nncf

    from pneumoview.core.engines.ovimport import import_openvino

    return {"nncf": str(nncf.__version__), "openvino": str(import_openvino().__version__)}


def write_int8(model_dir: Path, xml: bytes, weights: bytes, quantisation: dict) -> dict:
    """Write the IR into ``model_dir`` and record it in ``metadata.json`` (the weights' sha256
    is checked first); returns the new metadata. The card is regenerated when there is one."""
    from pneumoview.core.modelinfo import (
        CARD_FILE,
        INT8_BIN_FILE,
        INT8_XML_FILE,
        METADATA_FILE,
        WEIGHTS_FILE,
        sha256_file,
    )

    meta = json.loads((model_dir / METADATA_FILE).read_text(encoding="utf-8"))
    if sha256_file(model_dir / WEIGHTS_FILE) != meta["weights_sha256"]:
        raise PneumoViewError("the weights differ from the metadata's sha256", model_dir)
    for name, data in ((INT8_BIN_FILE, weights), (INT8_XML_FILE, xml)):
        (model_dir / name).write_bytes(data)
        (model_dir / name).chmod(0o644)
    meta["int8"] = {"xml": INT8_XML_FILE, "bin": INT8_BIN_FILE,
                    "xml_sha256": hashlib.sha256(xml).hexdigest(),
                    "bin_sha256": hashlib.sha256(weights).hexdigest(),
                    "weights_sha256": meta["weights_sha256"]}
    meta["int8_quantisation"] = quantisation
    if isinstance(meta.get("command"), dict) and quantisation.get("command"):
        meta["command"]["quantize"] = quantisation["command"]
    (model_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if (model_dir / CARD_FILE).is_file() and "metrics" in meta and "data" in meta:
        from training.card import model_card

        (model_dir / CARD_FILE).write_text(model_card(meta), encoding="utf-8")
    return meta


def check_written(model_dir: Path, inputs: Sequence[np.ndarray], expected: np.ndarray) -> float:
    """The app's loader on the written folder at ``--precision int8`` gives the same logits."""
    from pneumoview.core.inference import Engine

    engine = Engine(model_dir, device="cpu", engine="openvino", precision="int8",
                    with_cam=False)
    engine.load()
    if engine.precision != "int8":
        raise PneumoViewError(f"the written int8 graph runs as {engine.precision}", model_dir)
    got = np.concatenate([engine.logits(list(inputs[i:i + BATCH]))
                          for i in range(0, len(inputs), BATCH)])
    engine.close()
    diff = float(np.abs(got - expected).max())
    if diff > 1e-3:
        raise PneumoViewError(f"the app's int8 load differs from the quantised graph by {diff}",
                              model_dir)
    return diff


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------
@dataclass
class Films:
    calibration: list[str]
    validation: list[str]
    labels: np.ndarray
    sources: dict[str, int]


def choose_films(meta: dict, n: int, seed: int) -> Films:
    """``n`` training-split films (seeded) and every validation film, from the model's own
    split, rebuilt and checked against its metadata."""
    from training.pointscmd import rebuild_split

    films = rebuild_split(meta)
    train = sorted((f for f in films if f.split == "train"), key=lambda f: f.path)
    if n < 1 or n > len(train):
        raise PneumoViewError(f"--calibration must be 1 to {len(train)} (the training split)")
    picked = [train[i] for i in sorted(np.random.default_rng(seed).choice(len(train), n,
                                                                         replace=False))]
    val = [f for f in films if f.split == "val"]
    counts: dict[str, int] = {}
    for f in picked:
        counts[f.source] = counts.get(f.source, 0) + 1
    return Films([f.path for f in picked], [f.path for f in val],
                 np.asarray([f.label for f in val], np.int64), counts)


def load_inputs(info: Any, paths: Sequence[str]) -> list[np.ndarray]:
    from training.prepare import load_model_input

    return [load_model_input(p, info.input_size, info.input_contract) for p in paths]


def torch_logits(model_dir: Path, inputs: Sequence[np.ndarray]) -> np.ndarray:
    from training import modelio
    from training.evaluate import score_arrays

    loaded = modelio.load(model_dir, "cpu")
    return score_arrays(loaded, lambda i: inputs[i], len(inputs), BATCH)


def paths_digest(paths: Sequence[str]) -> str:
    rel = sorted(Path(p).resolve().relative_to(CHECKOUT.parent).as_posix()
                 if Path(p).resolve().is_relative_to(CHECKOUT.parent) else Path(p).name
                 for p in paths)
    return hashlib.sha256("\n".join(rel).encode()).hexdigest()


def _timed(label: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    log.info("%s: %.1f s", label, time.perf_counter() - t0)
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from pneumoview.core.engines.openvino_engine import read_verified_state
    from pneumoview.core.inputgate import split_gate_tensors
    from pneumoview.core.modelinfo import calibrated_probability, read_model_info

    torch.set_num_threads(max(1, args.threads))
    model_dir = Path(args.model)
    info = read_model_info(model_dir)
    state, _gate = split_gate_tensors(read_verified_state(info))
    films = _timed("split rebuilt", lambda: choose_films(info.raw, args.calibration, args.seed))
    calib = _timed("calibration films read", lambda: load_inputs(info, films.calibration))
    val = _timed("validation films read", lambda: load_inputs(info, films.validation))
    t0 = time.perf_counter()
    model = quantise(info, state, calib)
    quantise_s = time.perf_counter() - t0
    logits8, _pooled = _timed("int8 scored", lambda: forward(model, info, val, args.threads))
    ref = _timed("torch f32 scored", lambda: torch_logits(model_dir, val))
    guard = check_guard(films.labels, calibrated_probability(ref, info.temperature),
                        calibrated_probability(logits8, info.temperature),
                        model_thresholds(info.raw))
    guard["max_abs_logit_difference"] = float(np.abs(logits8 - ref).max())
    print(guard_text(guard))
    if not guard["passed"]:
        raise GuardFailed("the int8 graph fails the accuracy guard; nothing written: "
                          + guard_text(guard))
    if args.dry_run:
        return 0
    xml, weights = ir_bytes(model)
    record = {"method": "NNCF post-training quantisation, default preset; head (pooling, "
                        "logit) float32", "ignored_types": list(HEAD_TYPES),
              "calibration": {"n": len(calib), "split": "train", "seed": args.seed,
                              "sources": films.sources,
                              "films_sha256": paths_digest(films.calibration)},
              "guard": guard, "quantise_s": round(quantise_s, 1), "versions": versions(),
              "command": command_line(sys.argv[1:]) if sys.argv[1:2] == ["quantize"]
              else f"python -m training quantize --model {args.model}"}
    write_int8(model_dir, xml, weights, record)
    diff = check_written(model_dir, val, logits8)
    print(f"-> {model_dir}/int8.xml, int8.bin ({len(weights) / 2**20:.1f} MiB), metadata.json "
          f"(app's int8 load reproduces the logits within {diff:.1e})")
    return 0
