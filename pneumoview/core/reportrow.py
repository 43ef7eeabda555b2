"""One report row: its columns (the CSV's, in order), its status, its typed values.

:class:`ReportRow` is the one list of columns: :data:`pneumoview.core.report.COLUMNS` is read
from its fields, so a column is added by adding a field here (at the end: columns are only ever
appended, and each appended column bumps ``report.REPORT_FORMAT``). :class:`Status` is the one
home of the status values; being a ``str`` enum, a member equals its text (``Status.SCORED ==
"scored"``), so rows read back from a CSV compare with it as they are.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any


class Status(str, enum.Enum):
    """What happened to one file; the report's ``status`` column holds the value."""

    SCORED = "scored"  # the model scored it (probability and flagged are set)
    NOT_SCORED = "not_scored"  # a DICOM file the model must not judge (a lateral, a CT, ...)
    SKIPPED = "skipped"  # not DICOM, or not a regular file: nothing to read
    ERROR = "error"  # a DICOM-looking file that could not be read or decoded

    def __str__(self) -> str:
        return self.value


@dataclass
class ReportRow:
    """The values of one report row, typed (None is an empty cell)."""

    path: str
    relpath: str
    file_size: int | None = None
    mtime_ns: int | None = None
    status: Status = Status.ERROR
    probability: float | None = None
    flagged: bool | None = None
    threshold: float | None = None
    message: str = ""
    patient_id: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    sop_instance_uid: str = ""
    view_position: str = ""
    model_sha256: str = ""
    # columns 16-20 (report format 1 ends here)
    study_date: str = ""
    modality: str = ""
    frame: int | None = None
    model_label: str = ""
    elapsed_ms: float | None = None
    # appended columns, one per report format
    model_id: str = ""
    logit: float | None = None  # the raw logit, full precision (format 4)
    operating_point: str = ""  # which threshold the row used (format 4; core.oppoints)
    # report format 5: the input gate (issue 16)
    gate: str = ""  # the verdict kind; "" not run, "off" (--no-gate), "absent" (no gate)
    atypicality: float | None = None
    atypicality_percentile: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """``{column: value}`` in column order (what ``run_batch``'s ``on_rows`` receives)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def set(self, status: Status, message: str = "") -> None:
        """Give the row its outcome (a scored row gets its probability apart)."""
        self.status = status
        self.message = message


#: The columns, in order (re-exported by :mod:`pneumoview.core.report`).
COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ReportRow))

STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
