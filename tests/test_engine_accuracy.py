"""Accuracy guard: the fast engine (OpenVINO at the precision ``auto`` picks on this CPU: bf16
where it is native, else f32; and at ``int8``, the bundled model's quantised graph) against torch
float32 on the bundled model's validation split.

The split is rebuilt as ``training prepare`` made it (Kermany train + NIH, patient-grouped,
the metadata's seed and fractions), and its size must match what the metadata records. The
guard: AUROC within 0.002 of torch's, and the same flag decision for every image except those
whose probability lies within 0.01 of the threshold.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.ai_support import bundled_trained_model_dir
from tests.support.shared_data import require

if importlib.util.find_spec("openvino") is None:  # not importorskip: see engines.ovimport
    pytest.skip("openvino is not installed", allow_module_level=True)

AUROC_TOLERANCE = 0.002
THRESHOLD_MARGIN = 0.01
BATCH = 32


def _validation_items(info) -> list:  # a ModelInfo
    from training import sources
    from training.splits import assign_splits, group_ids

    root = require("kermany", "train").parents[1]
    require("nih", "labels.csv")
    data = info.raw.get("data", {})
    items = sources.collect([str(root / "kermany" / "train")], [str(root / "nih" / "labels.csv")])
    hashes = [sources.file_sha256(it.path) for it in items]
    fractions = tuple(float(f) for f in data.get("fractions", (0.7, 0.15, 0.15)))
    splits = assign_splits(items, group_ids(items, hashes), fractions,
                           int(data.get("split_seed", 0)))
    val = [it for it, s in zip(items, splits, strict=True) if s == "val"]
    recorded = sum(int(src.get("splits", {}).get("val", {}).get("n", 0))
                   for src in data.get("sources", {}).values())
    if recorded:
        assert len(val) == recorded, "the rebuilt validation split is not the model's"
    return val


def _scores(engine, inputs: list[np.ndarray]) -> np.ndarray:  # an Engine
    out = [engine.probabilities(inputs[i:i + BATCH]) for i in range(0, len(inputs), BATCH)]
    return np.concatenate(out)


def _thresholds(info) -> list[float]:  # a ModelInfo
    """The model's threshold and each population's operating point."""
    points = info.raw.get("operating_points") or {}
    return sorted({float(info.threshold), *(float(p["threshold"]) for p in points.values())})


@pytest.mark.slow
@pytest.mark.shared_data("kermany", "train")
@pytest.mark.shared_data("nih", "labels.csv")
@pytest.mark.parametrize("precision", ["auto", "int8"])
def test_fast_engine_keeps_auroc_and_decisions(monkeypatch: pytest.MonkeyPatch,
                                               precision: str) -> None:
    from pneumoview.core import contract
    from pneumoview.core.inference import Engine
    from training.metrics import auroc

    monkeypatch.setenv("PNEUMOVIEW_TORCH_THREADS", "2")
    model_dir = bundled_trained_model_dir()
    if precision == "int8" and not (model_dir / "int8.xml").is_file():
        pytest.skip("the bundled model has no int8 graph")
    ref = Engine(model_dir, device="cpu", engine="torch", with_cam=False)
    fast = Engine(model_dir, device="cpu", engine="openvino", precision=precision,
                  with_cam=False)
    info = ref.load()
    fast.load()
    items = _validation_items(info)
    inputs = [contract.model_input(contract.load_plain_image(it.path), False,
                                   size=info.input_size) for it in items]
    labels = np.array([it.label for it in items])
    p_ref, p_fast = _scores(ref, inputs), _scores(fast, inputs)
    delta = abs(auroc(labels, p_fast) - auroc(labels, p_ref))
    assert delta <= AUROC_TOLERANCE, (fast.engine_text, delta)
    if precision == "int8":
        assert fast.precision == "int8"
    counts = []
    for threshold in _thresholds(info):
        differ = (p_ref >= threshold) != (p_fast >= threshold)
        near = np.abs(p_ref - threshold) < THRESHOLD_MARGIN
        assert not np.any(differ & ~near), (fast.engine_text, threshold,
                                            np.flatnonzero(differ & ~near))
        counts.append(f"{int(differ.sum())} at {threshold:.4f}")
    print(f"\n{fast.engine_text}: {len(items)} validation images, AUROC delta {delta:.2e}, "
          f"max |dp| {np.abs(p_fast - p_ref).max():.2e}, decisions differing "
          f"{', '.join(counts)} (all within {THRESHOLD_MARGIN} of the threshold)")
