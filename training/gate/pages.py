"""Synthetic pages: what lands in a DICOM folder that is no image of a patient at all.

Each generator makes a grey float32 page in 0-255 from a seeded generator: blank and near-blank
pages, uniform fills, gradients and vignettes, pixel noise, rendered text documents (reports,
letters), tables and forms, and drawings (charts, shapes). Kinds are grouped so that the figures
can hold one group out of the gate's training.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import ImageDraw

from training.gate.draw import font, from_image, to_image

Page = Callable[[np.random.Generator], np.ndarray]

WORDS = ("patient", "report", "findings", "impression", "the", "of", "and", "chest", "normal",
         "no", "acute", "cardiopulmonary", "process", "study", "compared", "with", "prior",
         "left", "right", "lower", "lobe", "opacity", "consent", "form", "date", "signature",
         "referral", "clinic", "history", "cough", "fever", "page", "total", "dose", "mGy",
         "department", "radiology", "invoice", "account", "number", "item", "quantity")


def _size(rng: np.random.Generator) -> tuple[int, int]:
    """(height, width) of a page: portrait or landscape, 300-1200 px."""
    h = int(rng.integers(300, 1201))
    w = int(h * rng.choice([0.707, 0.77, 1.0, 1.294, 1.414]))
    return h, max(200, w)


def blank(rng: np.random.Generator) -> np.ndarray:
    """A constant page (white, black or grey), sometimes with faint scanner noise."""
    h, w = _size(rng)
    page = np.full((h, w), float(rng.choice([255, 250, 0, 128, rng.uniform(0, 255)])),
                   np.float32)
    if rng.random() < 0.5:
        page += rng.normal(0, rng.uniform(0.3, 2.0), page.shape).astype(np.float32)
    return page


def gradient(rng: np.random.Generator) -> np.ndarray:
    """A linear ramp at a random angle, or a radial vignette."""
    h, w = _size(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.6:
        a = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(a) * xx / w + np.sin(a) * yy / h
    else:
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        ramp = -np.hypot((yy - cy) / h, (xx - cx) / w)
    ramp = (ramp - ramp.min()) / max(1e-6, float(ramp.max() - ramp.min()))
    lo, hi = sorted(rng.uniform(0, 255, 2))
    return (lo + (hi - lo) * ramp).astype(np.float32)


def pixel_noise(rng: np.random.Generator) -> np.ndarray:
    """Uniform, Gaussian or salt-and-pepper noise over a constant level."""
    h, w = _size(rng)
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return rng.uniform(0, 255, (h, w)).astype(np.float32)
    if kind == 1:
        return np.clip(rng.normal(rng.uniform(60, 200), rng.uniform(5, 60), (h, w)), 0,
                       255).astype(np.float32)
    page = np.full((h, w), 128, np.float32)
    m = rng.random((h, w))
    page[m < 0.05] = 0
    page[m > 0.95] = 255
    return page


def _paper(rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    h, w = _size(rng)
    white = float(rng.uniform(225, 255))
    ink = int(rng.uniform(0, 60))
    if rng.random() < 0.15:  # a dark-mode screenshot
        white, ink = float(rng.uniform(0, 40)), int(rng.uniform(190, 255))
    return np.full((h, w), white, np.float32), ink, h


def _sentence(rng: np.random.Generator, n: int) -> str:
    words = [str(rng.choice(WORDS)) for _ in range(n)]
    return " ".join(words).capitalize()


def text_document(rng: np.random.Generator) -> np.ndarray:
    """A report or letter: a title, paragraphs of text in one of the fonts."""
    page, ink, h = _paper(rng)
    img = to_image(page)
    d = ImageDraw.Draw(img)
    w = page.shape[1]
    f_idx = int(rng.integers(0, 4))
    size = int(h * rng.uniform(0.012, 0.03))
    margin = int(w * rng.uniform(0.05, 0.12))
    y = int(h * rng.uniform(0.03, 0.1))
    d.text((margin, y), _sentence(rng, 3).upper(), fill=ink, font=font(f_idx, int(size * 1.6)))
    y += int(size * 3)
    while y < h * rng.uniform(0.6, 0.95):
        n_lines = int(rng.integers(2, 8))
        for _ in range(n_lines):
            chars_per_line = max(10, int((w - 2 * margin) / (0.55 * size)))
            words = max(2, chars_per_line // 7)
            d.text((margin, y), _sentence(rng, int(rng.integers(words // 2, words + 1))),
                   fill=ink, font=font(f_idx, size))
            y += int(size * 1.4)
        y += size
    return from_image(img)


def table(rng: np.random.Generator) -> np.ndarray:
    """A ruled table or form: grid lines with numbers and words in the cells."""
    page, ink, h = _paper(rng)
    img = to_image(page)
    d = ImageDraw.Draw(img)
    w = page.shape[1]
    rows, cols = int(rng.integers(5, 25)), int(rng.integers(2, 7))
    x0, x1 = w * 0.06, w * 0.94
    y0 = h * rng.uniform(0.08, 0.2)
    rh = (h * 0.9 - y0) / rows
    size = max(6, int(rh * 0.5))
    for r in range(rows + 1):
        d.line([(x0, y0 + r * rh), (x1, y0 + r * rh)], fill=ink, width=1)
    for c in range(cols + 1):
        x = x0 + c * (x1 - x0) / cols
        d.line([(x, y0), (x, y0 + rows * rh)], fill=ink, width=1)
    for r in range(rows):
        for c in range(cols):
            cell = str(int(rng.integers(0, 10000))) if rng.random() < 0.6 else \
                str(rng.choice(WORDS))
            d.text((x0 + c * (x1 - x0) / cols + 4, y0 + r * rh + rh * 0.2), cell, fill=ink,
                   font=font(2, size))
    return from_image(img)


def drawing(rng: np.random.Generator) -> np.ndarray:
    """A chart or a drawing: axes with curves or bars, or filled shapes."""
    h, w = _size(rng)
    back = float(rng.choice([255, 240, 0, rng.uniform(0, 255)]))
    img = to_image(np.full((h, w), back, np.float32))
    d = ImageDraw.Draw(img)
    if rng.random() < 0.5:
        d.line([(w * 0.1, h * 0.9), (w * 0.95, h * 0.9)], fill=0 if back > 128 else 255, width=2)
        d.line([(w * 0.1, h * 0.9), (w * 0.1, h * 0.05)], fill=0 if back > 128 else 255, width=2)
        for _ in range(int(rng.integers(1, 4))):
            shade = int(rng.uniform(0, 200))
            if rng.random() < 0.5:
                xs = np.linspace(w * 0.1, w * 0.95, 40)
                ys = h * 0.5 + np.cumsum(rng.normal(0, h * 0.03, 40))
                d.line(list(zip(xs.tolist(), np.clip(ys, h * 0.05, h * 0.9).tolist(),
                                strict=True)), fill=shade, width=int(rng.integers(1, 5)))
            else:
                n = int(rng.integers(3, 12))
                bw = w * 0.8 / n
                for i in range(n):
                    top = h * rng.uniform(0.1, 0.85)
                    d.rectangle([w * 0.12 + i * bw, top, w * 0.12 + (i + 0.7) * bw, h * 0.9],
                                fill=shade)
    else:
        for _ in range(int(rng.integers(2, 12))):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            r = rng.uniform(0.03, 0.3) * min(h, w)
            box = [x - r, y - r * rng.uniform(0.5, 1.5), x + r, y + r]
            fill = int(rng.uniform(0, 255))
            if rng.random() < 0.5:
                d.ellipse(box, fill=fill)
            else:
                d.rectangle(box, fill=fill)
    return from_image(img)


# kind -> (content class, hold-out group, generator)
PAGES: dict[str, tuple[str, str, Page]] = {
    "blank": ("graphic", "pages_blank_noise", blank),
    "gradient": ("graphic", "pages_blank_noise", gradient),
    "noise": ("graphic", "pages_blank_noise", pixel_noise),
    "text": ("document", "pages_text", text_document),
    "table": ("document", "pages_text", table),
    "drawing": ("graphic", "pages_drawing", drawing),
}
