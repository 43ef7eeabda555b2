"""Pure numpy display helpers shared by the image view and the thumbnails."""

from __future__ import annotations

from typing import Any

import numpy as np


def block_mean(image: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Average ``fy x fx`` blocks (edge rows/columns that do not fill a block are left out),
    keeping the dtype. Strided adds, not a reshape-mean: about 10x faster on 2000x2000 uint16.
    """
    h, w = image.shape[0] // fy, image.shape[1] // fx
    if h == 0 or w == 0 or (fy, fx) == (1, 1):
        return image
    v = image[: h * fy, : w * fx]
    kind, size = image.dtype.kind, image.dtype.itemsize
    acc = np.uint32 if kind == "u" and size <= 2 else np.int64 if kind in "ui" else np.float64
    cols: Any = v[:, 0::fx].astype(acc)  # numpy's stubs cannot follow the chosen dtype
    for k in range(1, fx):
        cols += v[:, k::fx]
    total = cols[0::fy].copy()
    for k in range(1, fy):
        total += cols[k::fy]
    n = fy * fx
    if image.dtype.kind in "ui":
        return ((total + n // 2) // n).astype(image.dtype)
    return (total / n).astype(image.dtype)
