"""A small picture of a decoded frame: its default window, averaged down (pure numpy)."""

from __future__ import annotations

import math

import numpy as np

from pneumoview.core import colour, windowing
from pneumoview.core.dicomio import DecodedImage
from pneumoview.core.display import block_mean


def thumbnail(decoded: DecodedImage, max_side: int = 96) -> np.ndarray:
    """uint8 (h, w) grey or (h, w, 3) colour, at most ``max_side`` on its longer side.

    Averaged in blocks before windowing (no aliasing of fine structure such as grids), with
    the window the viewer opens the image with.
    """
    h, w = decoded.shape
    f = max(1, math.ceil(max(h, w) / max_side))
    if decoded.is_colour:
        rgb = colour.to_display8(decoded.values[..., :3], decoded.colour_bits)
        return np.ascontiguousarray(rgb[::f, ::f][: max_side, : max_side])
    small = block_mean(np.ascontiguousarray(decoded.values, dtype=np.float32), f, f)
    window = windowing.default_window(decoded.values, decoded.windows, decoded.identity)
    return windowing.apply_window(small, window, decoded.invert)
