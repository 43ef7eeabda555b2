"""Training throughput: the real data pipeline + model step vs the model step alone.

    python -m bench.bench_training [--data PREPARED_CACHE] [--image-size 224]
        [--batch-size 32] [--steps 8] [--threads 2] [--amp] [--variants fp32,fp32-cl,bf16-cl]

Both rates are measured in the same process, alternating, on the same model and optimiser
(AdamW, channels_last, BCEWithLogits): (a) model-only forward+backward+step on random tensors,
(b) the training loop's path (memmap cache -> DataLoader -> batched affine/crop augmentation ->
normalise -> the same step). The ratio b/a shows whether the data pipeline is the bottleneck
(target: at least 0.90). ``--variants`` also times model-only steps of other set-ups in the
same interleaved rounds (NCHW vs channels_last, bf16 autocast, torch.compile, a frozen stem or
first block), ratios against the first one. Without --data a synthetic uint8 cache is built in
a temporary folder (the data path's cost does not depend on the pixel values).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import check_load


def synthetic_cache(root: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    arr = np.lib.format.open_memmap(root / "images_train.npy", mode="w+", dtype=np.uint8,
                                    shape=(n, size, size))
    arr[:] = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    arr.flush()
    with open(root / "train.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["row", "source", "path", "label", "patient_id", "group"])
        for i in range(n):
            w.writerow([i, "synthetic", f"img{i}", i % 2, f"p{i}", i])
    (root / "prepared.json").write_text(json.dumps({"image_size": size, "mean": 0.5,
                                                    "std": 0.25}))
    return root


VARIANTS = {
    # name: (channels_last, bf16 autocast, torch.compile, frozen modules)
    "fp32": (False, False, False, "none"),
    "fp32-cl": (True, False, False, "none"),
    "bf16-cl": (True, True, False, "none"),
    "fp32-cl-compile": (True, False, True, "none"),
    "fp32-cl-freeze-stem": (True, False, False, "stem"),
    "fp32-cl-freeze-layer1": (True, False, False, "layer1"),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--amp", action="store_true", help="bf16 in the data-path comparison")
    p.add_argument("--variants", default="fp32,fp32-cl,bf16-cl",
                   help=f"model-only variants to compare (of {', '.join(VARIANTS)})")
    args = p.parse_args()

    import torch

    from pneumoview.core.model import build_model
    from training.data import Augment, CachedDataset, EpochSampler, read_prepared
    from training.precision import choose
    from training.train import freeze, train_mode

    torch.set_num_threads(args.threads)
    check_load()
    auto = choose("auto", torch.device("cpu"))
    print(f"precision auto on this CPU: {auto.dtype} ({auto.reason})")
    tmp = None
    data = args.data
    if data is None:
        tmp = tempfile.TemporaryDirectory()
        data = str(synthetic_cache(Path(tmp.name), args.batch_size * (args.steps + args.warmup)
                                   * 2, args.image_size))
    prep = read_prepared(data)
    mean, std = float(prep["mean"]), float(prep["std"])
    ds = CachedDataset(data, "train", args.image_size)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers,
                                         sampler=EpochSampler(len(ds), 0), drop_last=True)
    aug = Augment()
    crit = torch.nn.BCEWithLogitsLoss()

    def make(name: str):  # noqa: ANN202
        cl, bf16, comp, frz = VARIANTS[name]
        fmt = torch.channels_last if cl else torch.contiguous_format
        model = build_model().to(memory_format=fmt)
        frozen = freeze(model, frz)
        train_mode(model, frozen)
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
        run = torch.compile(model) if comp else model

        def step(x: torch.Tensor, y: torch.Tensor) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = run(x.contiguous(memory_format=fmt)).reshape(-1)
            loss = crit(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    rx = torch.randn(args.batch_size, 1, args.image_size, args.image_size)
    ry = torch.randint(0, 2, (args.batch_size,)).float()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    steps = {n: make(n) for n in names}
    base_step = make("bf16-cl" if args.amp else "fp32-cl")
    it = iter(loader)

    def data_step() -> None:
        nonlocal it
        try:
            x, y, _ = next(it)
        except StopIteration:
            it = iter(loader)
            x, y, _ = next(it)
        base_step(((aug(x) - mean) / std), y)

    t_compile = {}
    for n in names:  # warm-up (and compilation) outside the timed rounds
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            steps[n](rx, ry)
        t_compile[n] = time.perf_counter() - t0
    for _ in range(args.warmup):
        base_step(rx, ry)
        data_step()
    times = dict.fromkeys(names, 0.0)
    t_model = t_data = 0.0
    for _ in range(args.steps):  # interleaved so that load changes hit every variant equally
        for n in names:
            t0 = time.perf_counter()
            steps[n](rx, ry)
            times[n] += time.perf_counter() - t0
        t0 = time.perf_counter()
        base_step(rx, ry)
        t_model += time.perf_counter() - t0
        t0 = time.perf_counter()
        data_step()
        t_data += time.perf_counter() - t0
    n_img = args.steps * args.batch_size
    print(f"image size {args.image_size}, batch {args.batch_size}, threads {args.threads}, "
          f"workers {args.workers}, {args.steps} steps each, interleaved")
    ref = n_img / times[names[0]]
    print(f"{'variant':24s} {'img/s':>8s} {'ratio':>7s}  warm-up s")
    for n in names:
        rate = n_img / times[n]
        print(f"{n:24s} {rate:8.2f} {rate / ref:7.2f}  {t_compile[n]:8.1f}")
    model_rate, train_rate = n_img / t_model, n_img / t_data
    kind = "bf16-cl" if args.amp else "fp32-cl"
    print(f"data path ({kind}): model-only {model_rate:.2f} img/s, training loop with data "
          f"pipeline {train_rate:.2f} img/s, ratio {train_rate / model_rate:.3f} "
          "(target >= 0.90)")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
