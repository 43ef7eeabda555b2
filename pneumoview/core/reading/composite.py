"""Composing an export at the image's own pixel grid: the windowed image plus its layers.

Pure numpy, so the export's pixels are the image's pixels (not the screen's) and tests can
check them exactly.
"""

from __future__ import annotations

import numpy as np


def to_rgb(image8: np.ndarray) -> np.ndarray:
    """An 8-bit grey (H, W) or RGB (H, W, 3+) image as contiguous (H, W, 3) uint8."""
    if image8.ndim == 2:
        return np.repeat(image8[:, :, None], 3, axis=2).astype(np.uint8)
    return np.ascontiguousarray(image8[..., :3], dtype=np.uint8)


def nearest_resize(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``array`` (H, W, ...) resampled to ``shape`` by nearest pixel centres."""
    h, w = array.shape[:2]
    if (h, w) == tuple(shape):
        return array
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(int), h - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(int), w - 1)
    return array[rows][:, cols]


def blend(base: np.ndarray, rgba: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """``rgba`` (any size: resampled to ``base``) drawn over the RGB ``base`` with its alpha
    times ``opacity`` (source-over, as the view draws it)."""
    layer = nearest_resize(rgba, base.shape[:2])
    alpha = layer[..., 3:4].astype(np.float32) * (float(opacity) / 255.0)
    out = base.astype(np.float32) * (1.0 - alpha) + layer[..., :3].astype(np.float32) * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
