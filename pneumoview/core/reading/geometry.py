"""Distances, angles and areas in the units a :class:`PixelScale` gives (pure maths).

Every computation goes through millimetres first (``PixelScale.to_mm``), so an image with
non-square pixels (Pixel Spacing 0.2 \\ 0.1) measures correctly along both axes and at any
angle. A value measured at the detector also carries its estimate at the patient when the file
states the magnification.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pneumoview.core.reading.spacing import PixelScale

Point = tuple[float, float]  # (x = column, y = row) in image pixels


@dataclass(frozen=True)
class Quantity:
    """A measured value with its unit and where it was measured."""

    value: float
    unit: str  # "mm", "px", "mm²", "px²", "°"
    note: str = ""  # "at detector" (PixelScale.note)
    at_patient: float | None = None  # detector value divided by the magnification

    def text(self, digits: int = 1) -> str:
        """``"52.3 mm at detector (≈47.5 mm at patient)"``, ``"34.0°"``, ``"120.0 px"``."""
        sep = "" if self.unit == "°" else " "
        out = f"{self.value:.{digits}f}{sep}{self.unit}"
        if self.note:
            out += f" {self.note}"
        if self.at_patient is not None:
            out += f" (≈{self.at_patient:.{digits}f} {self.unit} at patient)"
        return out


def _vector_mm(a: Point, b: Point, scale: PixelScale) -> tuple[float, float]:
    return scale.to_mm(b[0] - a[0], b[1] - a[1])


def distance(a: Point, b: Point, scale: PixelScale) -> Quantity:
    """Length of the segment ``a``-``b``."""
    dx, dy = _vector_mm(a, b, scale)
    value = math.hypot(dx, dy)
    return Quantity(value, scale.unit, scale.note, scale.at_patient(value))


def angle(a: Point, vertex: Point, b: Point, scale: PixelScale) -> Quantity:
    """The angle at ``vertex`` between the rays to ``a`` and ``b``, 0-180 degrees.

    Measured in millimetres, so non-square pixels do not skew it; magnification scales both
    rays alike and leaves the angle unchanged. A ray of zero length gives 0.
    """
    ux, uy = _vector_mm(vertex, a, scale)
    vx, vy = _vector_mm(vertex, b, scale)
    if math.hypot(ux, uy) == 0 or math.hypot(vx, vy) == 0:
        return Quantity(0.0, "°")
    value = math.degrees(math.atan2(abs(ux * vy - uy * vx), ux * vx + uy * vy))
    return Quantity(value, "°")


def area(kind: str, a: Point, b: Point, scale: PixelScale) -> Quantity:
    """Area of the rectangle or ellipse whose bounding box has corners ``a`` and ``b``."""
    w, h = (abs(v) for v in _vector_mm(a, b, scale))
    value = w * h * (math.pi / 4 if kind == "ellipse" else 1.0)
    unit = scale.unit + "²"
    return Quantity(value, unit, scale.note, scale.at_patient(value, power=2))

