"""The physical shape of a pixel, for showing non-square pixels (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoview.core.reading.spacing import pixel_aspect
from tests.support.dicom_factory import make_dataset


def _ds(**tags: object):
    return make_dataset(np.zeros((4, 4), np.uint16), **tags)


def test_pixel_aspect_is_row_over_column_spacing():
    assert pixel_aspect(_ds(PixelSpacing=[0.2, 0.1])) == pytest.approx(2.0)
    assert pixel_aspect(_ds(ImagerPixelSpacing=[0.1, 0.15])) == pytest.approx(2 / 3)
    assert pixel_aspect(_ds(PixelSpacing=[0.14, 0.14])) == 1.0


def test_pixel_aspect_ratio_tag_without_spacing_and_nonsense_is_square():
    assert pixel_aspect(_ds(PixelAspectRatio=[5, 4])) == pytest.approx(1.25)
    assert pixel_aspect(_ds()) == 1.0
    assert pixel_aspect(None) == 1.0
    assert pixel_aspect(_ds(PixelSpacing=[5.0, 0.1])) == 1.0  # 50:1 is a broken file
