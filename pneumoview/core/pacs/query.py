"""A study query (the GUI's form, ``pull``'s options) as a C-FIND identifier or QIDO filters,
and the answers as one flat :class:`StudyMatch` whichever protocol gave them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from pneumoview.core.pacs.nodes import PacsError

_DATE = re.compile(r"^\d{8}$")
#: What a study match shows (study level return keys).
RETURN_KEYS = ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "StudyTime",
               "AccessionNumber", "StudyDescription", "ModalitiesInStudy",
               "NumberOfStudyRelatedInstances")


@dataclass(frozen=True)
class StudyQuery:
    """Empty fields match anything; at least one field must narrow the query."""

    patient_id: str = ""
    patient_name: str = ""  # DICOM wildcards * and ? allowed
    study_uid: str = ""
    accession: str = ""
    date_from: str = ""  # YYYYMMDD
    date_to: str = ""
    modality: str = ""

    def __post_init__(self) -> None:
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value and not _DATE.match(value):
                raise PacsError(f"{name.replace('_', ' ')} {value!r} is not a date YYYYMMDD")
        if not any((self.patient_id, self.patient_name, self.study_uid, self.accession,
                    self.date_from, self.date_to)):
            raise PacsError("give a patient ID or name, a study UID, an accession number or a "
                            "date range: a query for every study of a PACS is refused")

    @property
    def date_range(self) -> str:
        if not (self.date_from or self.date_to):
            return ""
        return f"{self.date_from}-{self.date_to}"

    def identifier(self) -> Dataset:
        """The C-FIND identifier at STUDY level."""
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        for key in RETURN_KEYS:
            setattr(ds, key, "")
        ds.PatientID = self.patient_id
        ds.PatientName = self.patient_name
        ds.StudyInstanceUID = self.study_uid
        ds.AccessionNumber = self.accession
        ds.StudyDate = self.date_range
        ds.ModalitiesInStudy = self.modality
        return ds

    def qido_filters(self) -> dict[str, str]:
        pairs = {"PatientID": self.patient_id, "PatientName": self.patient_name,
                 "StudyInstanceUID": self.study_uid, "AccessionNumber": self.accession,
                 "StudyDate": self.date_range, "ModalitiesInStudy": self.modality}
        return {k: v for k, v in pairs.items() if v}


@dataclass(frozen=True)
class StudyMatch:
    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    accession: str
    description: str
    modalities: str
    instances: int | None

    @classmethod
    def from_dataset(cls, ds: Dataset) -> StudyMatch:
        def text(key: str) -> str:
            value: Any = ds.get(key, "")
            if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
                return "\\".join(str(v) for v in value)
            return str(value or "")

        count = text("NumberOfStudyRelatedInstances")
        return cls(study_uid=text("StudyInstanceUID"), patient_id=text("PatientID"),
                   patient_name=text("PatientName"), study_date=text("StudyDate"),
                   accession=text("AccessionNumber"), description=text("StudyDescription"),
                   modalities=text("ModalitiesInStudy"),
                   instances=int(count) if count.isdigit() else None)
