"""A random-init model directory in the real format, for tests that must not wait for training.

``make_random_model_dir(path)`` writes what ``python -m training export`` writes (safetensors
weights, metadata.json with a realistic shape, MODEL_CARD.md) but with untrained weights,
temperature 1.0 and threshold 0.5. Its outputs are meaningless; only the plumbing is real.
"""

from __future__ import annotations

from pathlib import Path


def make_random_model_dir(path: Path | str, seed: int = 0, input_size: int = 224) -> Path:
    import torch

    from pneumoview.core import contract
    from pneumoview.core.model import ARCHITECTURE, build_model, write_model_dir

    torch.manual_seed(seed)
    model = build_model().eval()
    metadata = {
        "name": "pneumoview-test-random",
        "version": "0.0-test",
        "architecture": ARCHITECTURE,
        "input_contract": contract.INPUT_CONTRACT,
        "input_size": int(input_size),
        "mean": 0.5,
        "std": 0.25,
        "temperature": 1.0,
        "threshold": 0.5,
        "target_sensitivity": 0.9,
        "seed": seed,
        "metrics": {},
        "note": "random weights for tests; not a trained model",
    }
    card = "# Test model\n\nRandom weights for tests. Not a trained model; not for any use.\n"
    return write_model_dir(path, model.state_dict(), metadata, card)
