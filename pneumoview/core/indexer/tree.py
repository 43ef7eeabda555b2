"""Grouping instances into the Patient -> Study -> Series tree, sorted for display.

Files without a PatientID are grouped by name (or into one "Unknown patient"); files without
a Study/Series Instance UID go into one "Unknown study"/"Unknown series" group per parent,
whose uid is a stable "unknown:..." key that no real UID can equal. Order: patients by name
then ID, studies by date/time, series by SeriesNumber, instances by InstanceNumber then path
(missing numbers last).
"""

from __future__ import annotations

from collections.abc import Iterable

from pneumoview.core.indexer.records import Instance, Patient, Series, Study

__all__ = ["build_tree"]

_SeriesMap = dict[str, list[Instance]]
_StudyMap = dict[str, _SeriesMap]


def _first(values: Iterable[str]) -> str:
    return next((v for v in values if v), "")


def _num_key(number: int | None) -> tuple[int, int]:
    return (1, 0) if number is None else (0, number)


def build_tree(instances: Iterable[Instance]) -> list[Patient]:
    """Group instances Patient -> Study -> Series, sorted for display (see the module doc)."""
    patients: dict[tuple[str, str], _StudyMap] = {}
    for inst in instances:
        pkey = (inst.patient_id, "") if inst.patient_id else ("", inst.patient_name)
        skey = inst.study_instance_uid or ""
        rkey = inst.series_instance_uid or ""
        patients.setdefault(pkey, {}).setdefault(skey, {}).setdefault(rkey, []).append(inst)
    out = [_patient(pid, pname, studies) for (pid, pname), studies in patients.items()]
    out.sort(key=lambda p: (p.placeholder, p.name, p.id))
    return out


def _patient(pid: str, pname: str, studies: _StudyMap) -> Patient:
    pkey_text = pid or f"name:{pname}"
    all_p = [i for series in studies.values() for insts in series.values() for i in insts]
    study_list = [_study(suid, series_map, pkey_text) for suid, series_map in studies.items()]
    study_list.sort(key=lambda s: (s.date, s.time, s.description, s.uid))
    return Patient(
        id=pid,
        name=pname or _first(i.patient_name for i in all_p)
        or ("Unknown patient" if not pid else ""),
        birth_date=_first(i.patient_birth_date for i in all_p),
        sex=_first(i.patient_sex for i in all_p),
        studies=study_list,
        placeholder=not pid and not pname)


def _study(suid: str, series_map: _SeriesMap, pkey_text: str) -> Study:
    all_s = [i for insts in series_map.values() for i in insts]
    study_uid = suid or f"unknown:study:{pkey_text}"
    series_list = [_series(ruid, insts, study_uid) for ruid, insts in series_map.items()]
    series_list.sort(key=lambda s: (_num_key(s.number), s.description, s.uid))
    return Study(
        uid=study_uid,
        date=_first(i.study_date for i in all_s),
        time=_first(i.study_time for i in all_s),
        description=_first(i.study_description for i in all_s)
        or ("Unknown study" if not suid else ""),
        accession=_first(i.accession_number for i in all_s),
        series=series_list,
        placeholder=not suid)


def _series(ruid: str, insts: list[Instance], study_uid: str) -> Series:
    insts.sort(key=lambda i: (_num_key(i.instance_number), i.path))
    number = next((i.series_number for i in insts if i.series_number is not None), None)
    return Series(
        uid=ruid or f"unknown:series:{study_uid}",
        number=number,
        description=_first(i.series_description for i in insts)
        or ("Unknown series" if not ruid else ""),
        modality=_first(i.modality for i in insts),
        instances=insts,
        placeholder=not ruid)
