"""Wrap a grey image as a DICOM file (test fixtures: RSNA layout, encoding round trips).

The public data here are PNG/JPEG; the app reads DICOM. These writers produce the encodings a
user's folder holds (8-bit, 16-bit with a rescale, MONOCHROME1, JPEG 2000 lossless) from the same
pixels, so a test can check the model sees the same input either way. No patient data: the
identifiers are synthetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VARIANTS = ("u8", "u16_rescaled", "monochrome1", "j2k")


def write_dicom(path: Path | str, grey: np.ndarray, variant: str = "u8",
                patient_id: str = "ANON", modality: str = "CR") -> Path:
    """Write ``grey`` (2-D, values 0-255) so that the modality values, after the display
    inversion the contract applies, are an increasing affine function of ``grey``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian as EVRLE
    from pydicom.uid import (
        JPEG2000Lossless,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    g = np.asarray(grey, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError("grey image must be 2-D")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = EVRLE
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = g.shape
    ds.SamplesPerPixel = 1
    ds.PixelRepresentation = 0
    if variant in ("u8", "monochrome1", "j2k"):
        stored = np.clip(np.rint(g), 0, 255).astype(np.uint8)
        if variant == "monochrome1":
            stored = (255 - stored).astype(np.uint8)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PhotometricInterpretation = "MONOCHROME1" if variant == "monochrome1" else \
            "MONOCHROME2"
    elif variant == "u16_rescaled":
        # 12 bits stored; modality value = stored * 0.25 - 1024 (an affine map of grey)
        stored = np.clip(np.rint(g * 16.0 + 8), 0, 4095).astype(np.uint16)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleSlope = "0.25"
        ds.RescaleIntercept = "-1024"
        ds.RescaleType = "US"
    else:
        raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
    if variant == "j2k":
        ds.compress(JPEG2000Lossless, stored)
    else:
        ds.PixelData = stored.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def grey_of(path: Path | str) -> np.ndarray:
    """The grey values of a plain PNG/JPEG (channel mean), as the contract's step 1 sees them."""
    from pneumoview.core import contract

    return contract.to_grey(contract.load_plain_image(path))
