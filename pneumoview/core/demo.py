"""The demo folder: pydicom-data's real chest CR (RG1) prepared as three series in one study.

* series 1: ``RG1_UNCI.dcm`` as shipped (MONOCHROME1, uncompressed);
* series 2: ``RG1_J2KR.dcm`` (the same radiograph, JPEG 2000 lossless) with its own series UID;
* series 3: a MONOCHROME2 copy of ``RG1_UNCR.dcm``: stored values inverted (``max - v``) and the
  window mirrored, so it must look exactly like series 1 — a visual check that inversion is
  applied once.

The files are copied into the user cache (never into the source data) and the preparation is
idempotent: a finished demo folder is reused as it is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.paths import cache_dir, private_dir

DEMO_VERSION = "1"
#: (output name, pydicom-data file, series number, series description)
_SERIES = (
    ("series1_uncompressed.dcm", "RG1_UNCI.dcm", 1, "Chest CR, uncompressed (MONOCHROME1)"),
    ("series2_jpeg2000.dcm", "RG1_J2KR.dcm", 2, "Chest CR, JPEG 2000 lossless"),
    ("series3_monochrome2.dcm", "RG1_UNCR.dcm", 3, "Chest CR, inverted copy (MONOCHROME2)"),
)
_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root for generated UIDs


def demo_dir() -> Path:
    return cache_dir() / "demo"


def _marker(dest: Path) -> Path:
    """Beside the folder, not in it: the folder holds DICOM files only."""
    return dest.with_name(dest.name + ".ready")


def _source(name: str) -> str:
    from pydicom.data import get_testdata_file

    try:
        path = get_testdata_file(name, download=False)
    except Exception as exc:  # pydicom-data missing or broken
        raise PneumoViewError(f"demo file {name} is not available ({exc}); "
                              "install the 'pydicom-data' package") from exc
    if not path:
        raise PneumoViewError(f"demo file {name} is not in pydicom-data; "
                              "install the 'pydicom-data' package")
    return str(path)


def _relabel(ds: pydicom.Dataset, number: int, description: str, seed: str) -> None:
    """New series/instance UIDs (derived from ``seed`` so reruns agree) and series labels."""
    ds.SeriesInstanceUID = generate_uid(_UID_ROOT, [seed, "series"])
    ds.SOPInstanceUID = generate_uid(_UID_ROOT, [seed, "instance"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesNumber = number
    ds.SeriesDescription = description
    ds.InstanceNumber = 1


def _invert_to_monochrome2(ds: pydicom.Dataset) -> None:
    """MONOCHROME1 -> MONOCHROME2 with the stored values and the window mirrored."""
    stored = ds.pixel_array
    top = (1 << int(ds.BitsStored)) - 1
    ds.PixelData = (top - stored.astype(np.int64)).astype(stored.dtype).tobytes()
    ds.PhotometricInterpretation = "MONOCHROME2"
    if "WindowCenter" in ds:
        centers = ds.WindowCenter if ds["WindowCenter"].VM > 1 else [ds.WindowCenter]
        mirrored = [float(top) - float(c) + 1.0 for c in centers]
        ds.WindowCenter = mirrored if len(mirrored) > 1 else mirrored[0]


def _build(out: Path) -> None:
    for name, source, number, description in _SERIES:
        ds = pydicom.dcmread(_source(source))
        if number > 1:
            _relabel(ds, number, description, f"pneumoview-demo-{DEMO_VERSION}-{number}")
        else:
            ds.SeriesDescription = description
        if number == 3:
            _invert_to_monochrome2(ds)
        ds.save_as(out / name, enforce_file_format=True)


def prepare_demo(dest: Path | None = None) -> Path:
    """Create (once) and return the demo folder; raises PneumoViewError if it cannot."""
    dest = demo_dir() if dest is None else Path(dest)
    marker = _marker(dest)
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == DEMO_VERSION \
            and all((dest / name).is_file() for name, *_ in _SERIES):
        return dest
    try:
        private_dir(dest.parent)
        tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=dest.parent))  # 0700 itself
        try:
            _build(tmp)
            marker.unlink(missing_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
            marker.write_text(DEMO_VERSION, encoding="utf-8")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    except PneumoViewError:
        raise
    except OSError as exc:
        raise PneumoViewError(f"cannot prepare the demo folder ({exc})", dest) from exc
    return dest
