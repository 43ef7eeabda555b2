"""The gate's examples: a film or a negative picture, a transform, and its labels.

A :class:`Sample` names everything that makes its pixels (the file or picture, the seed of its
degradation, mirror, rotation, inversion, crop), so its key identifies its features in the
feature store and every set is reproducible sample by sample from ``--seed``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from training.gate import pages
from training.gate.degrade import VERSION as DEGRADE_VERSION
from training.gate.degrade import degrade, jpeg, rescale
from training.gate.sources import EVAL_ONLY_GROUPS, BaseImage, Film, load_film

ORIENTATIONS = ("upright", "rotated_90_cw", "rotated_180", "rotated_270_cw")
POLARITIES = ("normal", "inverted")


@dataclass(frozen=True)
class Sample:
    key: str
    group: str  # hold-out group ("kermany", "nih", or a negative source)
    split: str  # train / val / test for films, "negative" otherwise
    content: str
    orientation: int  # index into ORIENTATIONS (films only; -1 for negatives)
    polarity: int  # index into POLARITIES (films only; -1 for negatives)
    degraded: bool
    make: Callable[[], np.ndarray]  # grey, display polarity


def seed_of(*parts: object) -> int:
    """A stable 63-bit seed from any parts (no Python hash randomisation)."""
    h = hashlib.sha256("\0".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def orient(grey: np.ndarray, k: int, mirror: bool = False, invert: bool = False) -> np.ndarray:
    """Mirror left-right, then rotate ``k`` quarter turns clockwise, then invert grey."""
    out = np.fliplr(grey) if mirror else grey
    out = np.rot90(out, -k) if k else out
    if invert:
        out = float(out.max()) + float(out.min()) - out
    return np.ascontiguousarray(out, dtype=np.float32)


@lru_cache(maxsize=64)
def _film_grey(path: str) -> np.ndarray:
    return load_film(path)


def film_sample(film: Film, seed: int, *, degraded: bool = False, k: int = 0,
                mirror: bool = False, invert: bool = False, tag: str = "") -> Sample:
    d = f"d{DEGRADE_VERSION}" if degraded else "d0"
    key = f"film|{film.path}|{d}|k{k}|m{int(mirror)}|i{int(invert)}|{tag}|{seed}"

    def make() -> np.ndarray:
        grey = _film_grey(film.path)
        if degraded:
            grey, _ = degrade(grey, np.random.default_rng(seed_of(key)))
        return orient(grey, k, mirror, invert)

    group = film.source if film.source != "kermany_val" else "kermany"
    return Sample(key, group, film.split, "chest", k, int(invert), degraded, make)


def _augment_negative(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random view of a negative picture: crop, mirror, any rotation, gamma, inversion,
    rescaling and JPEG, so a handful of pictures gives varied examples."""
    h, w = grey.shape
    if rng.random() < 0.7 and min(h, w) >= 64:
        s = np.sqrt(rng.uniform(0.35, 1.0))
        kh, kw = max(32, int(h * s * rng.uniform(0.8, 1.2))), max(32, int(w * s))
        kh, kw = min(kh, h), min(kw, w)
        y, x = int(rng.integers(0, h - kh + 1)), int(rng.integers(0, w - kw + 1))
        grey = grey[y:y + kh, x:x + kw]
    lo, hi = float(grey.min()), float(grey.max())
    if hi > lo and rng.random() < 0.5:
        u = (grey - lo) / (hi - lo)
        grey = lo + (hi - lo) * np.power(u, rng.uniform(0.6, 1.6))
    grey = orient(grey, int(rng.integers(0, 4)), bool(rng.random() < 0.5),
                  bool(rng.random() < 0.2))
    if rng.random() < 0.3:
        scaled = (grey - grey.min()) / max(1e-6, float(grey.max() - grey.min())) * 255
        grey = jpeg(rescale(scaled.astype(np.float32), rng), rng)
    return np.ascontiguousarray(grey, dtype=np.float32)


@lru_cache(maxsize=256)
def _base_grey(index: int, images: tuple[BaseImage, ...]) -> np.ndarray:
    return np.asarray(images[index].load(), dtype=np.float32)


def negative_samples(images: Sequence[BaseImage], variants: int, seed: int,
                     originals: bool = True) -> list[Sample]:
    """Each negative picture as it is (``originals``) and in ``variants`` augmented views."""
    imgs = tuple(images)
    out: list[Sample] = []
    for i, b in enumerate(imgs):
        for v in range(-1 if originals else 0, variants):
            key = f"neg|{b.name}|v{v}|{seed}"

            def make(i: int = i, v: int = v, key: str = key) -> np.ndarray:
                grey = _base_grey(i, imgs)
                if v < 0:
                    return grey
                return _augment_negative(grey, np.random.default_rng(seed_of(key)))

            out.append(Sample(key, b.group, "negative", b.content, -1, -1, v >= 0, make))
    return out


def page_samples(n_per_kind: int, seed: int) -> list[Sample]:
    """``n_per_kind`` synthetic pages of each kind (see :mod:`training.gate.pages`)."""
    out: list[Sample] = []
    for kind, (content, group, gen) in pages.PAGES.items():
        for j in range(n_per_kind):
            key = f"page|{kind}|{j}|{seed}"

            def make(gen: pages.Page = gen, key: str = key) -> np.ndarray:
                rng = np.random.default_rng(seed_of(key))
                page = gen(rng)
                k = int(rng.integers(0, 4)) if rng.random() < 0.3 else 0
                return orient(page, k)

            out.append(Sample(key, group, "negative", content, -1, -1, False, make))
    return out


def trainable(samples: Sequence[Sample]) -> list[Sample]:
    return [s for s in samples if s.group not in EVAL_ONLY_GROUPS]


def pick(films: Sequence[Film], split: str, n: int | None, seed: int,
         tag: str) -> list[Film]:
    """``n`` films of a split (all when None), in a seeded random order."""
    pool = [f for f in films if f.split == split]
    order = np.random.default_rng(seed_of(seed, split, tag)).permutation(len(pool))
    chosen = [pool[i] for i in order]
    return chosen if n is None else chosen[:n]


def thumbnail(grey: np.ndarray, size: int = 128) -> np.ndarray:
    """An 8-bit thumbnail (for contact sheets of what a set holds)."""
    g = np.asarray(grey, dtype=np.float32)
    lo, hi = np.percentile(g, (0.5, 99.5))
    u = np.clip((g - lo) / max(1e-6, hi - lo), 0, 1)
    img = Image.fromarray((u * 255).astype(np.uint8)).resize((size, size),
                                                            Image.Resampling.BOX)
    return np.asarray(img)
