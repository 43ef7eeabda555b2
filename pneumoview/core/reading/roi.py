"""Statistics of a rectangle or ellipse region in modality values (after the Modality LUT).

A pixel belongs to the region when its centre lies inside the shape (the rule Weasis and OHIF
use), so the counts do not depend on the zoom. Only the bounding box's pixels are touched:
cost follows the region, not the image. SD is the population standard deviation of the
pixels in the region (they are the whole population being described, not a sample).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from pneumoview.core import functional_groups
from pneumoview.core.dicomio import header_text
from pneumoview.core.reading.geometry import Point, Quantity, area
from pneumoview.core.reading.spacing import PixelScale

SHAPES = ("rectangle", "ellipse")


@dataclass(frozen=True)
class RoiStats:
    """What the Measurements panel shows for one region."""

    count: int  # pixels whose centre lies inside
    mean: float
    sd: float
    minimum: float
    maximum: float
    area: Quantity
    units: str  # the modality values' units ("HU", "OD", or "" for stored values)

    def lines(self) -> list[str]:
        unit = f" {self.units}" if self.units else ""
        return [f"Mean {self.mean:.1f}{unit}  SD {self.sd:.1f}",
                f"Min {self.minimum:.1f}  Max {self.maximum:.1f}{unit}",
                f"Area {self.area.text()}  ({self.count} px)"]


def region_mask(shape: tuple[int, int], kind: str, a: Point, b: Point,
                ) -> tuple[tuple[slice, slice], np.ndarray]:
    """``(box, mask)``: the slices of the bounding box inside the image and, within it, the
    pixels whose centres lie in the ``kind`` shape with corners ``a``, ``b``."""
    if kind not in SHAPES:
        raise ValueError(f"unknown region shape {kind!r}")
    h, w = shape
    x0, x1 = sorted((a[0], b[0]))
    y0, y1 = sorted((a[1], b[1]))
    c0, c1 = max(0, math.ceil(x0 - 0.5)), min(w, math.floor(x1 - 0.5) + 1)
    r0, r1 = max(0, math.ceil(y0 - 0.5)), min(h, math.floor(y1 - 0.5) + 1)
    box = (slice(r0, max(r0, r1)), slice(c0, max(c0, c1)))
    rows = np.arange(box[0].start, box[0].stop, dtype=np.float64) + 0.5
    cols = np.arange(box[1].start, box[1].stop, dtype=np.float64) + 0.5
    if kind == "rectangle":
        return box, np.ones((rows.size, cols.size), dtype=bool)
    rx, ry = (x1 - x0) / 2, (y1 - y0) / 2
    if rx <= 0 or ry <= 0:
        return box, np.zeros((rows.size, cols.size), dtype=bool)
    u = ((cols - (x0 + rx)) / rx) ** 2
    v = ((rows - (y0 + ry)) / ry) ** 2
    return box, (v[:, None] + u[None, :]) <= 1.0


def roi_stats(values: np.ndarray, kind: str, a: Point, b: Point, scale: PixelScale,
              units: str = "") -> RoiStats | None:
    """Statistics of the region on a grey frame; None when it holds no pixel centre.

    Colour frames have no single modality value per pixel: ValueError.
    """
    if values.ndim != 2:
        raise ValueError("region statistics need a grey image (one value per pixel)")
    box, mask = region_mask(values.shape[:2], kind, a, b)
    inside = values[box][mask].astype(np.float64)
    if inside.size == 0:
        return None
    return RoiStats(int(inside.size), float(inside.mean()), float(inside.std()),
                    float(inside.min()), float(inside.max()), area(kind, a, b, scale), units)


def modality_units(ds: Dataset | None, frame: int = 0) -> str:
    """The units of the modality values: Rescale Type, or HU for CT, '' when unstated."""
    if ds is None:
        return ""
    source = functional_groups.rescale_source(ds, frame)
    rescale_type = header_text(source, "RescaleType")
    if not rescale_type:
        try:
            lut = source.get("ModalityLUTSequence")
            item = lut[0] if lut else None
        except Exception:  # a damaged sequence: no units rather than a crash
            item = None
        rescale_type = header_text(item, "ModalityLUTType")
    if rescale_type and rescale_type.upper() != "US":  # US = unspecified
        return rescale_type
    modality = header_text(ds, "Modality").upper()
    if modality == "CT" and "RescaleIntercept" in source:
        return "HU"
    return ""
