"""Where everything goes in a full-resolution export: the image at its own pixel grid (or
scaled to a chosen size), the colour bar of the overlay beside it, the caption below.

Pure arithmetic, so the Qt painter that draws it and the tests that check it share one layout.
The image is the *displayed* image (after :class:`ViewTransform`), so an exported rotated view
is rotated, and annotation points map through ``ViewTransform.to_display`` then :meth:`place`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: An export larger than this on its long side is refused (a typo in the size, not a picture).
MAX_SIDE = 16384
PAD = 8


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class ExportLayout:
    width: int
    height: int
    image: Rect
    scale: float  # output pixels per image pixel
    colourbar: Rect | None
    caption: Rect

    def place(self, point: tuple[float, float]) -> tuple[float, float]:
        """A displayed-image point (x, y) in the output's pixels."""
        return self.image.x + point[0] * self.scale, self.image.y + point[1] * self.scale


def scale_for(display_shape: tuple[int, int], long_side: int | None) -> float:
    """The scale that gives the image ``long_side`` pixels on its longer side (None: 1)."""
    if long_side is None:
        return 1.0
    if not 1 <= long_side <= MAX_SIDE:
        raise ValueError(f"export size must be 1-{MAX_SIDE} pixels, not {long_side}")
    return long_side / max(display_shape)


def export_layout(display_shape: tuple[int, int], scale: float = 1.0, colourbar: bool = False,
                  caption_lines: int = 0, line_height: int = 16,
                  caption_width: int = 0) -> ExportLayout:
    """The layout for an image of ``display_shape`` (rows, columns) drawn at ``scale``.

    The colour bar is as tall as the image and 1/40 of its width (at least 12 px); the caption
    strip is ``caption_lines`` lines, as wide as the widest of image+bar and ``caption_width``.
    """
    rows, cols = display_shape
    if rows <= 0 or cols <= 0 or not math.isfinite(scale) or scale <= 0:
        raise ValueError("an export needs a non-empty image and a positive scale")
    w, h = max(1, round(cols * scale)), max(1, round(rows * scale))
    if max(w, h) > MAX_SIDE:
        raise ValueError(f"an export of {w} x {h} pixels is larger than {MAX_SIDE} on a side")
    image = Rect(0, 0, w, h)
    bar = None
    right = w
    if colourbar:
        bar_w = max(12, w // 40)
        bar = Rect(w + PAD, PAD, bar_w, max(1, h - 2 * PAD))
        right = w + PAD + bar_w + 6 * PAD  # room for the bar's labels
    width = max(right, caption_width + 2 * PAD)
    caption_h = caption_lines * line_height + 2 * PAD if caption_lines else 0
    caption = Rect(0, h, width, caption_h)
    return ExportLayout(width, h + caption_h, image, w / cols, bar, caption)
