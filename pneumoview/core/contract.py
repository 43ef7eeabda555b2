"""The model-input contract: the one function that turns a decoded image into the model's input.

The app, the batch engine and the training tool all call :func:`model_input`, so a model sees in
a user's folder exactly what it saw in training. The contract is versioned: every checkpoint
records :data:`INPUT_CONTRACT` and the loader refuses a mismatch. Change anything here and the
version must change too (and the bundled model be retrained).

Steps (version ``pv-input-1``):

1. stored values -> Modality LUT -> float32 (done by :mod:`pneumoview.core.dicomio`); colour or
   three equal channels -> one grey channel (mean of the channels);
2. invert when the display would invert (MONOCHROME1, or MONOCHROME2 with Presentation LUT Shape
   INVERSE) so that higher means brighter; the file's VOI window and the user's window are ignored;
3. resize to ``size`` x ``size`` without keeping the aspect ratio, antialiased (box filter, i.e.
   area averaging);
4. clip to the 0.5th-99.5th percentiles of that small image and scale to [0, 1];
5. normalise with the mean and standard deviation stored with the checkpoint (:func:`normalise`).

Plain 8-bit PNG/JPEG files (training data) enter at step 1 as they are (:func:`load_plain_image`).

Version ``pv-input-2`` (model 1.1, default size 320, the size stored with the checkpoint) keeps
steps 1, 2, 4 and 5 and changes step 3 for small images: an image at least ``size`` on both
axes is box-resized as in ``pv-input-1``; a smaller one (Kermany's 224 px films at 320) is
resized bilinearly, because a box "upscale" is uneven pixel replication (224 -> 320 repeats
some rows and columns and not others), an artefact only the small source would carry.
(Percentiles on a quarter of the pixels were tried and not adopted: they saved 1 ms of the
~50 ms a 2048 px film's preparation costs and moved the clip limits of some real films by up to
3.7 uint8 steps.)

A model records its version; :func:`model_input` prepares images for the version it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from pneumoview.core.errors import PneumoViewError

INPUT_CONTRACT = "pv-input-1"
INPUT_SIZE = 224
CLIP_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class ContractSpec:
    """What differs between contract versions (step 3's filter for small images)."""

    name: str
    default_size: int
    smooth_upscale: bool  # step 3: bilinear instead of box when the image is smaller than size


CONTRACTS = {
    "pv-input-1": ContractSpec("pv-input-1", 224, smooth_upscale=False),
    "pv-input-2": ContractSpec("pv-input-2", 320, smooth_upscale=True),
}


def spec(version: str) -> ContractSpec:
    """The steps of a contract version (``ValueError`` for an unknown one)."""
    try:
        return CONTRACTS[version]
    except KeyError:
        raise ValueError(f"unknown input contract {version!r} (known: "
                         f"{', '.join(CONTRACTS)})") from None


def to_grey(values: np.ndarray) -> np.ndarray:
    """Step 1: one float32 grey channel from a (H, W) or (H, W, C) array."""
    arr = np.asarray(values)
    if arr.ndim == 3:
        arr = arr.astype(np.float32).mean(axis=2, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D grey or 3-D colour image, got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def resize_area(image: np.ndarray, size: int, smooth_upscale: bool = False) -> np.ndarray:
    """Step 3: antialiased (box / area-average) resize of a float32 image to ``size`` x ``size``;
    with ``smooth_upscale``, bilinear when the image is smaller than ``size`` on an axis."""
    from PIL import Image  # Pillow is a pydicom[pixeldata] dependency and cheap to import

    arr = np.ascontiguousarray(image, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {arr.shape}")
    img = _pillow_view(arr)
    small = min(arr.shape) < size
    resample = Image.Resampling.BILINEAR if smooth_upscale and small else Image.Resampling.BOX
    out = img.resize((size, size), resample=resample)
    return np.asarray(out, dtype=np.float32)


def _pillow_view(arr: np.ndarray) -> Any:
    """A Pillow "F" image reading ``arr``'s memory in place (``arr`` must outlive it).

    Pillow's public constructors copy float images (``frombuffer`` maps only 8/16-bit modes),
    and for a 1024 px film that copy costs a third of the resize; its buffer mapper handles
    float32 rows as well. Where it is missing or refuses, the copy it is.
    """
    from PIL import Image

    h, w = arr.shape
    try:
        core = Image.core.map_buffer(arr, (w, h), "raw", 0, ("F", 0, 1))
    except (AttributeError, TypeError, ValueError):
        return Image.fromarray(arr, mode="F")
    return Image.new("F", (0, 0))._new(core)


def clip_and_scale(image: np.ndarray) -> np.ndarray:
    """Step 4: clip to the 0.5th-99.5th percentiles and scale to [0, 1] (flat images give 0)."""
    lo, hi = np.percentile(image, CLIP_PERCENTILES)
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros_like(image, dtype=np.float32)
    out = (np.clip(image, lo, hi) - lo) / (hi - lo)
    return out.astype(np.float32, copy=False)


def model_input(values: np.ndarray, invert: bool, size: int = INPUT_SIZE,
                version: str = INPUT_CONTRACT) -> np.ndarray:
    """Steps 1-4 of the contract ``version``: a (size, size) float32 array in [0, 1].

    ``values`` are modality-LUT output (or the raw 8-bit values of a plain PNG/JPEG); ``invert``
    is the decoded image's display-inversion flag. Non-finite values (a broken rescale) are an
    error rather than a silent NaN input.
    """
    steps = spec(version)
    grey = to_grey(values)
    if grey.size == 0:
        raise ValueError("empty image")
    small = resize_area(grey, size, steps.smooth_upscale)
    # Every source pixel carries weight in some output pixel of these filters, so a NaN or an
    # infinity anywhere shows in the small image: one check of 50k values, not of millions.
    if not np.isfinite(small).all():
        raise ValueError("image contains non-finite values after the Modality LUT")
    if invert:
        # the resize is linear and rounds symmetrically: negating after it is bit-identical
        # to negating the full image first, and touches 20x fewer pixels
        small = -small
    return clip_and_scale(small)


def normalise(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Step 5: standardise with the checkpoint's dataset mean and standard deviation."""
    return ((x - np.float32(mean)) / np.float32(std)).astype(np.float32, copy=False)


def load_plain_image(path: str | PathLike[str]) -> np.ndarray:
    """Read a PNG/JPEG as it is (8-bit values, channels kept) for step 1 of the contract."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "RGB", "I;16", "I", "F"):
                return np.asarray(img.convert("RGB"))
            return np.asarray(img)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise PneumoViewError(f"cannot read image: {exc}", path) from exc
