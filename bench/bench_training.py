"""Training throughput: the real data pipeline + model step vs the model step alone.

    python -m bench.bench_training [--data PREPARED_CACHE] [--image-size 224]
        [--batch-size 32] [--steps 8] [--threads 2] [--amp]

Both rates are measured in the same process, alternating, on the same model and optimiser
(AdamW, channels_last, BCEWithLogits): (a) model-only forward+backward+step on random tensors,
(b) the training loop's path (memmap cache -> DataLoader -> batched affine/crop augmentation ->
normalise -> the same step). The ratio b/a shows whether the data pipeline is the bottleneck
(target: at least 0.90). Without --data a synthetic uint8 cache is built in a temporary folder
(the data path's cost does not depend on the pixel values).
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--amp", action="store_true")
    args = p.parse_args()

    import torch

    from pneumoview.core.model import build_model
    from training.data import Augment, CachedDataset, EpochSampler, read_prepared

    torch.set_num_threads(args.threads)
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
    model = build_model().to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    crit = torch.nn.BCEWithLogitsLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp):
            out = model(x).reshape(-1)
        loss = crit(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rx = torch.randn(args.batch_size, 1, args.image_size, args.image_size).contiguous(
        memory_format=torch.channels_last)
    ry = torch.randint(0, 2, (args.batch_size,)).float()
    it = iter(loader)

    def data_step() -> None:
        nonlocal it
        try:
            x, y, _ = next(it)
        except StopIteration:
            it = iter(loader)
            x, y, _ = next(it)
        x = ((aug(x) - mean) / std).contiguous(memory_format=torch.channels_last)
        step(x, y)

    for _ in range(args.warmup):
        step(rx, ry)
        data_step()
    t_model = t_data = 0.0
    for _ in range(args.steps):  # alternate so that load changes hit both equally
        t0 = time.perf_counter()
        step(rx, ry)
        t_model += time.perf_counter() - t0
        t0 = time.perf_counter()
        data_step()
        t_data += time.perf_counter() - t0
    n = args.steps * args.batch_size
    model_rate, train_rate = n / t_model, n / t_data
    print(f"image size {args.image_size}, batch {args.batch_size}, threads {args.threads}, "
          f"workers {args.workers}, amp {args.amp}, {args.steps} steps each")
    print(f"model-only forward+backward+step : {model_rate:7.2f} img/s")
    print(f"training loop with data pipeline : {train_rate:7.2f} img/s")
    print(f"ratio (target >= 0.90)           : {train_rate / model_rate:7.3f}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
