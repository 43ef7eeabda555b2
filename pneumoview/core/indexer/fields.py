"""The header fields the tree needs, where they live, and the value normalisation that both
readers (the fast parser and the pydicom path) share, so that they agree exactly."""

from __future__ import annotations

__all__ = ["STRING", "UINT16", "INT", "WANTED", "CHARSET_TAG", "ESSENTIAL_TAGS", "INCOMPLETE",
           "STOP_AFTER", "WANTED_TAGS", "KEYWORDS", "clean", "to_int"]

STRING = 0
UINT16 = 1
INT = 2

#: (group << 16 | element) -> (Instance field, kind). SpecificCharacterSet is handled apart.
WANTED: dict[int, tuple[str, int]] = {
    0x00080016: ("sop_class_uid", STRING),
    0x00080018: ("sop_instance_uid", STRING),
    0x00080020: ("study_date", STRING),
    0x00080030: ("study_time", STRING),
    0x00080050: ("accession_number", STRING),
    0x00080060: ("modality", STRING),
    0x00081030: ("study_description", STRING),
    0x0008103E: ("series_description", STRING),
    0x00100010: ("patient_name", STRING),
    0x00100020: ("patient_id", STRING),
    0x00100030: ("patient_birth_date", STRING),
    0x00100040: ("patient_sex", STRING),
    0x00180015: ("body_part", STRING),
    0x00185101: ("view_position", STRING),
    0x0020000D: ("study_instance_uid", STRING),
    0x0020000E: ("series_instance_uid", STRING),
    0x00200011: ("series_number", INT),
    0x00200013: ("instance_number", INT),
    0x00280004: ("photometric", STRING),
    0x00280008: ("n_frames", INT),
    0x00280010: ("rows", UINT16),
    0x00280011: ("columns", UINT16),
}
CHARSET_TAG = 0x00080005
#: A header with none of these is treated as damaged (pydicom silently returns what it read
#: of a truncated file, so this is how both readers catch truncation before the identifiers).
ESSENTIAL_TAGS = (0x00080016, 0x00080018, 0x0020000D, 0x00280010, 0x00100020)
INCOMPLETE = ("DICOM header has no identifiers and no image size (file truncated or "
              "damaged?); copy the file again from its source")
STOP_AFTER = 0x00280011
WANTED_TAGS = frozenset(WANTED) | {CHARSET_TAG}

#: Keywords for the pydicom path, in the same order as WANTED.
KEYWORDS: dict[str, str] = {
    "sop_class_uid": "SOPClassUID", "sop_instance_uid": "SOPInstanceUID",
    "study_date": "StudyDate", "study_time": "StudyTime", "accession_number": "AccessionNumber",
    "modality": "Modality", "study_description": "StudyDescription",
    "series_description": "SeriesDescription", "patient_name": "PatientName",
    "patient_id": "PatientID", "patient_birth_date": "PatientBirthDate",
    "patient_sex": "PatientSex", "body_part": "BodyPartExamined",
    "view_position": "ViewPosition", "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID", "series_number": "SeriesNumber",
    "instance_number": "InstanceNumber", "photometric": "PhotometricInterpretation",
    "n_frames": "NumberOfFrames", "rows": "Rows", "columns": "Columns",
}


def clean(text: str) -> str:
    """Multi-values joined by a backslash, each stripped of padding spaces and NULs."""
    if "\\" in text:
        return "\\".join(part.strip(" \x00") for part in text.split("\\"))
    return text.strip(" \x00")


def to_int(text: str) -> int | None:
    """The first value of an IS/DS-like text as an int (None when absent or not whole)."""
    first = text.split("\\", 1)[0].strip(" \x00")
    if not first:
        return None
    try:
        return int(first)
    except ValueError:
        pass
    try:
        value = float(first)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None
