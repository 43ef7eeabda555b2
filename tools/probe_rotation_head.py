"""Does a run's training-only rotation head tell degraded upright films from turned ones?

    python tools/probe_rotation_head.py --checkpoint runs/bundled/final-320-rot/checkpoint.pth \
        --cache runs/bundled/data320 [--split test]

Each film of the split is degraded once (the input gate's degradations, seeded per film) and
turned by a random quarter turn; the head's P(upright) is compared on upright and turned films,
clean and degraded, at the bound that refuses 0.3 % of the degraded upright films (the gate's
rule for its orientation head). A probe of the backbone, not a gate figure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumoview.core.model import build_model  # noqa: E402
from training import metrics as M  # noqa: E402
from training.auxrot import WithRotationHead  # noqa: E402
from training.gate.degrade import degrade  # noqa: E402


def load(path: str) -> tuple[WithRotationHead, float, float]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    net = build_model()
    net.load_state_dict(ck["model"])
    model = WithRotationHead(net)
    model.head.load_state_dict(ck["rotation_head"])
    return model.eval(), ck["normalisation"]["mean"], ck["normalisation"]["std"]


def p_upright(model: WithRotationHead, films: list[np.ndarray], mean: float,
              std: float) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(np.stack(films) / 255.0, dtype=np.float32))[:, None]
    x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        _, r = model(x)
    return torch.softmax(r.float(), 1)[:, 0].numpy()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, mean, std = load(args.checkpoint)
    imgs = np.load(Path(args.cache) / f"images_{args.split}.npy", mmap_mode="r")
    size = imgs.shape[-1]
    rng = np.random.default_rng(0)
    rows = []
    for i in range(len(imgs)):
        g = imgs[i].astype(np.float32)
        d, _ = degrade(g, np.random.default_rng(1000 + i))
        d = np.asarray(Image.fromarray(d.astype(np.float32), mode="F").resize(
            (size, size), Image.Resampling.BILINEAR))
        c = int(rng.integers(1, 4))
        rows.append(p_upright(model, [g, np.rot90(g, -c), d, np.rot90(d, -c)], mean, std))
    p = np.stack(rows)
    n = len(p)
    bound = float(np.quantile(p[:, 2], 0.003))
    for name, up, tu in (("clean", p[:, 0], p[:, 1]), ("degraded", p[:, 2], p[:, 3])):
        auc = M.auroc(np.r_[np.ones(n), np.zeros(n)], np.r_[up, tu])
        print(f"{name}: AUROC upright vs turned {auc:.4f}; at bound {bound:.4f}: turned passed "
              f"{int(np.sum(tu >= bound))}/{n}, upright refused {int(np.sum(up < bound))}/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
