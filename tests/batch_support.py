"""Folders for the batch tests: a mixed archive built from real radiographs, and many small files.

The mixed folder holds one file per case the report must get right, with the expected status
(and a phrase of the message). Real DICOMs come from ../shared/data/dicom (found through
:mod:`shared_data`); tests that need them skip with a reason when it is absent.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from tests.support.shared_data import require

#: relpath -> (status, phrase the message must contain; "" = empty message)
MIXED_EXPECTED: dict[str, tuple[str, str]] = {
    "real/nhsx_nih_cxr.dcm": ("scored", ""),
    "real/txv_siim_cxr.dcm": ("scored", ""),
    "real/pydicomdata_RG1_UNCI.dcm": ("scored", ""),
    "real/pydicomdata_RG1_J2KR.dcm": ("scored", ""),
    "twins/nhsx_rle.dcm": ("scored", ""),
    "twins/nhsx_jpegls.dcm": ("scored", ""),
    "twins/nhsx_j2k.dcm": ("scored", ""),
    "twins/nhsx_monochrome1.dcm": ("scored", ""),
    "odd/lateral.dcm": ("not_scored", "lateral view (ViewPosition LL)"),
    "odd/ct_slice.dcm": ("not_scored", "not a radiograph (Modality CT)"),
    "odd/no_pixels_sr.dcm": ("not_scored", "not a radiograph (Modality SR)"),
    "odd/no_modality_kos.dcm": ("not_scored", "not an image object (Key Object Selection"),
    "odd/no_pixel_data.dcm": ("error", "has no pixel data: a Digital X-Ray Image Storage"),
    "odd/truncated_pixels.dcm": ("error", "cannot decode pixel data"),
    "odd/truncated_header.dcm": ("error", "probably truncated or corrupt"),
    "odd/empty.dcm": ("skipped", "empty file"),
    "other/notes.txt": ("skipped", "not a DICOM file"),
    "other/picture.png": ("skipped", "not a DICOM file"),
}

#: twin relpath -> the original it must score equal to
TWINS = {
    "twins/nhsx_rle.dcm": "real/nhsx_nih_cxr.dcm",
    "twins/nhsx_jpegls.dcm": "real/nhsx_nih_cxr.dcm",
    "twins/nhsx_j2k.dcm": "real/nhsx_nih_cxr.dcm",
    "twins/nhsx_monochrome1.dcm": "real/nhsx_nih_cxr.dcm",
}


def need_real_dicoms() -> Path:
    """The real DICOM folder, or skip the running test with the reason."""
    return require("dicom", "nhsx_nih_cxr.dcm").parent


def build_mixed_folder(root: Path) -> Path:
    """Write the mixed archive under ``root`` (a symlink loop included) and return it."""
    import pydicom
    from PIL import Image
    from pydicom.uid import (
        BasicTextSRStorage,
        JPEG2000Lossless,
        JPEGLSLossless,
        KeyObjectSelectionDocumentStorage,
        RLELossless,
    )

    from tests.support.dicom_factory import (
        ct_dataset,
        make_dataset,
        monochrome1_twin,
        reencode,
        save,
    )

    dicom_dir = need_real_dicoms()
    for sub in ("real", "twins", "odd", "other"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in ("nhsx_nih_cxr.dcm", "txv_siim_cxr.dcm", "pydicomdata_RG1_UNCI.dcm",
                 "pydicomdata_RG1_J2KR.dcm"):
        shutil.copyfile(dicom_dir / name, root / "real" / name)
    nhsx = pydicom.dcmread(dicom_dir / "nhsx_nih_cxr.dcm")
    save(reencode(nhsx, RLELossless), root / "twins" / "nhsx_rle.dcm")
    save(reencode(nhsx, JPEGLSLossless), root / "twins" / "nhsx_jpegls.dcm")
    save(reencode(nhsx, JPEG2000Lossless), root / "twins" / "nhsx_j2k.dcm")
    save(monochrome1_twin(nhsx), root / "twins" / "nhsx_monochrome1.dcm")

    lateral = pydicom.dcmread(dicom_dir / "nhsx_nih_cxr.dcm")
    lateral.ViewPosition = "LL"
    lateral.SOPInstanceUID = pydicom.uid.generate_uid()
    save(lateral, root / "odd" / "lateral.dcm")
    save(ct_dataset(np.zeros((64, 64), np.int16)), root / "odd" / "ct_slice.dcm")

    sr = make_dataset(None, modality="SR", sop_class=BasicTextSRStorage)
    save(sr, root / "odd" / "no_pixels_sr.dcm")
    del sr.Modality
    sr.SOPClassUID = sr.file_meta.MediaStorageSOPClassUID = KeyObjectSelectionDocumentStorage
    save(sr, root / "odd" / "no_modality_kos.dcm")
    nopix = make_dataset(np.zeros((32, 32), np.uint8))
    del nopix.PixelData
    save(nopix, root / "odd" / "no_pixel_data.dcm")

    raw = (dicom_dir / "nhsx_nih_cxr.dcm").read_bytes()
    (root / "odd" / "truncated_pixels.dcm").write_bytes(raw[: len(raw) // 2])
    (root / "odd" / "truncated_header.dcm").write_bytes(raw[:300])
    (root / "odd" / "empty.dcm").write_bytes(b"")
    (root / "other" / "notes.txt").write_text("not an image\n")
    Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(
        root / "other" / "picture.png")
    os.symlink("..", root / "other" / "loop")  # the scan must not go round in circles
    return root


def build_small_folder(root: Path, n: int, size: int = 256, seed: int = 0) -> Path:
    """``n`` small uncompressed DX files (random smooth images) in two sub-folders."""
    from tests.support.dicom_factory import make_dataset, save

    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = root / f"s{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, (size // 16, size // 16)).astype(np.float32)
        img = np.kron(base, np.ones((16, 16), np.float32)) + rng.normal(0, 8, (size, size))
        arr = np.clip(img, 0, 255).astype(np.uint8)
        save(make_dataset(arr, PatientID=f"P{i % 7:03d}", ViewPosition="PA"),
             sub / f"img{i:03d}.dcm")
    return root


def rows_by_relpath(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for row in rows:
        assert row["relpath"] not in out, f"duplicate row for {row['relpath']}"
        out[row["relpath"]] = row
    return out
