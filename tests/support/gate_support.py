"""Model folders with a content gate whose decisions a test controls, and images for it.

``make_gated_model_dir(path, refuse=...)`` attaches (through the training tool's real
``attach_gate``) a gate to a random-weights model: an orientation head with zero weights whose
bias makes every image pass (``refuse=False``) or look upside down (``refuse=True``), and an
atypicality that never refuses. The rules (too small, no content) are the app's own and act on
the images as they are: :func:`structured_image` passes them, a uniform page and a thumbnail
do not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

UPSIDE_DOWN = "looks upside down (rotated 180°)"


def make_gated_model_dir(path: Path, refuse: bool = False, seed: int = 0) -> Path:
    from safetensors.numpy import load_file

    from pneumoview.core import inputgate as G
    from pneumoview.core.model import read_model_info
    from tests.support.model_fixture import make_random_model_dir
    from training.gate.attach import attach_gate, write_gate_dir
    from training.gate.features import network_digest

    src = make_random_model_dir(path.parent / (path.name + "-plain"), seed=seed)
    info = read_model_info(src)
    backbone = network_digest(load_file(str(info.weights_path)), info)
    bias = [0.0, 0.0, 8.0, 0.0] if refuse else [8.0, 0.0, 0.0, 0.0]
    tensors = {"gate.orientation.0.weight": np.zeros((4, 5120), np.float32),
               "gate.orientation.0.bias": np.array(bias, np.float32),
               "gate.atypicality.mean": np.zeros(512, np.float32),
               "gate.atypicality.whiten": np.eye(512, dtype=np.float32),
               "gate.atypicality.reference": np.linspace(0.0, 50.0, 101).astype(np.float32)}
    gate = {"format": G.GATE_FORMAT, "feature_dim": 5120, "pooled_dim": 512,
            "feature_layout": "grid3",
            "heads": {"orientation": {
                "classes": ["upright", "rotated_90_cw", "rotated_180", "rotated_270_cw"],
                "layers": 1, "refuse_below": 0.5,
                "reasons": {"rotated_90_cw": "looks rotated 90° clockwise",
                            "rotated_180": UPSIDE_DOWN,
                            "rotated_270_cw": "looks rotated 90° counter-clockwise"}}},
            "atypicality": {"method": "test", "refuse_above": 1e9,
                            "refuse_above_percentile": 100.0, "n_reference": 101,
                            "bound_rule": "never refuses (test)"}}
    gate_dir = write_gate_dir(path.parent / (path.name + "-gate"), tensors, gate,
                              {"backbone_id": backbone, "command": "tests/support/gate_support.py"})
    return attach_gate(src, gate_dir, path)


def structured_image(n: int = 256, seed: int = 0) -> np.ndarray:
    """A uint16 picture with smooth structure at several scales (passes the content rules)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n] / n
    img = (np.sin(xx * 9 + 2 * yy) + np.cos(yy * 13) * np.sin(xx * 4 + seed)
           + 0.5 * np.exp(-((xx - 0.3) ** 2 + (yy - 0.6) ** 2) * 20))
    img = img + rng.normal(0, 0.02, (n, n))
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 4000).astype(np.uint16)
