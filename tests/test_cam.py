"""CAM pixel maths: the map goes back onto the original pixel grid exactly (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pneumoview.core.cam import normalise_cam, resample_to_grid, top_fraction_mask
from pneumoview.core.contract import resize_area


def test_same_shape_is_identity() -> None:
    rng = np.random.default_rng(1)
    cam = rng.random((7, 9)).astype(np.float32)
    out = resample_to_grid(cam, (7, 9))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, cam)


def test_centre_aligned_values_1d() -> None:
    # two input pixels [0, 1] stretched to four: centres at -0.25, 0.25, 0.75, 1.25 -> clamped
    out = resample_to_grid(np.array([[0.0, 1.0]]), (1, 4))
    np.testing.assert_allclose(out[0], [0.0, 0.25, 0.75, 1.0], atol=1e-7)
    out = resample_to_grid(np.array([[0.0], [1.0]]), (4, 1))
    np.testing.assert_allclose(out[:, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-7)


def test_constant_map_stays_constant_any_aspect() -> None:
    out = resample_to_grid(np.full((7, 7), 0.3, np.float32), (1955, 1841))
    assert out.shape == (1955, 1841) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.3, atol=1e-6)


def test_mirror_symmetry_is_kept() -> None:
    # a centre-aligned resample commutes with flipping; a corner-aligned or shifted one does not
    rng = np.random.default_rng(2)
    cam = rng.random((7, 7)).astype(np.float32)
    out = resample_to_grid(cam, (50, 31))
    np.testing.assert_allclose(resample_to_grid(cam[::-1, ::-1], (50, 31)), out[::-1, ::-1],
                               atol=1e-6)


def test_hot_cell_lands_where_it_was() -> None:
    cam = np.zeros((7, 7), np.float32)
    cam[1, 5] = 1.0  # row 1 of 7, column 5 of 7
    height, width = 700, 350  # non-square: each axis is stretched on its own
    out = resample_to_grid(cam, (height, width))
    y, x = np.unravel_index(np.argmax(out), out.shape)
    assert abs((y + 0.5) / height - 1.5 / 7) < 0.01
    assert abs((x + 0.5) / width - 5.5 / 7) < 0.01


@settings(max_examples=25, deadline=None)
@given(st.integers(20, 300), st.integers(20, 300), st.integers(0, 10**6))
def test_round_trip_through_the_model_resize(height: int, width: int, seed: int) -> None:
    """A blob squashed to 224x224 by the contract and resampled back sits where it was."""
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
    yy, xx = np.mgrid[0:height, 0:width]
    sigma_y, sigma_x = height / 10, width / 10
    image = np.exp(-(((yy + 0.5 - cy) / sigma_y) ** 2 + ((xx + 0.5 - cx) / sigma_x) ** 2) / 2)
    small = resize_area(image.astype(np.float32), 224)
    back = resample_to_grid(small, (height, width))

    def centroid(a: np.ndarray) -> tuple[float, float]:
        w = a / a.sum()
        return float((w * (yy + 0.5)).sum()), float((w * (xx + 0.5)).sum())

    by, bx = centroid(back)
    oy, ox = centroid(image)
    # within a quarter of a model-grid pixel: a half-pixel misalignment would fail
    assert abs(by - oy) < 0.25 * height / 224 and abs(bx - ox) < 0.25 * width / 224


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        resample_to_grid(np.zeros((3,)), (4, 4))
    with pytest.raises(ValueError):
        resample_to_grid(np.zeros((3, 3)), (0, 4))


def test_normalise_cam() -> None:
    out = normalise_cam(np.array([[-1.0, 0.0], [1.0, 2.0]]))
    np.testing.assert_allclose(out, [[0, 0], [0.5, 1.0]])
    zero = normalise_cam(np.full((3, 3), -2.0))
    assert zero.dtype == np.float32 and not zero.any()


def test_top_fraction_mask() -> None:
    cam = np.arange(100, dtype=np.float32).reshape(10, 10)
    mask = top_fraction_mask(cam, 0.2)
    assert mask.sum() == 20 and mask[8:].all() and not mask[:8].any()
