"""Build DICOM test files from real pixels: twins, re-encodings and odd variants.

Tests use these to wrap real radiographs (from ../shared/data or pydicom-data) into DICOM files
with a chosen photometric interpretation, bit depth, rescale, sign, frame count or encoding.
The shared data itself is found through :mod:`shared_data`. This is the one place that builds a
dataset: :func:`make_dataset` from nothing, :func:`with_pixels` on a real file's header; tests,
``bench/`` and ``tools/`` use these rather than filling a ``Dataset`` by hand.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

#: Encoder plugin per transfer syntax, chosen rather than left to pydicom: its first choice
#: for RLE is gdcm, whose C++ exception on some image sizes (1955 x 1841) aborts the process.
#: pylibjpeg-rle comes with ``pydicom[pixeldata]``; the others have a single encoder.
ENCODER_PLUGINS = {RLELossless: "pylibjpeg"}


def sample_file(name: str) -> str | None:
    """A pydicom-data file without ever trying to download it."""
    try:
        return get_testdata_file(name, download=False)
    except Exception:  # pydicom-data missing or file unknown
        return None


def make_dataset(
    arr: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    signed: bool = False,
    modality: str = "DX",
    sop_class: str = DigitalXRayImageStorageForPresentation,
    syntax: str = ExplicitVRLittleEndian,
    **tags: object,
) -> Dataset:
    """A minimal but valid dataset holding ``arr`` (H,W), (F,H,W) or (H,W,3) as stored, in
    transfer syntax ``syntax`` (uncompressed); ``arr=None`` gives an object without an image
    (a structured report, a key object). ``tags`` are set last and win."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Test^Patient"
    ds.PatientID = "TEST001"
    ds.Modality = modality
    ds.InstanceNumber = 1
    if arr is not None:
        _set_pixels(ds, np.asarray(arr), photometric=photometric, bits_stored=bits_stored,
                    signed=signed)
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def with_pixels(
    template: Dataset,
    arr: np.ndarray,
    *,
    photometric: str | None = None,
    bits_stored: int | None = None,
    signed: bool | None = None,
    syntax: str = ExplicitVRLittleEndian,
    **tags: object,
) -> Dataset:
    """A copy of ``template`` (a real file's header, UIDs included) holding ``arr`` instead of
    its pixels, uncompressed in ``syntax``. Pixel attributes not given keep the template's
    values where they still fit ``arr``'s dtype; ``tags`` are set last and win."""
    ds = copy.deepcopy(template)
    ds.file_meta.TransferSyntaxUID = syntax
    arr = np.asarray(arr)
    kept_bits = int(template.get("BitsStored", 0) or 0)
    if bits_stored is None and 0 < kept_bits <= 8 * arr.dtype.itemsize:
        bits_stored = kept_bits
    _set_pixels(
        ds, arr,
        photometric=photometric or str(template.get("PhotometricInterpretation", "MONOCHROME2")),
        bits_stored=bits_stored,
        signed=bool(template.get("PixelRepresentation", 0)) if signed is None else signed)
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def _set_pixels(ds: Dataset, arr: np.ndarray, *, photometric: str, bits_stored: int | None,
                signed: bool) -> None:
    """The image pixel module of ``ds`` describing ``arr`` exactly as stored."""
    colour = arr.ndim == 3 and arr.shape[-1] == 3
    frames = arr.shape[0] if arr.ndim == 3 and not colour else 1
    bits_allocated = 8 if arr.dtype in (np.uint8, np.int8) else 16
    ds.Rows, ds.Columns = (arr.shape[1], arr.shape[2]) if frames > 1 else arr.shape[:2]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else photometric
    if colour:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = np.ascontiguousarray(arr).tobytes()


def save(ds: Dataset, path: str | Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def reencode(ds: Dataset, syntax: str, plugin: str | None = None) -> Dataset:
    """A lossless re-encoding (RLE, JPEG-LS, JPEG 2000 lossless) of the same pixels, by
    ``plugin`` or the one :data:`ENCODER_PLUGINS` names (pydicom's choice otherwise)."""
    twin = pydicom.dcmread(_roundtrip(ds), force=True)
    plugin = plugin or ENCODER_PLUGINS.get(syntax, "")
    twin.compress(syntax, encoding_plugin=plugin)
    return twin


def _roundtrip(ds: Dataset):
    from io import BytesIO

    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return buf


def monochrome1_twin(ds: Dataset) -> Dataset:
    """Stored values mirrored (max - v) as MONOCHROME1: it must display and score the same."""
    arr = ds.pixel_array
    top = (1 << int(ds.BitsStored)) - 1
    twin = make_dataset((top - arr.astype(np.int64)).astype(arr.dtype),
                        photometric="MONOCHROME1", bits_stored=int(ds.BitsStored),
                        modality=str(ds.get("Modality", "DX")))
    if "WindowCenter" in ds:
        # LINEAR windows are centred at c - 0.5, so the mirrored centre is top - c + 1.
        twin.WindowCenter = top - float(ds.WindowCenter) + 1
        twin.WindowWidth = ds.WindowWidth
    return twin


def rescaled_12bit_twin(arr8: np.ndarray) -> Dataset:
    """8-bit values stored as 12-bit (x16) with RescaleSlope 1/16: identical modality values."""
    stored = arr8.astype(np.uint16) * 16
    return make_dataset(stored, bits_stored=12, RescaleSlope=0.0625, RescaleIntercept=0,
                        RescaleType="US")


def ct_dataset(arr: np.ndarray) -> Dataset:
    return make_dataset(arr, modality="CT", sop_class=CTImageStorage,
                        RescaleSlope=1, RescaleIntercept=-1024)
