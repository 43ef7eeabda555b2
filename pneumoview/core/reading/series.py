"""The series of a study, as the thumbnail strip lists them (pure data, no Qt)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SeriesEntry:
    series_uid: str
    number: int | None
    description: str
    modality: str
    first: Any  # the Instance shown for the series: lowest instance number, then path
    count: int

    @property
    def title(self) -> str:
        head = f"Se {self.number}" if self.number is not None else "Series"
        return " ".join(x for x in (head, self.modality, self.description) if x)


def _order(inst: Any) -> tuple[int, int, str]:
    n = getattr(inst, "instance_number", None)
    return (0 if n is not None else 1, n or 0, str(inst.path))


def study_series(instances: Iterable[Any], study_uid: str) -> list[SeriesEntry]:
    """The series of study ``study_uid`` in series-number order (unnumbered last)."""
    groups: dict[str, list[Any]] = {}
    for inst in instances:
        if inst.study_instance_uid == study_uid:
            groups.setdefault(inst.series_instance_uid, []).append(inst)
    out = []
    for uid, members in groups.items():
        first = min(members, key=_order)
        out.append(SeriesEntry(uid, first.series_number, first.series_description,
                               first.modality, first, len(members)))
    return sorted(out, key=lambda e: (e.number is None, e.number or 0, e.series_uid))
