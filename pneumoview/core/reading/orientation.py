"""Rotation in 90-degree steps, flips, and the orientation markers that follow them.

A :class:`ViewTransform` is ``R^k . F^f`` acting on image vectors (x right, y down): first an
optional horizontal mirror ``F``, then ``k`` clockwise quarter turns ``R``. The reader's
commands (rotate, flip horizontally or vertically *on screen*) compose on the left, so they
always act on what is displayed. The same transform maps points (annotations), whole arrays
(the export) and the patient-direction letters on the four edges.

The letters come from Image Orientation (Patient) (C.7.6.2.1.1: direction cosines in the
patient's LPS frame) when the file has it, else from Patient Orientation (C.7.6.1.1.1: the
directions of the rows and of the columns, e.g. ``L\\F`` for a PA chest). The row direction is
the one toward the image's right edge, the column direction toward its bottom edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from pneumoview.core import functional_groups
from pneumoview.core.dicomio import header_text
from pneumoview.core.reading.spacing import numbers

_R = np.array([[0, -1], [1, 0]])  # clockwise on a y-down screen: right -> down
_F = np.array([[-1, 0], [0, 1]])
_OPPOSITE = str.maketrans("LRAPHF", "RLPAFH")
_LETTERS = set("LRAPHF")
#: Direction-cosine components smaller than this do not get a letter (numerical noise).
_COSINE_EPS = 1e-4
EDGES = ("left", "top", "right", "bottom")
_EDGE_VECTORS = {"left": (-1, 0), "top": (0, -1), "right": (1, 0), "bottom": (0, 1)}


@dataclass(frozen=True)
class ViewTransform:
    """``quarter_turns`` clockwise (0-3) applied after an optional horizontal ``flip``."""

    quarter_turns: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "quarter_turns", self.quarter_turns % 4)

    # -- the reader's commands (act on what is on screen) --------------------------------------
    def rotated(self, clockwise: bool = True) -> ViewTransform:
        return ViewTransform(self.quarter_turns + (1 if clockwise else -1), self.flip)

    def flipped_horizontally(self) -> ViewTransform:
        return ViewTransform(-self.quarter_turns, not self.flip)  # F R^k = R^-k F

    def flipped_vertically(self) -> ViewTransform:
        return ViewTransform(2 - self.quarter_turns, not self.flip)  # V = R^2 F

    @property
    def is_identity(self) -> bool:
        return self.quarter_turns == 0 and not self.flip

    # -- maps ----------------------------------------------------------------------------------
    def matrix(self) -> np.ndarray:
        """The 2x2 integer matrix acting on image vectors (x, y)."""
        m = np.linalg.matrix_power(_R, self.quarter_turns)
        return m @ _F if self.flip else m

    def display_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """(rows, columns) on screen of an image of ``shape``."""
        h, w = shape
        return (w, h) if self.quarter_turns % 2 else (h, w)

    def to_display(self, point: tuple[float, float], shape: tuple[int, int],
                   ) -> tuple[float, float]:
        """An image point (x, y) where it appears in the transformed image's pixels."""
        h, w = shape
        dh, dw = self.display_shape(shape)
        x, y = self.matrix() @ np.array([point[0] - w / 2, point[1] - h / 2])
        return float(x + dw / 2), float(y + dh / 2)

    def to_image(self, point: tuple[float, float], shape: tuple[int, int],
                 ) -> tuple[float, float]:
        """The inverse of :meth:`to_display`."""
        h, w = shape
        dh, dw = self.display_shape(shape)
        x, y = self.matrix().T @ np.array([point[0] - dw / 2, point[1] - dh / 2])  # orthogonal
        return float(x + w / 2), float(y + h / 2)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """The array as displayed (rows first; extra axes such as RGB are kept)."""
        out = array[:, ::-1] if self.flip else array
        return np.rot90(out, -self.quarter_turns, axes=(0, 1))

    def edge_markers(self, axes: tuple[str, str] | None) -> dict[str, str]:
        """The letters on each screen edge for image axes ``(row dir, column dir)``; {} when
        the orientation is unknown."""
        if axes is None:
            return {}
        row_dir, col_dir = axes
        inverse = self.matrix().T
        out = {}
        for edge, vec in _EDGE_VECTORS.items():
            ix, iy = (int(v) for v in inverse @ np.array(vec))
            if ix:
                out[edge] = row_dir if ix > 0 else opposite(row_dir)
            else:
                out[edge] = col_dir if iy > 0 else opposite(col_dir)
        return out


def opposite(letters: str) -> str:
    """``"LP"`` -> ``"RA"``: the direction pointing the other way."""
    return letters.translate(_OPPOSITE)


def cosine_letters(vector: tuple[float, float, float]) -> str:
    """LPS direction cosines as letters, the largest component first (``(0.9, 0, -0.4)``:
    ``"LF"``)."""
    names = (("L", "R"), ("P", "A"), ("H", "F"))
    parts = sorted(((abs(v), names[i][0] if v > 0 else names[i][1])
                    for i, v in enumerate(vector) if abs(v) > _COSINE_EPS), reverse=True)
    return "".join(letter for _mag, letter in parts)


def _from_cosines(source: Dataset) -> tuple[str, str] | None:
    values = numbers(source, "ImageOrientationPatient")
    if values is None or len(values) != 6:
        return None
    row, col = values[:3], values[3:]
    if not (0.5 < math.hypot(*row) < 1.5 and 0.5 < math.hypot(*col) < 1.5):
        return None  # not unit vectors: damaged, better no markers than wrong ones
    letters = cosine_letters((row[0], row[1], row[2])), cosine_letters((col[0], col[1], col[2]))
    return letters if all(letters) else None


def _from_patient_orientation(ds: Dataset) -> tuple[str, str] | None:
    items = [v.strip().upper() for v in header_text(ds, "PatientOrientation").split("\\")]
    if len(items) != 2 or not all(v and set(v) <= _LETTERS for v in items):
        return None  # also quadruped terms (CR, CD...): not shown
    return items[0], items[1]


def image_axes(ds: Dataset | None, frame: int = 0) -> tuple[str, str] | None:
    """(row direction, column direction) letters of ``frame``, or None when not stated."""
    if ds is None:
        return None
    plane = functional_groups.frame_macro(ds, frame, "PlaneOrientationSequence")
    for source in (plane, ds):
        axes = _from_cosines(source) if source is not None else None
        if axes is not None:
            return axes
    return _from_patient_orientation(ds)
