"""Measurements and annotations as data: what the reader drew, in image pixel coordinates.

An :class:`Annotation` knows its kind, its control points (the handles a reader drags), the
frame it was drawn on and, for text and arrows, its text. What it *measures* is computed
on demand from the points and the image's :class:`PixelScale` (:func:`measure_lines`), never
stored: a file whose spacing is read differently by a later version shows the corrected value.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np

from pneumoview.core.reading import geometry, roi
from pneumoview.core.reading.geometry import Point
from pneumoview.core.reading.spacing import PixelScale

#: Longest text kept for a text annotation (a label, not a report).
MAX_TEXT = 500


class Kind(str, Enum):
    DISTANCE = "distance"
    ANGLE = "angle"  # points: end, vertex, end
    RECTANGLE = "rectangle"  # points: two opposite corners
    ELLIPSE = "ellipse"  # points: two opposite corners of its bounding box
    ARROW = "arrow"  # points: tail, head (the head points at the finding)
    TEXT = "text"  # points: anchor (top-left of the text)

    @property
    def n_points(self) -> int:
        return _N_POINTS[self]

    @property
    def is_measurement(self) -> bool:
        return self in (Kind.DISTANCE, Kind.ANGLE, Kind.RECTANGLE, Kind.ELLIPSE)

    @property
    def label(self) -> str:
        return self.value.capitalize()


_N_POINTS = {Kind.DISTANCE: 2, Kind.ANGLE: 3, Kind.RECTANGLE: 2, Kind.ELLIPSE: 2,
             Kind.ARROW: 2, Kind.TEXT: 1}


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Annotation:
    kind: Kind
    points: tuple[Point, ...]
    frame: int = 0
    text: str = ""
    id: str = field(default_factory=_new_id)

    def __post_init__(self) -> None:
        if len(self.points) != self.kind.n_points:
            raise ValueError(f"a {self.kind.value} has {self.kind.n_points} points, "
                             f"not {len(self.points)}")
        pts = tuple((float(x), float(y)) for x, y in self.points)
        if not all(math.isfinite(v) for p in pts for v in p):
            raise ValueError("annotation points must be finite numbers")
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "text", str(self.text)[:MAX_TEXT])

    def moved(self, index: int, point: Point) -> Annotation:
        """The same annotation with handle ``index`` at ``point``."""
        pts = list(self.points)
        pts[index] = point
        return replace(self, points=tuple(pts))

    def translated(self, dx: float, dy: float) -> Annotation:
        return replace(self, points=tuple((x + dx, y + dy) for x, y in self.points))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind.value, "frame": self.frame,
                "points": [list(p) for p in self.points], "text": self.text}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Annotation:
        """Rebuild one from :meth:`to_json`'s form; ValueError naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError("an annotation must be an object")
        try:
            kind = Kind(data.get("kind"))
        except ValueError:
            raise ValueError(f"unknown annotation kind {str(data.get('kind'))[:40]!r}") from None
        points = data.get("points")
        if not isinstance(points, list) or not all(
                isinstance(p, list) and len(p) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
                for p in points):
            raise ValueError("annotation points must be a list of [x, y] numbers")
        frame, text, ident = data.get("frame", 0), data.get("text", ""), data.get("id")
        if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
            raise ValueError("annotation frame must be a non-negative integer")
        if not isinstance(text, str):
            raise ValueError("annotation text must be a string")
        if not isinstance(ident, str) or not ident or len(ident) > 64:
            ident = _new_id()
        return cls(kind, tuple((p[0], p[1]) for p in points), frame, text, ident)


def measure_lines(a: Annotation, scale: PixelScale, values: np.ndarray | None = None,
                  units: str = "") -> list[str]:
    """What the annotation measures, as the lines shown beside it and in the panel.

    ``values``: the modality values of the annotation's frame, for region statistics (a
    region on a colour image, or without values, shows its area only).
    """
    p = a.points
    if a.kind is Kind.DISTANCE:
        return [geometry.distance(p[0], p[1], scale).text()]
    if a.kind is Kind.ANGLE:
        return [geometry.angle(p[0], p[1], p[2], scale).text()]
    if a.kind in (Kind.RECTANGLE, Kind.ELLIPSE):
        area = f"Area {geometry.area(a.kind.value, p[0], p[1], scale).text()}"
        if values is None or values.ndim != 2:
            return [area]
        stats = roi.roi_stats(values, a.kind.value, p[0], p[1], scale, units)
        return stats.lines() if stats is not None else ["No pixel centre inside", area]
    return [a.text] if a.text else []
