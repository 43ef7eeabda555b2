"""What one pixel measures: the scale behind every distance, angle and area.

Projection radiographs (PS3.3 10.7.1.3) can carry two spacings. **Imager Pixel Spacing**
(0018,1164) is measured at the front plane of the detector: an object is drawn larger there than
it is in the patient (the beam diverges), by the Estimated Radiographic Magnification Factor
(0018,1114) when the modality states it. **Pixel Spacing** (0028,0030) is "in the patient" when
it has been calibrated (Pixel Spacing Calibration Type GEOMETRY or FIDUCIAL, or a value that
differs from the imager's); equal to Imager Pixel Spacing and without a calibration type it is
the detector's spacing copied, and is labelled as such. Cross-sectional images (CT, MR...)
state Pixel Spacing in the patient, per frame for Enhanced objects (Pixel Measures macro).
With neither, measurements are in pixels, and say so.

Both spacing attributes are ``row spacing \\ column spacing``: the first value is the distance
between the centres of adjacent *rows* (vertical), the second between adjacent *columns*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from pydicom.dataset import Dataset

from pneumoview.core import functional_groups
from pneumoview.core.dicomio import header_text

#: Values closer than this (relative) count as "the same spacing" when comparing the two.
_SAME = 1e-4


class SpacingSource(str, Enum):
    """Where the millimetres come from (one home for the wording shown next to a value)."""

    PATIENT = "PixelSpacing"  # cross-sectional, or a projection image calibrated in the patient
    CALIBRATED = "PixelSpacing (calibrated)"  # projection: calibration type or value says so
    DETECTOR = "ImagerPixelSpacing"  # projection: at the detector, not corrected
    PIXELS = "none"  # no spacing known: pixels


@dataclass(frozen=True)
class PixelScale:
    """Millimetres per pixel along rows (``row_mm``: vertical) and columns (``col_mm``)."""

    source: SpacingSource
    row_mm: float = 1.0
    col_mm: float = 1.0
    magnification: float | None = None  # ERMF, when stated with a detector spacing
    calibration: str = ""  # Pixel Spacing Calibration Type / Description, when given

    @property
    def in_mm(self) -> bool:
        return self.source is not SpacingSource.PIXELS

    @property
    def unit(self) -> str:
        return "mm" if self.in_mm else "px"

    @property
    def note(self) -> str:
        """Text after a length or area: where it was measured ('' in the patient or pixels)."""
        return "at detector" if self.source is SpacingSource.DETECTOR else ""

    @property
    def description(self) -> str:
        """One line for the Measurements panel: which attribute gave the scale."""
        if self.source is SpacingSource.PIXELS:
            return "No Pixel Spacing or Imager Pixel Spacing: measurements in pixels"
        spacing = f"{_fmt(self.row_mm)} \\ {_fmt(self.col_mm)} mm (row \\ column)"
        if self.source is SpacingSource.DETECTOR:
            text = f"Imager Pixel Spacing {spacing}: measured at the detector"
            if self.magnification is not None:
                text += (f"; estimated magnification {_fmt(self.magnification)} "
                         "(values at the patient are shown divided by it)")
            return text
        if self.source is SpacingSource.CALIBRATED:
            how = f" ({self.calibration})" if self.calibration else ""
            return f"Pixel Spacing {spacing}, calibrated{how}"
        return f"Pixel Spacing {spacing}"

    def to_mm(self, dx_px: float, dy_px: float) -> tuple[float, float]:
        """An image-pixel vector (columns, rows) in this scale's units."""
        return dx_px * self.col_mm, dy_px * self.row_mm

    def at_patient(self, value_mm: float, power: int = 1) -> float | None:
        """A detector length (power 1) or area (power 2) corrected by the magnification."""
        if self.source is not SpacingSource.DETECTOR or self.magnification is None:
            return None
        return value_mm / self.magnification ** power


PIXELS = PixelScale(SpacingSource.PIXELS)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def numbers(ds: Dataset | None, keyword: str) -> list[float] | None:
    """The finite numbers of a (multi-valued) element; None when absent, unreadable or not
    all numbers (a damaged value is treated as missing, never guessed)."""
    text = header_text(ds, keyword)
    if not text:
        return None
    try:
        values = [float(v) for v in text.split("\\")]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _pair(ds: Dataset | None, keyword: str) -> tuple[float, float] | None:
    """A valid ``row \\ column`` spacing (two positive numbers), else None."""
    values = numbers(ds, keyword)
    if values is None or len(values) != 2 or not all(v > 0 for v in values):
        return None
    return values[0], values[1]


def _positive(ds: Dataset, keyword: str) -> float | None:
    values = numbers(ds, keyword)
    return values[0] if values is not None and len(values) == 1 and values[0] > 0 else None


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(abs(x - y) <= _SAME * max(abs(x), abs(y)) for x, y in zip(a, b, strict=True))


def _calibration_text(ds: Dataset) -> str:
    kind = header_text(ds, "PixelSpacingCalibrationType")
    text = header_text(ds, "PixelSpacingCalibrationDescription")
    return " - ".join(x for x in (kind, text) if x)


def pixel_scale(ds: Dataset | None, frame: int = 0) -> PixelScale:
    """The scale of ``frame`` of the image described by ``ds`` (never raises)."""
    if ds is None:
        return PIXELS
    measures = functional_groups.frame_macro(ds, frame, "PixelMeasuresSequence")
    pixel = _pair(measures, "PixelSpacing") or _pair(ds, "PixelSpacing")
    imager = _pair(ds, "ImagerPixelSpacing")
    if imager is None:  # Enhanced DX/XA keep it in the XA/XRF or DX detector macros
        detector = functional_groups.frame_macro(ds, frame, "XAXRFFrameCharacteristicsSequence")
        imager = _pair(detector, "ImagerPixelSpacing")
    calibration = _calibration_text(ds)
    magnification = _positive(ds, "EstimatedRadiographicMagnificationFactor")
    if pixel is not None:
        if imager is None:
            source = SpacingSource.CALIBRATED if calibration else SpacingSource.PATIENT
            return PixelScale(source, *pixel, calibration=calibration)
        if calibration or not _same(pixel, imager):
            return PixelScale(SpacingSource.CALIBRATED, *pixel, calibration=calibration)
        return PixelScale(SpacingSource.DETECTOR, *pixel, magnification=magnification)
    if imager is not None:
        return PixelScale(SpacingSource.DETECTOR, *imager, magnification=magnification)
    return PIXELS


#: Pixel shapes further from square than this are taken as an error in the file and shown
#: square (a 1:20 pixel would turn a radiograph into a strip).
MAX_PIXEL_ASPECT = 10.0


def pixel_aspect(ds: Dataset | None, frame: int = 0) -> float:
    """Height / width of one pixel on the patient (1.0: square or unknown).

    From the spacing :func:`pixel_scale` chooses (row spacing is the vertical one), else from
    Pixel Aspect Ratio (0028,0034: vertical \\ horizontal), which a file without any spacing
    may carry. Shown at this aspect, a circle on the patient stays a circle on screen.
    """
    scale = pixel_scale(ds, frame)
    if scale.in_mm:
        ratio = scale.row_mm / scale.col_mm
    else:
        declared = _pair(ds, "PixelAspectRatio")
        ratio = declared[0] / declared[1] if declared is not None else 1.0
    if not math.isfinite(ratio) or not 1 / MAX_PIXEL_ASPECT <= ratio <= MAX_PIXEL_ASPECT:
        return 1.0
    return ratio
