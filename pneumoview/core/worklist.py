"""The triage worklist: batch results as studies to read, in priority order, with reviews.

Qt-free: the GUI's worklist dock (:mod:`pneumoview.qt.worklist`) shows these entries. One entry
per study (Study Instance UID; a file without one is its own entry): patient, date, images,
the highest probability, the AI state and the review state. Order (:func:`priority`): flagged
studies first by highest probability, then the other scored studies by probability, then the
studies the AI could not judge (they need a reader most of all, but have no score to rank
by), then errors. Filters and a search narrow the list (:func:`select`).

A report made on another machine (``pneumoview flag`` there) opens against a chosen folder:
:func:`resolve_rows` points each row's ``path`` at ``folder / relpath``.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pneumoview.core.review.store import Review, image_key


class AIState(str, enum.Enum):
    FLAGGED = "flagged"
    NOT_FLAGGED = "not flagged"
    NOT_SCORED = "not scored"
    ERROR = "error"


class ReviewState(str, enum.Enum):
    UNREVIEWED = "unreviewed"
    AGREE = "agree"
    DISAGREE = "disagree"
    UNCERTAIN = "uncertain"


class Filter(str, enum.Enum):
    ALL = "all studies"
    FLAGGED = "flagged"
    UNREVIEWED = "unreviewed"
    NOT_SCORED = "not scored"
    ERRORS = "errors"


_ORDER = {AIState.FLAGGED: 0, AIState.NOT_FLAGGED: 1, AIState.NOT_SCORED: 2, AIState.ERROR: 3}


@dataclass(frozen=True)
class Entry:
    """One study of the worklist."""

    key: str
    patient_id: str
    study_date: str
    study_instance_uid: str
    modality: str
    n_images: int
    n_flagged: int
    probability: float | None  # the highest scored image's
    state: AIState
    review: ReviewState
    best: Mapping[str, Any]  # the row of the image to open (highest-scoring, else the first)
    rows: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, repr=False)
    reviewer: str = ""
    message: str = ""

    @property
    def path(self) -> str:
        return str(self.best.get("path") or "")


def row_image_key(row: Mapping[str, Any]) -> str:
    """The review store's image key of a report row."""
    frame = row.get("frame")
    text = str(frame if frame is not None else "")
    number = frame if isinstance(frame, int) else int(text) if text.isdigit() else 0
    return image_key(str(row.get("sop_instance_uid") or ""), number,
                     str(row.get("path") or ""))


def _state(members: Sequence[Mapping[str, Any]]) -> tuple[AIState, list[Mapping[str, Any]]]:
    scored = [m for m in members if m.get("status") == "scored"
              and m.get("probability") is not None]
    if any(m.get("flagged") for m in scored):
        return AIState.FLAGGED, scored
    if scored:
        return AIState.NOT_FLAGGED, scored
    if any(m.get("status") == "not_scored" for m in members):
        return AIState.NOT_SCORED, scored
    return AIState.ERROR, scored


def _review_state(members: Sequence[Mapping[str, Any]],
                  reviews: Mapping[str, Review]) -> tuple[ReviewState, str]:
    latest: Review | None = None
    for m in members:
        r = reviews.get(row_image_key(m)) if m.get("sop_instance_uid") or m.get("path") else None
        if r is not None and (latest is None or r.id > latest.id):
            latest = r
    if latest is None:
        return ReviewState.UNREVIEWED, ""
    return ReviewState(latest.decision.value), latest.reader


def build(rows: Iterable[Mapping[str, Any]],
          reviews: Mapping[str, Review] | None = None) -> list[Entry]:
    """Report rows (typed, as :func:`report.parse_row` gives) -> entries in priority order.
    Skipped files (not DICOM) are no study and are left out."""
    reviews = reviews or {}
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "skipped":
            continue
        uid = str(row.get("study_instance_uid") or "")
        groups.setdefault(uid or f"file:{row.get('relpath')}", []).append(row)
    entries = []
    for key, members in groups.items():
        state, scored = _state(members)
        best = max(scored, key=lambda m: m["probability"]) if scored else members[0]
        review, reader = _review_state(members, reviews)
        n_flagged = sum(1 for m in scored if m.get("flagged"))
        entries.append(Entry(
            key=key, patient_id=str(best.get("patient_id") or ""),
            study_date=str(best.get("study_date") or ""),
            study_instance_uid=str(best.get("study_instance_uid") or ""),
            modality=str(best.get("modality") or ""), n_images=len(members),
            n_flagged=n_flagged, probability=best.get("probability") if scored else None,
            state=state, review=review, best=best, rows=tuple(members), reviewer=reader,
            message="" if scored else str(best.get("message") or "")))
    return sorted(entries, key=priority)


def priority(entry: Entry) -> tuple[int, float, str]:
    """Sort key: see the module docstring (ties by the study key, so the order is stable)."""
    prob = entry.probability if entry.probability is not None else -1.0
    return (_ORDER[entry.state], -prob, entry.key)


def with_reviews(entries: Iterable[Entry], reviews: Mapping[str, Review]) -> list[Entry]:
    """The same entries with their review states brought up to date (order unchanged)."""
    out = []
    for e in entries:
        review, reader = _review_state(e.rows, reviews)
        out.append(replace(e, review=review, reviewer=reader))
    return out


def matches(entry: Entry, flt: Filter, search: str = "") -> bool:
    if flt is Filter.FLAGGED and entry.state is not AIState.FLAGGED:
        return False
    if flt is Filter.UNREVIEWED and entry.review is not ReviewState.UNREVIEWED:
        return False
    if flt is Filter.NOT_SCORED and entry.state is not AIState.NOT_SCORED:
        return False
    if flt is Filter.ERRORS and entry.state is not AIState.ERROR:
        return False
    needle = search.strip().lower()
    if needle:
        hay = " ".join([entry.patient_id, entry.study_date, entry.study_instance_uid,
                        entry.modality, entry.message, *(str(r.get("relpath") or "")
                                                         for r in entry.rows)]).lower()
        return needle in hay
    return True


def select(entries: Iterable[Entry], flt: Filter = Filter.ALL, search: str = "") -> list[Entry]:
    return [e for e in entries if matches(e, flt, search)]


def next_unreviewed(entries: Sequence[Entry], after: int) -> int | None:
    """Index of the next unreviewed entry after ``after`` (wrapping), or None."""
    n = len(entries)
    for step in range(1, n + 1):
        i = (after + step) % n
        if entries[i].review is ReviewState.UNREVIEWED:
            return i
    return None


def resolve_rows(rows: Iterable[Mapping[str, Any]], folder: str) -> list[dict[str, Any]]:
    """Rows of a report made elsewhere, their ``path`` pointed at ``folder / relpath``."""
    root = os.path.abspath(folder)
    out = []
    for row in rows:
        rel = str(row.get("relpath") or "")
        parts = [p for p in rel.split("/") if p not in ("", ".", "..")]
        out.append({**row, "path": os.path.join(root, *parts) if parts else root})
    return out
