"""The Secondary Capture's pixels: the film, the CAM over it, a colour bar and a caption.

Pure numpy plus Pillow's text rendering (no Qt: ``flag --dicom-out`` runs headless). The
caption is burned in below the film so that the picture never travels without its context:
"NOT FOR DIAGNOSTIC USE", the probability, the threshold, the state and the model. Patient data
is never drawn (the object's own patient module carries it, where a PACS expects it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pneumoview.core.cam import blend_cam, cam_lut, resample_to_grid
from pneumoview.core.colour import to_display8
from pneumoview.core.dicomout.result import AIResult
from pneumoview.core.windowing import apply_window, default_window

NOT_FOR_DIAGNOSTIC_USE = "NOT FOR DIAGNOSTIC USE"
#: Largest side of the captured film; bigger films are shrunk by an integer factor (box mean).
MAX_SIDE = 2048
#: Narrowest picture: a smaller film is centred on a dark background so the caption stays legible.
MIN_WIDTH = 768
CAPTION_BACKGROUND = (20, 20, 20)
CAPTION_TEXT = (235, 235, 235)
NOTICE_TEXT = (255, 200, 60)


def caption_lines(result: AIResult) -> list[str]:
    """The burned-in text: the notice first, then result, threshold, model (no patient data)."""
    return [
        NOT_FOR_DIAGNOSTIC_USE,
        f"Probability of pneumonia: {result.probability * 100:.1f} %   "
        f"Threshold: {result.threshold * 100:.1f} %   {result.state_text}",
        "Overlay: class-activation map (where the model looked, not disease)",
        f"Model: {result.model.label}  id {result.model.model_id[:24]}",
    ]


def film_rgb(decoded: object) -> np.ndarray:
    """The decoded frame as displayed by default (its first window, inversion applied), RGB."""
    values = decoded.values  # type: ignore[attr-defined]
    if values.ndim == 3:
        return to_display8(values, int(getattr(decoded, "colour_bits", 8)))
    window = default_window(values, decoded.windows, decoded.identity)  # type: ignore[attr-defined]
    grey = apply_window(values, window, bool(decoded.invert))  # type: ignore[attr-defined]
    return np.repeat(grey[:, :, None], 3, axis=2)


def shrink(rgb: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """Box-mean by the smallest integer factor that brings the larger side to ``max_side``."""
    factor = -(-max(rgb.shape[:2]) // max_side)
    if factor <= 1:
        return rgb
    h, w = (rgb.shape[0] // factor) * factor, (rgb.shape[1] // factor) * factor
    blocks = rgb[:h, :w].reshape(h // factor, factor, w // factor, factor, 3)
    return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)


def _font(size: int) -> Any:
    return ImageFont.load_default(size=size)


def _colour_bar(width: int, height: int) -> np.ndarray:
    """A horizontal bar of the CAM's colours (low on the left, high on the right)."""
    lut = cam_lut()[:, :3]
    idx = np.linspace(0, 255, max(width, 1)).round().astype(np.intp)
    return np.repeat(lut[idx][None, :, :], max(height, 1), axis=0)


def _fitting_font(lines: list[str], width: int) -> tuple[Any, int]:
    """The largest font (up to width / 64) in which every line fits ``width``."""
    size = max(12, width // 64)
    while True:
        font = _font(size)
        longest = max(font.getlength(t) for t in lines)
        if longest + size + 8 <= width or size <= 9:
            return font, size
        size -= 1


def _widened(picture: np.ndarray, width: int) -> np.ndarray:
    if picture.shape[1] >= width:
        return picture
    out = np.empty((picture.shape[0], width, 3), np.uint8)
    out[:] = CAPTION_BACKGROUND
    left = (width - picture.shape[1]) // 2
    out[:, left:left + picture.shape[1]] = picture
    return out


def _caption(lines: list[str], width: int) -> np.ndarray:
    font, size = _fitting_font(lines, width)
    pad, line_h = size // 2 + 4, int(size * 1.35)
    bar_h = max(8, size // 2)
    height = pad * 3 + line_h * (len(lines) + 1) + bar_h
    canvas = Image.new("RGB", (width, height), CAPTION_BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = pad
    for text in lines:
        colour = NOTICE_TEXT if text == NOT_FOR_DIAGNOSTIC_USE else CAPTION_TEXT
        draw.text((pad, y), text, fill=colour, font=font)
        y += line_h
    y += pad
    bar_w = max(16, min(width - 2 * pad, width // 2))
    out = np.asarray(canvas).copy()
    out[y:y + bar_h, pad:pad + bar_w] = _colour_bar(bar_w, bar_h)
    label = Image.fromarray(out)
    ImageDraw.Draw(label).text((pad, y + bar_h + 2), "CAM: low", fill=CAPTION_TEXT, font=font)
    ImageDraw.Draw(label).text((pad + bar_w, y + bar_h + 2), "high", fill=CAPTION_TEXT,
                               font=font, anchor="ra")
    return np.asarray(label)


def compose(film: np.ndarray, cam: np.ndarray | None, result: AIResult,
            opacity: float = 0.6) -> np.ndarray:
    """(H', W', 3) uint8: ``film`` (RGB, any size; shrunk to :data:`MAX_SIDE`) with ``cam``
    (on any grid; resampled to the film) blended in, and the caption strip below."""
    picture = shrink(film)
    if cam is not None:
        picture = blend_cam(picture, resample_to_grid(cam, picture.shape[:2]), opacity)
    picture = _widened(picture, MIN_WIDTH)
    caption = _caption(caption_lines(result), picture.shape[1])
    return np.ascontiguousarray(np.concatenate([picture, caption], axis=0))
