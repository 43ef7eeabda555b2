"""The fast model-input path gives the contract's output bit for bit.

:func:`reference_model_input` is the contract written out the plain way (invert the full image,
copy it into a Pillow image, check every pixel for NaN); :func:`contract.model_input` reads the
pixels in place, negates and checks the small image instead. Any difference would change every
score the bundled model gives, so equality is exact, not within a tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pneumoview.core import contract


def reference_model_input(values: np.ndarray, invert: bool, size: int = 224,
                          version: str = "pv-input-1") -> np.ndarray:
    steps = contract.spec(version)
    grey = contract.to_grey(values)
    if not np.isfinite(grey).all():
        raise ValueError("image contains non-finite values after the Modality LUT")
    if invert:
        grey = -grey
    img = Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32), mode="F")
    small = min(grey.shape[:2]) < size
    resample = (Image.Resampling.BILINEAR if steps.smooth_upscale and small
                else Image.Resampling.BOX)
    out = np.asarray(img.resize((size, size), resample=resample), dtype=np.float32)
    return contract.clip_and_scale(out)


SHAPES = [(1024, 1024), (2048, 1700), (1023, 877), (224, 224), (300, 150), (100, 80), (7, 5),
          (1, 1), (3000, 20)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("version,size", [("pv-input-1", 224), ("pv-input-2", 320)])
@pytest.mark.parametrize("invert", [False, True])
def test_fast_path_is_bit_identical_to_the_reference(shape: tuple[int, int], version: str,
                                                     size: int, invert: bool) -> None:
    rng = np.random.default_rng(sum(shape))
    img = (rng.normal(1500, 400, shape) + np.linspace(0, 900, shape[1])).astype(np.float32)
    fast = contract.model_input(img, invert, size=size, version=version)
    ref = reference_model_input(img, invert, size=size, version=version)
    assert fast.dtype == ref.dtype == np.float32
    np.testing.assert_array_equal(fast, ref)


def test_integer_colour_and_strided_inputs_match_the_reference() -> None:
    rng = np.random.default_rng(5)
    u16 = rng.integers(0, 4096, (900, 700), dtype=np.uint16)
    rgb = rng.integers(0, 256, (400, 500, 3), dtype=np.uint8)
    strided = rng.random((1200, 1000)).astype(np.float32)[::2, 1::3]  # not contiguous
    f64 = rng.random((500, 400))
    for arr in (u16, rgb, strided, f64):
        for invert in (False, True):
            np.testing.assert_array_equal(contract.model_input(arr, invert),
                                          reference_model_input(arr, invert))


@pytest.mark.parametrize("shape", [(1024, 1024), (1023, 877), (300, 150), (100, 80), (3000, 20)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("version,size", [("pv-input-1", 224), ("pv-input-2", 320)])
def test_one_non_finite_pixel_anywhere_is_refused(shape: tuple[int, int], bad: float,
                                                  version: str, size: int) -> None:
    rng = np.random.default_rng(11)
    h, w = shape
    spots = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2)]
    spots += [(int(r), int(c)) for r, c in zip(rng.integers(0, h, 20), rng.integers(0, w, 20),
                                               strict=True)]
    base = rng.random(shape).astype(np.float32)
    for r, c in spots:
        img = base.copy()
        img[r, c] = bad
        with pytest.raises(ValueError, match="non-finite"):
            contract.model_input(img, invert=False, size=size, version=version)


def test_every_row_and_column_edge_pixel_is_checked() -> None:
    """Exhaustive on a small film: a NaN in any pixel of a 64 x 48 image is seen."""
    base = np.ones((64, 48), np.float32)
    for r in range(64):
        for c in range(48):
            img = base.copy()
            img[r, c] = np.nan
            with pytest.raises(ValueError, match="non-finite"):
                contract.model_input(img, invert=True, size=24)


def test_the_copying_fallback_gives_the_same_input(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    img = rng.random((800, 600)).astype(np.float32)
    fast = contract.model_input(img, True)

    def refuse(*_args: object) -> None:
        raise ValueError("unsupported")

    monkeypatch.setattr(Image.core, "map_buffer", refuse)
    np.testing.assert_array_equal(contract.model_input(img, True), fast)


def test_the_source_image_is_left_untouched() -> None:
    img = np.random.default_rng(4).random((500, 400)).astype(np.float32)
    before = img.copy()
    contract.model_input(img, invert=True)
    np.testing.assert_array_equal(img, before)
