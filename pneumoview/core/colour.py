"""Colour pixels: PALETTE COLOR lookup and the reduction of deep colour to 8-bit display.

* A PALETTE COLOR image stores indices into three colour tables (PS3.3 C.7.6.3.1.5-6, segmented
  tables C.7.9.2). :func:`apply_palette` maps them through pydicom's ``apply_color_lut`` after
  putting the tables in little-endian order: pydicom 3.0.2 reads a non-segmented OW table in
  the machine's byte order, so a big-endian file came out with its colours byte-swapped.
* :func:`to_display8` reduces ``bits``-deep colour samples to 8 bits the way dcmtk does
  (``DiColorOutputPixelTemplate``): deeper samples are shifted right, shallower ones scaled up.
  It is linear over 0..2^bits-1, so a 16-bit RGB image keeps its tones instead of being
  clipped at 255.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

#: Deepest colour sample kept exactly in float32 (24-bit mantissa); deeper ones are shifted
#: down to it when decoded (:func:`exact_float_depth`).
FLOAT_EXACT_BITS = 24

_CHANNELS = ("Red", "Green", "Blue", "Alpha")


def is_little_endian(ds: Dataset) -> bool:
    """Whether ``ds`` was read from (or will be written as) little-endian data."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None:
        try:
            return bool(syntax.is_little_endian)
        except (AttributeError, ValueError):
            pass
    encoding = getattr(ds, "original_encoding", (None, None))
    return encoding[1] is not False


def ow_bytes(value: object, little_endian: bool) -> bytes:
    """The bytes of an OW (or US list) value in little-endian order.

    OW is a stream of 16-bit words, so in a big-endian file each word's two bytes are swapped,
    whatever the table's entry size (8-bit entries are packed two to a word).
    """
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
        if little_endian or len(raw) % 2:
            return raw
        return np.frombuffer(raw, dtype=">u2").astype("<u2").tobytes()
    if isinstance(value, int):
        value = [value]
    return np.asarray(list(value), dtype="<u2").tobytes()  # type: ignore[call-overload]


def _palette_tables(ds: Dataset) -> Dataset:
    """The palette elements of ``ds`` as a little-endian dataset (pydicom reads that right)."""
    little = is_little_endian(ds)
    out = Dataset()
    out.file_meta = FileMetaDataset()
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for channel in _CHANNELS:
        desc = f"{channel}PaletteColorLookupTableDescriptor"
        if desc in ds:
            out[desc] = ds[desc]
        for kind in ("", "Segmented"):
            key = f"{kind}{channel}PaletteColorLookupTableData"
            if key in ds and ds[key].value is not None:
                out.add_new(key, "OW", ow_bytes(ds[key].value, little))
    return out


def palette_bits(ds: Dataset) -> int:
    """Bits per palette entry: the third value of the Red descriptor (8 or 16)."""
    try:
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    except (AttributeError, IndexError, TypeError, ValueError):
        return 16
    return 8 if bits <= 8 else 16


def apply_palette(indices: np.ndarray, ds: Dataset) -> np.ndarray:
    """RGB (H, W, 3) values, 0..2^palette_bits-1, for the PALETTE COLOR indices of one frame.

    Raises ``ValueError`` for a missing or inconsistent palette (pydicom's message).
    """
    from pydicom.pixels import apply_color_lut

    rgb = apply_color_lut(np.asarray(indices), _palette_tables(ds))
    return rgb[..., :3]


def exact_float_depth(values: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """Colour samples as float32 without rounding: samples deeper than 24 bits (32-bit RGB) are
    shifted down to 24 first. Returns (values, their bit depth)."""
    if bits > FLOAT_EXACT_BITS and values.dtype.kind in "ui":
        shifted = np.asarray(values).astype(np.uint64) >> np.uint64(bits - FLOAT_EXACT_BITS)
        return shifted.astype(np.float32), FLOAT_EXACT_BITS
    return np.asarray(values, dtype=np.float32), bits


def to_display8(values: np.ndarray, bits: int) -> np.ndarray:
    """``bits``-deep colour samples (any shape) as uint8, as dcmtk reduces or expands them."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0, 2.0 ** bits - 1)
    if bits > 8:
        out = np.floor(v / 2.0 ** (bits - 8))
    elif bits < 8:
        out = np.floor(v * (255.0 / (2 ** bits - 1)))
    else:
        out = np.rint(v)
    return np.clip(out, 0, 255).astype(np.uint8)
