"""What indexing produces: one :class:`Instance` per DICOM file, grouped Patient -> Study ->
Series, and the progress / result records an indexing run reports."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

__all__ = ["Instance", "Series", "Study", "Patient", "IndexProgress", "IndexResult",
           "DICOMDIR_SOP_CLASS", "PathType", "INSTANCE_FIELDS"]

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage

PathType = str | os.PathLike[str]


@dataclass
class Instance:
    """One DICOM file's indexed header fields (strings are '' when absent)."""

    path: str
    sop_instance_uid: str
    instance_number: int | None
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    study_instance_uid: str
    study_date: str
    study_time: str
    study_description: str
    accession_number: str
    series_instance_uid: str
    series_number: int | None
    series_description: str
    modality: str
    rows: int
    columns: int
    n_frames: int
    photometric: str
    transfer_syntax: str
    view_position: str
    body_part: str
    sop_class_uid: str
    file_size: int
    mtime_ns: int


INSTANCE_FIELDS = tuple(f.name for f in dataclasses.fields(Instance))


@dataclass
class Series:
    uid: str
    number: int | None
    description: str
    modality: str
    instances: list[Instance]
    placeholder: bool = False  # True for the "Unknown series" group of files without a UID


@dataclass
class Study:
    uid: str
    date: str
    time: str
    description: str
    accession: str
    series: list[Series]
    placeholder: bool = False


@dataclass
class Patient:
    id: str
    name: str
    birth_date: str
    sex: str
    studies: list[Study]
    placeholder: bool = False


@dataclass
class IndexProgress:
    files_seen: int
    dicom_found: int
    non_dicom: int
    errors: int
    current: str  # path of the file being read, relative to the indexed root


@dataclass
class IndexResult:
    root: str
    patients: list[Patient]
    instances: list[Instance]
    non_dicom: list[str]
    errors: list[tuple[str, str]]
    cancelled: bool
    from_cache: int
    headers_read: int = 0  # headers actually parsed this run (0 for a fully cached reopen)
    dicomdirs: list[str] = field(default_factory=list)  # DICOMDIR files that were followed
    elapsed_s: float = 0.0
