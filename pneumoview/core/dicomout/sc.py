"""The Secondary Capture of one AI result: the film with the CAM and caption burned in.

A new series in the source's study (its patient and study modules copied by highdicom's
``from_ref_dataset``), the source referenced as the derivation's source image, Burned In
Annotation YES, and "not for diagnostic use" in the series description and image comments.
"""

from __future__ import annotations

from datetime import datetime

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from pneumoview import __version__
from pneumoview.core.dicomout.result import AIResult, quiet_names, reference_header
from pneumoview.core.dicomout.sr import DISCLAIMER, MANUFACTURER

SC_SERIES_DESCRIPTION = "PneumoView AI CAM overlay (not for diagnostic use)"
SC_SERIES_NUMBER = 902


def _source_reference(header: Dataset, result: AIResult) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = header.SOPClassUID
    item.ReferencedSOPInstanceUID = header.SOPInstanceUID
    if int(header.get("NumberOfFrames", 1) or 1) > 1:
        item.ReferencedFrameNumber = result.frame + 1
    return item


def _copy_body_part(header: Dataset, sc: Dataset) -> None:
    """The source's body part and laterality. General Series Laterality is Type 2C: absent
    for a named unpaired part (CHEST), present and empty when the part is not known."""
    for keyword in ("BodyPartExamined", "Laterality", "ImageLaterality"):
        if str(header.get(keyword, "") or "").strip():
            setattr(sc, keyword, header.get(keyword))
    if "Laterality" not in sc and "BodyPartExamined" not in sc:
        sc.Laterality = None


@quiet_names()
def build_sc(result: AIResult, header: Dataset, pixels: np.ndarray, path: str = "",
             now: datetime | None = None) -> hd.sc.SCImage:
    """The Secondary Capture holding ``pixels`` ((H, W, 3) uint8 from
    :func:`picture.compose`) for the source whose header is ``header``."""
    header = reference_header(header, path)
    now = now or datetime.now()
    orientation = header.get("PatientOrientation")
    known = bool(orientation) and len(orientation) == 2
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=header, pixel_array=np.ascontiguousarray(pixels, dtype=np.uint8),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB, bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=generate_uid(), series_number=SC_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        # highdicom insists on an orientation; one the source does not state is left empty
        # below (Type 2), never invented
        patient_orientation=tuple(orientation) if known else ("L", "F"))
    if not known:
        sc.PatientOrientation = None  # type: ignore[assignment]
    _copy_body_part(header, sc)
    sc.SeriesDescription = SC_SERIES_DESCRIPTION
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = DISCLAIMER
    sc.DerivationDescription = (f"{result.state_text}; probability {result.probability:.6f}, "
                                f"threshold {result.threshold:.6f}; CAM of {result.model.label}")
    sc.SourceImageSequence = [_source_reference(header, result)]
    sc.SoftwareVersions = __version__
    sc.ContentDate = now.strftime("%Y%m%d")  # type: ignore[assignment]
    sc.ContentTime = now.strftime("%H%M%S")  # type: ignore[assignment]
    return sc
