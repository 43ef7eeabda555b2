"""Display probe files built from pydicom's and pydicom-data's test files.

VOI LUT probes from ``vlut_04.dcm`` (8-bit MR, one 256-entry VOI LUT):

* :func:`half_range_lut`: the same table scaled to use half of its declared 16-bit output range
  (a display conforming to PS3.3 C.11.2.1.1 shows it at half brightness, 0..127);
* :func:`big_endian_ow_lut`: a square-root table stored as OW in an Explicit VR Big Endian
  file, the twin of :func:`little_endian_ow_lut` (a reader must honour the file's byte order).

:func:`big_endian_copy` re-encodes any dataset as Explicit VR Big Endian (every OW value's
words swapped, as PS3.5 requires), e.g. an overlay file; :func:`without_voi` drops a file's
VOI data (an 8-bit image with no window).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

from tests.support.dicom_factory import sample_file

VLUT = "vlut_04.dcm"


def _base() -> pydicom.Dataset:
    path = sample_file(VLUT)
    if path is None:
        raise FileNotFoundError(f"pydicom-data's {VLUT} is not installed")
    return pydicom.dcmread(path)


def _table(ds: pydicom.Dataset) -> np.ndarray:
    item = ds.VOILUTSequence[0]
    return np.asarray(item.LUTData, dtype=np.uint16)


def half_range_lut(out: Path) -> Path:
    """vlut_04 with its LUT values halved: the table spans 0..32767 of a 0..65535 range."""
    ds = _base()
    item = ds.VOILUTSequence[0]
    item.LUTData = [int(v) // 2 for v in _table(ds)]
    ds.save_as(out, enforce_file_format=True)
    return out


def _gamma_table(n: int) -> np.ndarray:
    """A square-root curve over 0..65535: unlike vlut_04's own table (i * 257, whose two bytes
    are equal), its entries change when their bytes are swapped."""
    return np.rint(65535 * np.sqrt(np.arange(n) / (n - 1))).astype(np.uint16)


def _ow_lut(ds: pydicom.Dataset, little: bool) -> pydicom.Dataset:
    table = _gamma_table(len(_table(ds))).astype("<u2" if little else ">u2")
    item = ds.VOILUTSequence[0]
    del item.LUTData
    item.add(DataElement(0x00283006, "OW", table.tobytes()))
    return ds


def little_endian_ow_lut(out: Path) -> Path:
    """vlut_04 with LUTData as OW (raw little-endian bytes) in Explicit VR Little Endian."""
    ds = _ow_lut(_base(), little=True)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(out, enforce_file_format=True)
    return out


def big_endian_copy(ds: pydicom.Dataset, out: Path) -> Path:
    """``ds`` written as Explicit VR Big Endian: US/SS values are re-encoded by pydicom, OW
    values (stored as raw bytes) have each 16-bit word swapped here."""
    for elem in ds.iterall():  # also converts every raw (little-endian) element
        if elem.VR == "OW" and isinstance(elem.value, bytes | bytearray):
            elem.value = np.frombuffer(bytes(elem.value), "<u2").astype(">u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    return out


def big_endian_ow_lut(out: Path) -> Path:
    """The same LUT as OW in Explicit VR Big Endian (its bytes big-endian, as PS3.5 requires)."""
    return big_endian_copy(_ow_lut(_base(), little=True), out)


def without_voi(name: str, out: Path) -> Path:
    """pydicom-data's ``name`` without any window or VOI LUT."""
    path = sample_file(name)
    if path is None:
        raise FileNotFoundError(f"pydicom-data's {name} is not installed")
    ds = pydicom.dcmread(path)
    for key in ("VOILUTSequence", "WindowCenter", "WindowWidth", "VOILUTFunction",
                "WindowCenterWidthExplanation"):
        if key in ds:
            delattr(ds, key)
    ds.save_as(out, enforce_file_format=True)
    return out
