"""Compare with prior: which study is the current one's prior.

The prior of a study is the same patient's (PatientID) most recent study that was made before
it (StudyDate, then StudyTime). Patients are matched by PatientID only: names are spelt in too
many ways to be a key, and an empty PatientID matches nobody (anonymised files often have none,
and two anonymous patients are not one). A study whose date is unknown has no prior, and none
of unknown date is anyone's prior; on the same day, both times must be known to say which came
first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from pneumoview.core.indexer import Instance

__all__ = ["NoPrior", "Prior", "find_prior", "study_moment"]


class NoPrior(Enum):
    """Why there is no prior to show (the text is the status message's end)."""

    NO_PATIENT_ID = "the image has no PatientID to find the patient's other studies by"
    NO_STUDY_DATE = "the image's study has no StudyDate"
    NONE_EARLIER = "no earlier study of this patient is open"


@dataclass(frozen=True)
class Prior:
    """The prior study and the image of it to show (its first series' first image)."""

    study_instance_uid: str
    study_date: str
    instance: Instance


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def study_moment(date: str, time: str) -> tuple[str, str | None] | None:
    """``(YYYYMMDD, HHMMSS.ffffff or None)`` for comparing studies; None without a valid date.

    DA may be written ``YYYY.MM.DD`` by old (ACR-NEMA) writers and TM ``HH:MM:SS``; both are
    read by their digits. TM may stop after the hour or minute: the missing parts are zeros.
    """
    day = _digits(date)
    if len(day) != 8:
        return None
    whole, _, fraction = time.strip().partition(".")
    clock = _digits(whole)
    if not clock or len(clock) % 2 or len(clock) > 6:
        return day, None
    return day, f"{clock.ljust(6, '0')}.{_digits(fraction).ljust(6, '0')[:6]}"


def _earlier(a: tuple[str, str | None], b: tuple[str, str | None]) -> bool:
    """Whether moment ``a`` is known to come before ``b``."""
    if a[0] != b[0]:
        return a[0] < b[0]
    return a[1] is not None and b[1] is not None and a[1] < b[1]


def _sort_key(inst: Instance) -> tuple[int, int, str]:
    big = 1 << 31
    return (inst.series_number if inst.series_number is not None else big,
            inst.instance_number if inst.instance_number is not None else big, inst.path)


def find_prior(current: Instance, instances: Iterable[Instance]) -> Prior | NoPrior:
    """The prior of ``current``'s study among ``instances`` (an open folder), or why none."""
    if not current.patient_id.strip():
        return NoPrior.NO_PATIENT_ID
    now = study_moment(current.study_date, current.study_time)
    if now is None:
        return NoPrior.NO_STUDY_DATE
    studies: dict[str, list[Instance]] = {}
    for inst in instances:
        if inst.patient_id == current.patient_id \
                and inst.study_instance_uid != current.study_instance_uid:
            studies.setdefault(inst.study_instance_uid, []).append(inst)
    best: tuple[tuple[str, str], str, list[Instance]] | None = None
    for uid, members in studies.items():
        moment = study_moment(members[0].study_date, members[0].study_time)
        if moment is None or not _earlier(moment, now):
            continue
        key = (moment[0], moment[1] or "")
        if best is None or key > best[0]:
            best = (key, uid, members)
    if best is None:
        return NoPrior.NONE_EARLIER
    _key, uid, members = best
    return Prior(uid, members[0].study_date, min(members, key=_sort_key))
