"""The CAM means something: hiding its top 20 % lowers the logit more than hiding a random 20 %.

Needs the trained bundled model (a random model's CAM means nothing) and the Kermany images in
../shared/data; skips with the reason otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest

from pneumoview.core import contract
from pneumoview.core.cam import resample_to_grid, top_fraction_mask
from pneumoview.core.inference import Engine
from tests.ai_support import bundled_trained_model_dir, kermany_pneumonia_dirs

N_IMAGES = 12
N_RANDOM = 5
FRACTION = 0.2


def _positive_images() -> list:
    files: list = []
    for folder in kermany_pneumonia_dirs():
        files += sorted(folder.glob("*.jpeg"))
    if len(files) < N_IMAGES:
        pytest.skip("needs Kermany PNEUMONIA images in ../shared/data/kermany")
    step = max(1, len(files) // N_IMAGES)
    return files[::step][:N_IMAGES]


@pytest.mark.slow
@pytest.mark.shared_data("kermany")
def test_hiding_cam_top_lowers_logit_more_than_random(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("PNEUMOVIEW_TORCH_THREADS", "1")
    model_dir = bundled_trained_model_dir()
    files = _positive_images()
    engine = Engine(model_dir, device="cpu")
    engine.load()
    size = engine.info.input_size
    rng = np.random.default_rng(0)
    top_drops, random_drops = [], []
    for path in files:
        x = contract.model_input(contract.load_plain_image(path), invert=False, size=size)
        grid = engine.cam_from_input(x)
        cam = resample_to_grid(grid, (size, size))
        fill = float(x.mean())  # "hidden" = replaced by the image's mean grey
        hidden_top = np.where(top_fraction_mask(cam, FRACTION), fill, x).astype(np.float32)
        randoms = []
        for _ in range(N_RANDOM):
            # a random map on the same layer grid: random blobs as smooth as the CAM's, so
            # only *where* the pixels are hidden differs, not how scattered they are
            noise = resample_to_grid(rng.random(grid.shape), (size, size))
            mask = top_fraction_mask(noise, FRACTION)
            randoms.append(np.where(mask, fill, x).astype(np.float32))
        logits = engine.logits([x, hidden_top, *randoms])
        top_drops.append(logits[0] - logits[1])
        random_drops.append(float(np.mean(logits[0] - logits[2:])))
    mean_top, mean_random = float(np.mean(top_drops)), float(np.mean(random_drops))
    print(f"logit drop: top-CAM {mean_top:.3f}, random {mean_random:.3f}")
    assert mean_top > mean_random, (mean_top, mean_random)
