"""Drawing on grey float images with Pillow: text, arrows, lines (shared by films and pages)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Fonts that Debian ships (fonts-dejavu, fonts-urw-base35); Pillow's own scalable default font
# is the fallback, so the generator runs anywhere (the figures record which fonts were found).
_FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
)


def font_files() -> list[str]:
    """The font files found on this machine (may be empty)."""
    return [f for f in _FONT_FILES if Path(f).is_file()]


@lru_cache(maxsize=64)
def font(index: int, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    files = font_files()
    size = max(6, int(size))
    if files:
        return ImageFont.truetype(files[index % len(files)], size)
    return ImageFont.load_default(size=size)


def to_image(grey: np.ndarray) -> Image.Image:
    """A float image in 0-255 as an 8-bit Pillow image (for drawing)."""
    return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), mode="L")


def from_image(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32)


def draw_arrow(d: ImageDraw.ImageDraw, start: tuple[float, float], end: tuple[float, float],
               fill: int, width: int) -> None:
    """A straight arrow from ``start`` to ``end`` with a filled triangular head."""
    d.line([start, end], fill=fill, width=width)
    vx, vy = end[0] - start[0], end[1] - start[1]
    norm = max(1e-6, float(np.hypot(vx, vy)))
    ux, uy = vx / norm, vy / norm
    size = 4 * width + 4
    left = (end[0] - size * ux + size * 0.6 * uy, end[1] - size * uy - size * 0.6 * ux)
    right = (end[0] - size * ux - size * 0.6 * uy, end[1] - size * uy + size * 0.6 * ux)
    d.polygon([end, left, right], fill=fill)


def smooth_curve(rng: np.random.Generator, w: int, h: int, n: int = 60) -> list[tuple]:
    """A random smooth curve (quadratic Bezier) across the central part of a w x h image."""
    p0 = np.array([rng.uniform(0.3, 0.7) * w, rng.uniform(0.0, 0.2) * h])
    p1 = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.3, 0.6) * h])
    p2 = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.6, 1.0) * h])
    t = np.linspace(0, 1, n)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    return [tuple(map(float, p)) for p in pts]
