"""Write the tiny DICOM samples that ``pneumoview --self-test`` decodes, one per codec.

Run from the repository root with the development environment (it needs the encoders:
pydicom's own RLE, pyjpegls, pylibjpeg-openjpeg, Pillow and python-gdcm)::

    .venv/bin/python packaging/make_selftest_samples.py resources/selftest

The pixel values come from :func:`pneumoview.selftest.reference_image`, a formula, so the
self-test knows what every lossless sample must decode to without storing a second copy. The
files are synthetic (no patient data) and together take a few tens of kilobytes. They are
committed; this script is only needed to remake them.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pneumoview.selftest import SAMPLES, reference_image  # noqa: E402

_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root for generated UIDs


def _base(name: str, arr: np.ndarray, bits_stored: int) -> Dataset:
    """A Secondary Capture dataset (Modality OT) holding ``arr`` uncompressed."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(_UID_ROOT, ["pneumoview-selftest", name])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(_UID_ROOT, ["pneumoview-selftest", "study"])
    ds.SeriesInstanceUID = generate_uid(_UID_ROOT, ["pneumoview-selftest", "series", name])
    ds.Modality = "OT"
    ds.PatientName = "SELFTEST^SYNTHETIC"
    ds.PatientID = "SELFTEST"
    ds.SeriesDescription = f"PneumoView self-test sample ({name})"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = arr.tobytes()
    return ds


def _save(ds: Dataset, path: Path) -> None:
    ds.save_as(path, enforce_file_format=True)


def _gdcm_recode(src: Path, dst: Path, syntax: str) -> None:
    """Re-encode with GDCM (the only installed encoder for JPEG Lossless SV1)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    if not reader.Read():
        raise RuntimeError(f"gdcm cannot read {src}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(syntax)))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"gdcm cannot encode {syntax}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"gdcm cannot write {dst}")


def write_samples(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for sample in SAMPLES:
        arr = reference_image(sample.bits)
        path = out_dir / sample.filename
        ds = _base(sample.name, arr, sample.bits)
        if sample.syntax == ExplicitVRLittleEndian:
            _save(ds, path)
        elif sample.syntax == RLELossless:
            ds.compress(RLELossless, encoding_plugin="pydicom")
            _save(ds, path)
        elif sample.syntax == JPEGLSLossless:
            ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
            _save(ds, path)
        elif sample.syntax == JPEG2000Lossless:
            ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
            _save(ds, path)
        elif sample.syntax == JPEGBaseline8Bit:
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(arr, mode="L").save(buf, format="JPEG", quality=95, subsampling=0)
            ds.PixelData = encapsulate([buf.getvalue()])
            ds["PixelData"].VR = "OB"
            ds.LossyImageCompression = "01"
            ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
            _save(ds, path)
        elif sample.syntax == JPEGLosslessSV1:
            with tempfile.TemporaryDirectory() as tmp:
                plain = Path(tmp) / "plain.dcm"
                _save(ds, plain)
                _gdcm_recode(plain, path, JPEGLosslessSV1)
        else:  # pragma: no cover - a sample added to SAMPLES without an encoder here
            raise ValueError(f"no encoder for {sample.syntax}")
        check = pydicom.dcmread(path)
        if str(check.file_meta.TransferSyntaxUID) != str(sample.syntax):
            raise RuntimeError(f"{path.name}: written as {check.file_meta.TransferSyntaxUID}")
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "resources" / "selftest"
    paths = write_samples(out)
    total = sum(p.stat().st_size for p in paths)
    for p in paths:
        print(f"{p.stat().st_size:8d}  {p}")
    print(f"{total:8d}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
