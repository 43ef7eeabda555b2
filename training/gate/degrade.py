"""What real chest films go through before they reach a reader: the gate must pass them all.

Each degradation is a pure function ``(grey, rng) -> grey`` on a float32 image in 0-255 (display
polarity: bright = dense). :func:`degrade` applies a random selection of them, seeded per image,
so a degraded set is reproducible image by image. The list follows issue 16: downscaled to
256-512 px, JPEG quality about 50, crops, burned-in arrows and text, gamma 0.7-1.4, borders and
collimation, tubes, lines and ECG leads as on AP supine ICU films.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from training.gate.draw import draw_arrow, font, from_image, smooth_curve, to_image

Degradation = Callable[[np.ndarray, np.random.Generator], np.ndarray]
#: in the feature-cache keys of degraded samples: a change here must not reuse old features
VERSION = 2

LABELS = ("R", "L", "AP", "PA", "PORTABLE", "SUPINE", "ERECT", "SEMI-ERECT", "ICU", "BED 4",
          "12:41", "2019-03-02", "INSP", "L  AP SUPINE", "MOBILE", "ER", "WARD 7", "LEFT")


def rescale(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Long side to 256-512 px (area resampling down, bicubic up)."""
    h, w = grey.shape
    target = int(rng.integers(256, 513))
    s = target / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    method = Image.Resampling.BOX if s < 1 else Image.Resampling.BICUBIC
    img = Image.fromarray(grey.astype(np.float32), mode="F").resize(size, method)
    return np.asarray(img, dtype=np.float32)


def jpeg(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A JPEG round trip at quality 35-65."""
    buf = io.BytesIO()
    to_image(grey).save(buf, format="JPEG", quality=int(rng.integers(35, 66)))
    buf.seek(0)
    with Image.open(buf) as img:
        return from_image(img.convert("L"))


def crop(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep 75-95 % of each side at a random offset (a tighter or shifted field of view)."""
    h, w = grey.shape
    kh, kw = int(h * rng.uniform(0.75, 0.95)), int(w * rng.uniform(0.75, 0.95))
    y, x = int(rng.integers(0, h - kh + 1)), int(rng.integers(0, w - kw + 1))
    return grey[y:y + kh, x:x + kw].copy()


def gamma(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A display curve with gamma 0.7-1.4 (darker or brighter mid-tones)."""
    lo, hi = float(grey.min()), float(grey.max())
    if hi <= lo:
        return grey
    u = (grey - lo) / (hi - lo)
    return (lo + (hi - lo) * np.power(u, rng.uniform(0.7, 1.4))).astype(np.float32)


def burn_in(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Burned-in text labels (side markers, AP SUPINE, dates) and one to three arrows."""
    img = to_image(grey)
    d = ImageDraw.Draw(img)
    h, w = grey.shape
    bright = int(rng.choice([255, 240, 0]))
    for _ in range(int(rng.integers(1, 4))):
        text = str(rng.choice(LABELS))
        size = int(h * rng.uniform(0.03, 0.08))
        x = rng.choice([rng.uniform(0.02, 0.15), rng.uniform(0.6, 0.85)]) * w
        y = rng.choice([rng.uniform(0.02, 0.12), rng.uniform(0.85, 0.93)]) * h
        d.text((float(x), float(y)), text, fill=bright, font=font(int(rng.integers(0, 4)), size))
    for _ in range(int(rng.integers(0, 4))):
        end = (float(rng.uniform(0.25, 0.75) * w), float(rng.uniform(0.25, 0.75) * h))
        ang = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.08, 0.2) * w
        start = (end[0] + length * np.cos(ang), end[1] + length * np.sin(ang))
        draw_arrow(d, start, end, bright, max(1, int(w * 0.006)))
    return from_image(img)


def border(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A black or white frame: 3-20 % on one to four sides (scanner margins), or, one time in
    three, the same 5-25 % on every side (a film padded onto a larger canvas)."""
    h, w = grey.shape
    value = float(rng.choice([0.0, 255.0, float(grey.min()), float(grey.max())]))
    if rng.random() < 1 / 3:
        f = rng.uniform(0.05, 0.25)
        pads = [int(h * f), int(h * f), int(w * f), int(w * f)]
    else:
        pads = [int(s * rng.uniform(0.03, 0.2)) if rng.random() < 0.6 else 0
                for s in (h, h, w, w)]
    if not any(pads):
        pads[int(rng.integers(0, 4))] = int(min(h, w) * 0.1)
    top, bottom, left, right = pads
    out = np.full((h + top + bottom, w + left + right), value, dtype=np.float32)
    out[top:top + h, left:left + w] = grey
    return out


def collimation(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Collimator shutters: the field outside a rectangle (5-25 % in from each side) is
    unexposed, i.e. bright (or dark where the system masks it), with a soft edge."""
    h, w = grey.shape
    t, b = int(h * rng.uniform(0.0, 0.25)), int(h * (1 - rng.uniform(0.0, 0.25)))
    lft, r = int(w * rng.uniform(0.05, 0.25)), int(w * (1 - rng.uniform(0.05, 0.25)))
    mask = np.zeros((h, w), dtype=np.float32)
    mask[t:b, lft:r] = 1.0
    img = Image.fromarray(mask * 255).convert("L")
    from PIL import ImageFilter

    soft = np.asarray(img.filter(ImageFilter.GaussianBlur(max(1, w // 200))), np.float32) / 255
    outside = float(rng.choice([grey.max() * rng.uniform(0.85, 1.0), grey.min()]))
    return (grey * soft + outside * (1 - soft)).astype(np.float32)


def lines_and_tubes(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright tubes and lines (endotracheal tube, nasogastric tube, central lines) and round
    ECG electrodes, as on AP supine ICU films."""
    img = to_image(grey)
    d = ImageDraw.Draw(img)
    h, w = grey.shape
    hi = int(np.percentile(grey, 99.5))
    for _ in range(int(rng.integers(1, 5))):
        d.line(smooth_curve(rng, w, h), fill=int(min(255, hi + rng.integers(0, 30))),
               width=max(1, int(w * rng.uniform(0.004, 0.012))))
    for _ in range(int(rng.integers(0, 5))):
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.05, 0.6) * h
        r = w * rng.uniform(0.012, 0.025)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=255, width=max(1, int(r / 3)))
    return from_image(img)


def noise(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild quantum noise (sigma 1-4 grey levels)."""
    return (grey + rng.normal(0, rng.uniform(1, 4), grey.shape)).astype(np.float32)


DEGRADATIONS: dict[str, Degradation] = {
    "crop": crop, "border": border, "collimation": collimation, "lines": lines_and_tubes,
    "burn_in": burn_in, "gamma": gamma, "noise": noise, "rescale": rescale, "jpeg": jpeg,
}
# applied in this order (geometry, then overlays, then the display and file chain)
_PROBABILITY = {"crop": 0.4, "border": 0.25, "collimation": 0.25, "lines": 0.3, "burn_in": 0.5,
                "gamma": 0.5, "noise": 0.3, "rescale": 0.6, "jpeg": 0.5}


def degrade(grey: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """A random selection (at least one) of the degradations, in a fixed order."""
    chosen = [k for k in DEGRADATIONS if rng.random() < _PROBABILITY[k]]
    if not chosen:
        chosen = [str(rng.choice(list(DEGRADATIONS)))]
    out = np.asarray(grey, dtype=np.float32)
    for k in DEGRADATIONS:
        if k in chosen:
            out = DEGRADATIONS[k](out, rng)
    return out, chosen
