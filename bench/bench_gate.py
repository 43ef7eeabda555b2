"""Benchmark: what the content gate adds to a score (goal: at most 10 %).

A score here is what the engine does for one decoded 1024 x 1024 film: the model-input contract
(steps 1-4) and one forward pass. The gate's extra work, on the same film, is its rule statistics
on the model input, the gate features from the activations, the heads and the atypicality
(:meth:`InputGate.judge`); its forward pass is the score's own. Both are timed in this run, on
the same films, and printed as a ratio (medians of repeated runs).

    python -m bench.bench_gate [--model DIR] [--n 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

from bench._common import check_load, median_time  # noqa: E402


def films(n: int) -> list[np.ndarray]:
    """``n`` different 1024 x 1024 films (NIH images upscaled when available, else noise-free
    synthetic structure)."""
    from PIL import Image

    paths = sorted((DATA / "nih" / "images").glob("*.png"))[:n]
    out = []
    for p in paths:
        with Image.open(p) as img:
            out.append(np.asarray(img.convert("L").resize((1024, 1024)), np.float32))
    rng = np.random.default_rng(0)
    while len(out) < n:
        out.append(np.cumsum(np.cumsum(rng.normal(size=(1024, 1024)), 0), 1).astype(np.float32))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    from pneumoview.core import contract
    from pneumoview.core.inputgate import InputGate
    from pneumoview.core.model import load_model, predict_activations, prepare_batch

    torch.set_num_threads(args.threads)
    check_load()
    loaded = load_model(args.model, "cpu")
    gate = InputGate.from_model(loaded.info.raw, loaded.gate_tensors)
    if gate is None:
        print("the model has no input gate", file=sys.stderr)
        return 2
    images = films(args.n)
    size = loaded.info.input_size
    inputs = [contract.model_input(g, False, size) for g in images]
    acts = [predict_activations(loaded, prepare_batch([x], loaded.info))[1][0] for x in inputs]

    def score() -> None:
        for g in images:
            x = contract.model_input(g, False, size)
            predict_activations(loaded, prepare_batch([x], loaded.info))

    def judge() -> None:
        for g, x, a in zip(images, inputs, acts, strict=True):
            gate.judge(g.shape, x, a)

    t_score = median_time(score, repeat=5) / len(images)
    t_gate = median_time(judge, repeat=5) / len(images)
    print(f"score (contract + forward): {1000 * t_score:7.2f} ms per film")
    print(f"gate (rules + heads + atypicality): {1000 * t_gate:7.2f} ms per film")
    print(f"gate / score = {t_gate / t_score:.3f} (goal <= 0.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
