"""Reduced (DCT-scaled) JPEG decode for the model path against the full decode, in one run.

    python -m bench.bench_reduced_decode [--n 64] [--rounds 3] [--no-batch]

On ``n`` generated 1024x1024 JPEG baseline chest films (NIH images from ../shared, synthetic
without it) it measures, interleaved in each round: the decode stage (``decode_task``: read,
decode, contract steps 1-4; wall and CPU ms per image) with the reduced decode on and off, and
then the batch rate (``run_batch`` with the bundled model) both ways. Ratios are on / off from
the same run; the 1-minute load is printed (other work skews the figures).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))


def make_films(folder: Path, n: int, size: int) -> list[str]:
    import numpy as np

    from bench.bench_batch import _base_images, _write

    folder.mkdir(parents=True, exist_ok=True)
    bases = _base_images(min(n, 50), size)
    rng = np.random.default_rng(1)
    for i in range(n):
        arr = bases[i % len(bases)]
        noisy = np.clip(arr.astype(np.int16) + rng.integers(-2, 3, arr.shape), 0, 255)
        _write(noisy.astype(np.uint8), "jpeg", folder / f"img{i:04d}_jpeg.dcm")
    return sorted(str(p) for p in folder.glob("*.dcm"))


def decode_stage(files: list[str], reduced: bool) -> dict:
    from pneumoview.core.batch.decode import decode_task

    t0, c0 = time.perf_counter(), time.process_time()
    modes = set()
    for path in files:
        out = decode_task({"path": path, "reduced_decode": reduced})
        assert out["status"] == "scored", out["message"]
        modes.add(out["decode_mode"])
    n = len(files)
    return {"wall_ms": (time.perf_counter() - t0) * 1e3 / n,
            "cpu_ms": (time.process_time() - c0) * 1e3 / n, "modes": sorted(modes)}


def batch_rate(folder: Path, reduced: bool, out: Path) -> float:
    from pneumoview.core.batch import BatchOptions, run_batch

    s = run_batch(BatchOptions(folder, out, device="cpu", overwrite=True,
                               reduced_decode=reduced))
    return float(s.rate)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-batch", action="store_true")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="pv-bench-reduced-"))
    files = make_films(scratch / "films", args.n, args.size)
    decode_stage(files[:4], True)  # imports and caches warm
    decode_stage(files[:4], False)
    print(f"{len(files)} JPEG baseline films {args.size}^2, load {os.getloadavg()[0]:.2f}")
    for r in range(args.rounds):
        off, on = decode_stage(files, False), decode_stage(files, True)
        line = (f"round {r + 1}: decode stage off {off['wall_ms']:.1f} ms wall / "
                f"{off['cpu_ms']:.1f} ms CPU, on {on['wall_ms']:.1f} / {on['cpu_ms']:.1f} "
                f"({on['modes']}) -> CPU x{off['cpu_ms'] / on['cpu_ms']:.2f}")
        if not args.no_batch:
            b_off = batch_rate(scratch / "films", False, scratch / "off.csv")
            b_on = batch_rate(scratch / "films", True, scratch / "on.csv")
            line += f" | batch off {b_off:.1f} img/s, on {b_on:.1f} -> x{b_on / b_off:.2f}"
        print(line + f" | load {os.getloadavg()[0]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
