"""What one AI result object says: the numbers, the model that made them, the source image.

:class:`AIResult` is built from a report row (the batch's typed values) or a viewer
:class:`~pneumoview.core.inference.Prediction`, so the DICOM objects say exactly what the CSV
report or the panel said: the probability is the report's value, never a recomputed one.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.valuerep import validate_value

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.gatepolicy import GATE_ABSENT, GATE_OFF

#: Source attributes an AI result object cannot be filed without (it joins the source's study).
REQUIRED_SOURCE = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@dataclass(frozen=True)
class ModelIdentity:
    """The algorithm's identity as the objects record it (TID 4019 and the caption)."""

    name: str
    version: str
    weights_sha256: str
    model_id: str

    @classmethod
    def from_info(cls, info: Any) -> ModelIdentity:
        """From a :class:`~pneumoview.core.modelinfo.ModelInfo`."""
        return cls(name=str(info.name), version=str(info.version),
                   weights_sha256=str(info.weights_sha256), model_id=str(info.model_id))

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} (sha256 {self.weights_sha256[:8]})"


@dataclass(frozen=True)
class AIResult:
    """One scored image's result. ``operating_point`` names the threshold's origin (a key of
    :data:`codes.OPERATING_POINTS`, or free text); ``gate`` is the input gate's verdict when
    the run recorded one ("" = unknown, the gate was not consulted or not recorded)."""

    probability: float
    threshold: float
    flagged: bool
    model: ModelIdentity
    frame: int = 0
    operating_point: str = ""
    gate: str = ""

    def __post_init__(self) -> None:
        for name in ("probability", "threshold"):
            value = getattr(self, name)
            if not (isinstance(value, float | int) and math.isfinite(value) and 0 <= value <= 1):
                raise PneumoViewError(f"the AI result's {name} is not a fraction in [0, 1] "
                                      f"({value!r})")

    @property
    def state_text(self) -> str:
        return "Flagged: possible pneumonia" if self.flagged else "Not flagged"

    @classmethod
    def from_row(cls, row: Mapping[str, Any], model: ModelIdentity) -> AIResult:
        """From a scored report row (typed, as :func:`report.parse_row` gives it)."""
        if row.get("status") != "scored" or row.get("probability") is None:
            raise PneumoViewError("the report row is not a scored result", row.get("path"))
        return cls(probability=float(row["probability"]), threshold=float(row["threshold"]),
                   flagged=bool(row["flagged"]), model=model, frame=int(row.get("frame") or 0),
                   operating_point=str(row.get("operating_point") or ""),
                   gate=_gate_text(row))

    @classmethod
    def from_prediction(cls, prediction: Any, model: ModelIdentity,
                        operating_point: str = "") -> AIResult:
        """From a scored viewer :class:`~pneumoview.core.inference.Prediction`."""
        if not prediction.scored:
            raise PneumoViewError("the image was not scored", prediction.path)
        return cls(probability=float(prediction.probability),
                   threshold=float(prediction.threshold), flagged=bool(prediction.flagged),
                   model=model, frame=int(prediction.frame), operating_point=operating_point,
                   gate=str(prediction.reason or ""))


def _gate_text(row: Mapping[str, Any]) -> str:
    """The gate's verdict from a row: its ``gate`` column where the report has one, else the
    message a run writes when it scored an image despite the gate."""
    gate = str(row.get("gate") or "")
    if gate in (GATE_OFF, GATE_ABSENT):  # --no-gate, or no input gate: nothing was judged
        return ""
    if gate:
        return gate
    message = str(row.get("message") or "")
    return message if message.startswith("scored anyway despite") else ""


def check_source(header: Dataset, path: str) -> None:
    """Refuse a source that an AI result cannot reference or be filed with."""
    missing = [k for k in REQUIRED_SOURCE if not str(header.get(k, "") or "").strip()]
    if missing:
        raise PneumoViewError("cannot write a DICOM AI result: the source has no "
                              + ", ".join(missing), path)


#: Patient and study attributes (Type 2: present, possibly empty) the objects copy from the
#: source; a source that lacks one gets it empty, as PS3.3 allows, rather than an invented value.
COPIED_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


def reference_header(header: Dataset, path: str = "") -> Dataset:
    """A pixel-free copy of the source's header that highdicom can copy the patient and study
    modules from (missing Type 2 attributes empty); the source itself is never changed."""
    check_source(header, path)
    ref = Dataset()
    for element in header:
        if 2 < element.tag.group < 0x7FE0 and _valid(element):
            ref.add(element)
    for keyword in COPIED_TYPE2:
        if keyword not in ref:
            setattr(ref, keyword, "")
    return ref


def _valid(element: DataElement) -> bool:
    """Whether a copied value is valid for its VR: an invalid one (an Age String "81") is left
    out, so the objects PneumoView writes validate even when their source does not."""
    if element.VR == "SQ":
        return True
    try:
        validate_value(element.VR, element.value, config.RAISE)
    except (ValueError, TypeError, KeyError):
        return False
    return True


@contextlib.contextmanager
def quiet_names() -> Iterator[None]:
    """highdicom warns about single-component person names, quoting the name: patient data
    that must not reach a log or stderr. The names are copied as they are, unwarned."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*intended person name", category=UserWarning)
        yield
