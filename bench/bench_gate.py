"""Benchmark: what the content gate adds to a score, in the viewer and in the batch (goal: at
most 10 %).

Both sides of each ratio run in this process, on the same films, alternately:

* **viewer**: ``Engine.score_with_cam`` (contract, the forward pass and the closed-form CAM
  from its activations) with the model's gate, against the same engine with its gate
  taken out (``engine.input_gate = None``, which is how a model without a gate runs);
* **batch**: what the batch's model process does for a batch of ``--batch`` ready inputs
  (``Engine.gated_logits`` with the content statistics the decode workers compute, then the
  rules and heads), plus the workers' extra work (``content_statistics`` of each input),
  against ``Engine.logits`` on the same inputs;
* **components**: the gate's own work per film (rules, features, heads, atypicality).

Times are medians of repeated runs, as wall time and as process CPU time (with one torch
thread by default the CPU time is what a quiet machine would show, so the ratio is meaningful
on a busy one too).

    python -m bench.bench_gate [--model DIR] [--engine auto] [--n 8] [--batch 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

from bench._common import check_load  # noqa: E402


def films(n: int) -> list[np.ndarray]:
    """``n`` different 1024 x 1024 films (NIH images upscaled when available, else smooth
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


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median wall s, median process CPU s) of ``fn``."""
    wall, cpu = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def paired(with_gate: Callable[[], object], without: Callable[[], object],
           repeat: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Alternate the two so that machine noise hits both alike; one warm-up each."""
    with_gate(), without()
    a, b = [], []
    for _ in range(repeat):
        a.append(timed(with_gate, 1))
        b.append(timed(without, 1))
    med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
    return (med(a, 0), med(a, 1)), (med(b, 0), med(b, 1))


class _Decoded:
    """What Engine.score_with_cam reads of a decoded image (a DX chest film's tags)."""

    def __init__(self, values: np.ndarray, i: int) -> None:
        self.values = values
        self.invert = False
        self.path = f"bench{i}.dcm"
        self.frame = 0
        self.n_frames = 1
        self.header = {"Modality": "DX", "BodyPartExamined": "CHEST", "ViewPosition": "PA"}

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.values.shape[0]), int(self.values.shape[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None)
    ap.add_argument("--engine", default="auto", help="auto, torch or openvino")
    ap.add_argument("--n", type=int, default=8, help="films")
    ap.add_argument("--batch", type=int, default=16, help="batch size of the batch side")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import os

    os.environ["PNEUMOVIEW_TORCH_THREADS"] = str(args.threads)
    import torch

    from pneumoview.core import contract
    from pneumoview.core.inference import Engine
    from pneumoview.core.inputgate import content_statistics

    torch.set_num_threads(args.threads)
    check_load()
    engine = Engine(args.model, device="cpu", engine=args.engine)
    engine.load()
    gate = engine.input_gate
    if gate is None:
        print("the model has no input gate", file=sys.stderr)
        return 2
    images = films(args.n)
    decoded = [_Decoded(g, i) for i, g in enumerate(images)]
    print(f"model {engine.info.label} ({engine.engine_text}); "
          f"gate {engine.info.raw['gate']['format']}; {args.n} films 1024 x 1024; "
          f"torch threads {args.threads}")

    # -- viewer ------------------------------------------------------------------------------
    def viewer() -> None:
        for d in decoded:
            engine.score_with_cam(d, force=True)

    def viewer_gated() -> None:
        engine.input_gate = gate
        viewer()

    def viewer_plain() -> None:
        engine.input_gate = None
        viewer()

    g, p = paired(viewer_gated, viewer_plain, args.repeat)
    engine.input_gate = gate
    n = len(decoded)
    rows = [("viewer: score + CAM (per film)", tuple(t / n for t in g), tuple(t / n for t in p))]

    # -- batch -------------------------------------------------------------------------------
    size, version = engine.info.input_size, engine.info.input_contract
    inputs = [contract.model_input(x, False, size, version) for x in images]
    inputs = (inputs * (1 + args.batch // len(inputs)))[:args.batch]
    shapes = [(1024, 1024)] * len(inputs)

    def batch_gated() -> None:
        stats = [content_statistics(x) for x in inputs]  # the decode workers' share
        _logits, verdicts = engine.gated_logits(inputs, shapes, stats)
        for s, st in zip(shapes, stats, strict=True):
            gate.pre_check_statistics(s, st)

    def batch_plain() -> None:
        engine.logits(inputs)

    bg, bp = paired(batch_gated, batch_plain, args.repeat)
    rows.append((f"batch: model process, batch of {len(inputs)} (per film)",
                 tuple(t / len(inputs) for t in bg), tuple(t / len(inputs) for t in bp)))

    # -- components --------------------------------------------------------------------------
    acts = engine.forward(inputs[:1]).activations
    x0 = inputs[0]
    comp = {
        "rules (content statistics)": lambda: content_statistics(x0),
        "features (pooled + 3x3 grid)": lambda: gate.features(acts),
        "judge (rules + heads + atypicality)": lambda: gate.judge_statistics((1024, 1024),
                                                             content_statistics(x0),
                                                             gate.features(acts)[0]),
    }
    print()
    print("| path | with gate (ms, wall / CPU) | without (ms, wall / CPU) | "
          "gate cost (wall / CPU) |")
    print("|---|---|---|---|")
    for name, (gw, gc), (pw, pc) in rows:
        print(f"| {name} | {1000 * gw:.1f} / {1000 * gc:.1f} | {1000 * pw:.1f} / "
              f"{1000 * pc:.1f} | {100 * (gw - pw) / pw:+.1f} % / {100 * (gc - pc) / pc:+.1f} %"
              " |")
    print()
    per_film_plain = rows[1][2][1]
    for name, fn in comp.items():
        _w, c = timed(lambda fn=fn: [fn() for _ in range(20)], args.repeat)
        print(f"- {name}: {1000 * c / 20:.2f} ms CPU per film "
              f"({100 * c / 20 / per_film_plain:.1f} % of a batch score)")
    print("goal: gate cost <= 10 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
