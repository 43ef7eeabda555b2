"""Reading DICOM files: headers for indexing, and pixels decoded through ``pydicom.pixels``.

Decoding stops at the Modality LUT: :class:`DecodedImage` holds float32 modality values plus what
display and the model-input contract need (the inversion flag and the file's VOI windows). Every
failure becomes a :class:`~pneumoview.core.errors.PneumoViewError` naming the file and the reason.
Files are only ever opened for reading.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import zlib
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from pneumoview.core import codecs, colour, defaults, functional_groups, windowing
from pneumoview.core.errors import (
    CodecUnavailableError,
    ImageTooLargeError,
    NoPixelDataError,
    NotDicomError,
    PneumoViewError,
    file_access_error,
)
from pneumoview.core.overlays import Overlay, frame_overlays
from pneumoview.core.windowing import Window, declared_windows

log = logging.getLogger(__name__)

#: Refuse, before decoding, images whose declared pixel data would need more memory than this.
DEFAULT_MAX_PIXEL_BYTES = defaults.MAX_IMAGE_BYTES

#: Optional plugins that decode syntaxes the bundled (non-GPL) codecs cannot.
_GPL_HINTS = {
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
}

PathType = str | PathLike[str]


@dataclass(frozen=True)
class DecodedImage:
    """One decoded frame: modality-LUT values and the facts display and the model need."""

    path: str
    values: np.ndarray  # float32, (H, W) grey or (H, W, 3) RGB, after the Modality LUT
    frame: int
    n_frames: int
    photometric: str
    invert: bool  # display inversion: MONOCHROME1, or MONOCHROME2 + Presentation LUT INVERSE
    modality: str
    windows: tuple[Window, ...] = field(default=())
    header: Dataset | None = None
    colour_bits: int = 8  # depth of colour values: BitsStored, or the palette's entry size
    identity: Window | None = None  # the no-VOI window, for grey data of <= 8 bits stored
    overlays: tuple[Overlay, ...] = field(default=())  # this frame's overlay planes (60xx)

    @property
    def is_colour(self) -> bool:
        return self.values.ndim == 3

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.values.shape[0]), int(self.values.shape[1])


def _looks_like_dicom(ds: Dataset) -> bool:
    """A forced read of arbitrary bytes 'succeeds'; accept it only with real DICOM content."""
    return any(k in ds for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")) or (
        "Rows" in ds and "Columns" in ds
    )


def read_header(path: PathType, specific_tags: list[str] | None = None) -> Dataset:
    """Read the header only (never the pixel data); files with or without a preamble.

    A deflated file is inflated only as far as its header goes (at most
    :data:`MAX_INFLATED_HEADER`), never whole: a 4 MB deflate bomb costs no memory here.
    """
    return _read(path, stop_before_pixels=True, specific_tags=specific_tags)


def read_dataset(path: PathType, max_bytes: int = DEFAULT_MAX_PIXEL_BYTES) -> Dataset:
    """Read the whole dataset; elements over 16 MB (the pixel data) are read only when used,
    so the size guard can refuse a huge image before its bytes are loaded. A deflated file is
    refused when it inflates to more than ``max_bytes`` plus :data:`MAX_INFLATED_HEADER`
    (counted in a streaming pass before pydicom inflates it in memory)."""
    return _read(path, stop_before_pixels=False, defer_size="16 MB",
                 max_inflated=max_bytes + MAX_INFLATED_HEADER)


# --------------------------------------------------------------------------------------------
# Deflated files: bounded inflation
# --------------------------------------------------------------------------------------------
DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"
#: Everything before the pixel data, inflated, may take at most this (real headers: KiBs).
MAX_INFLATED_HEADER = 64 * 2**20
_INFLATE_CHUNK = 1 << 16


@dataclass(frozen=True)
class _Deflated:
    meta: Any  # FileMetaDataset
    offset: int  # where the deflated stream starts
    preamble: bytes | None


def _deflated(path: PathType) -> _Deflated | None:
    """The file meta and stream offset of a deflated file, None for any other file."""
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if DEFLATED_SYNTAX.encode("ascii") not in head:
        return None
    meta = pydicom.filereader.read_file_meta_info(path)
    if str(meta.get("TransferSyntaxUID", "")).strip() != DEFLATED_SYNTAX:
        return None
    glen = meta.get("FileMetaInformationGroupLength")
    start = 132 if head[128:132] == b"DICM" else 0
    if glen is None:
        raise PneumoViewError("deflated file without a file meta group length: its size "
                              "cannot be checked before inflating it; refused", path)
    return _Deflated(meta, start + 12 + int(glen), head[:128] if start else None)


def _inflate(path: PathType, offset: int, limit: int, keep: bool) -> tuple[bytes, bool]:
    """Inflate the stream at ``offset`` up to ``limit`` bytes: (what was kept, whether the
    stream ended within the limit). Memory stays at one chunk when ``keep`` is False."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    kept: list[bytes] = []
    total = 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        while not inflater.eof:
            data = fh.read(_INFLATE_CHUNK)
            if not data:
                break
            while data:
                piece = inflater.decompress(data, max(1, min(_INFLATE_CHUNK * 16,
                                                             limit + 1 - total)))
                total += len(piece)
                if keep:
                    kept.append(piece)
                if total > limit:
                    return b"".join(kept)[:limit], False
                data = inflater.unconsumed_tail
                if inflater.eof:
                    break
    return b"".join(kept), True


def _read_deflated_header(path: PathType, info: _Deflated,
                          specific_tags: list[str] | None) -> Dataset:
    from pydicom.filebase import DicomBytesIO
    from pydicom.tag import Tag

    data, complete = _inflate(path, info.offset, MAX_INFLATED_HEADER, keep=True)
    buffer = DicomBytesIO(data)
    tags = None if specific_tags is None else [Tag(t) for t in
                                               [*specific_tags, "SpecificCharacterSet"]]
    reached_pixels = False

    def stop(tag: Any, _vr: Any, _length: Any) -> bool:
        nonlocal reached_pixels
        reached_pixels = reached_pixels or int(tag) in _PIXEL_TAGS
        return reached_pixels

    try:
        ds = pydicom.filereader.read_dataset(buffer, False, True,  # type: ignore[arg-type]
                                             stop_when=stop,
                                             specific_tags=tags)  # type: ignore[arg-type]
    except Exception:  # a cut element: decided below
        if complete:
            raise
        ds = None
    if not complete and not reached_pixels:
        raise PneumoViewError(f"deflated header inflates to more than "
                              f"{MAX_INFLATED_HEADER // 2**20} MiB (a decompression bomb?); "
                              "refused", path)
    assert ds is not None
    return pydicom.dataset.FileDataset(str(path), ds, preamble=info.preamble,
                                       file_meta=info.meta, is_implicit_VR=False,
                                       is_little_endian=True)


def _read_pydicom(path: PathType, max_inflated: int | None, **kwargs: Any) -> Dataset:
    """``dcmread``, with a deflated file's inflation bounded first (see :func:`read_header`)."""
    info = _deflated(path)
    if info is not None:
        if kwargs.get("stop_before_pixels"):
            return _read_deflated_header(path, info, kwargs.get("specific_tags"))
        limit = DEFAULT_MAX_PIXEL_BYTES + MAX_INFLATED_HEADER if max_inflated is None \
            else max_inflated
        if not _inflate(path, info.offset, limit, keep=False)[1]:
            raise PneumoViewError(f"deflated data inflates to more than {limit // 2**20} MiB "
                                  "(a decompression bomb, or an image over the size guard); "
                                  "refused", path)
    try:
        return pydicom.dcmread(path, **kwargs)
    except InvalidDicomError:
        ds = pydicom.dcmread(path, force=True, **kwargs)
        if not _looks_like_dicom(ds):
            raise NotDicomError("not a DICOM file (no DICM preamble, no DICOM content)",
                                path) from None
        return ds


def _read(path: PathType, max_inflated: int | None = None, **kwargs: Any) -> Dataset:
    try:
        if os.path.isdir(path):
            raise file_access_error(IsADirectoryError(errno.EISDIR, "is a folder"), path)
        try:
            ds = _read_pydicom(path, max_inflated, **kwargs)
        except zlib.error as exc:
            raise PneumoViewError(f"deflated data is corrupt ({exc})", path) from None
        _drop_unconvertible(ds)
        if "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        return ds
    except PneumoViewError:
        raise
    except (FileNotFoundError, PermissionError) as exc:
        raise file_access_error(exc, path) from None
    except Exception as exc:  # pydicom raises many types for corrupt headers
        raise PneumoViewError(f"unreadable DICOM header ({type(exc).__name__}: {exc})",
                              path) from exc


_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_PIXEL_KEYWORDS = ("FloatPixelData", "DoubleFloatPixelData", "PixelData")


def _has_pixels(ds: Dataset) -> bool:
    """True for a dataset read with its pixel data element (deferred or not)."""
    return any(key in ds for key in _PIXEL_KEYWORDS)


def _drop_unconvertible(ds: Dataset) -> None:
    """Convert every top-level element now; drop those that cannot be converted.

    pydicom converts values lazily, so a corrupt element (an unknown VR, a length that is not a
    multiple of its value size) would otherwise raise a pydicom exception later, wherever it is
    first read (the indexer, the gate, ``info``). Dropped, the file reads as if it lacked that
    element. The (deferred) pixel data is left alone: converting it would read it.
    """
    for dataset in (getattr(ds, "file_meta", None), ds):
        if dataset is None:
            continue
        for tag in list(dataset.keys()):
            if tag in _PIXEL_TAGS:
                continue
            try:
                dataset[tag]
            except Exception as exc:  # any conversion failure
                log.debug("ignoring unreadable element %s (%s)", tag, type(exc).__name__)
                del dataset[tag]


def header_text(ds: Any, keyword: str) -> str:
    """A header value as one line of text (multiple values joined by backslash); '' when the
    element is missing, empty or unreadable.

    Only top-level elements are converted when a file is read; ``str()`` of a value with a
    wrong VR (read as a sequence) converts the elements nested in it and may raise (found by
    the fuzzer), so any failure here counts as a missing value.
    """
    if ds is None:
        return ""
    try:
        value = ds.get(keyword, None)
        if value is None:
            return ""
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            value = "\\".join(str(v) for v in value)
        return " ".join(str(value).split())
    except Exception:  # a malformed element: treat as missing
        return ""


def header_int(ds: Dataset, keyword: str, default: int, path: PathType | None = None) -> int:
    """An integer header value (Rows, BitsStored...), or a PneumoViewError naming the field."""
    value = ds.get(keyword, default)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise PneumoViewError(f"invalid {keyword} value {str(value)[:40]!r} in the header",
                              path) from None


def display_inverts(ds: Dataset) -> bool:
    """Invert exactly once: MONOCHROME1, or MONOCHROME2 with Presentation LUT Shape INVERSE."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "MONOCHROME1":
        return True
    shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    return photometric == "MONOCHROME2" and shape == "INVERSE"


def number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def declared_pixel_bytes(ds: Dataset, path: PathType | None = None) -> int:
    """Bytes the declared pixel data needs once decoded (all frames), from the header alone."""
    rows = header_int(ds, "Rows", 0, path)
    cols = header_int(ds, "Columns", 0, path)
    samples = header_int(ds, "SamplesPerPixel", 1, path) or 1
    bits = header_int(ds, "BitsAllocated", 16, path) or 16
    return rows * cols * samples * number_of_frames(ds) * max(1, math.ceil(bits / 8))


def check_decodable(ds: Dataset, path: PathType, max_bytes: int = DEFAULT_MAX_PIXEL_BYTES) -> None:
    """Refuse files with no pixels, absurd sizes or a syntax no installed codec decodes."""
    if "Rows" not in ds or "Columns" not in ds:
        raise NoPixelDataError("has no image (no Rows/Columns: not an image object)", path)
    rows, cols = header_int(ds, "Rows", 0, path), header_int(ds, "Columns", 0, path)
    if rows < 1 or cols < 1:
        raise PneumoViewError(f"declares an empty image ({rows}x{cols})", path)
    header_int(ds, "NumberOfFrames", 1, path)  # "1A" is not a frame count: say so, by name
    need = declared_pixel_bytes(ds, path)
    if need > max_bytes:
        raise ImageTooLargeError(
            f"image too large to open safely: {rows}x{cols}x{number_of_frames(ds)} frame(s) "
            f"needs {need / 2**20:.0f} MiB, the limit is {max_bytes / 2**20:.0f} MiB", path,
            need_bytes=need, limit_bytes=max_bytes)
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if tsyntax is None:
        return
    _check_codec(pydicom.uid.UID(str(tsyntax)), path, header_int(ds, "BitsStored", 8, path))


def _needs_gpl_plugin(tsyntax: str, bits_stored: int) -> bool:
    """12-bit JPEG Extended: only pylibjpeg-libjpeg (GPL) decodes it; gdcm and Pillow refuse."""
    if tsyntax not in _GPL_HINTS or bits_stored <= 8:
        return False
    import importlib.util

    return importlib.util.find_spec("libjpeg") is None


def _check_codec(tsyntax: pydicom.uid.UID, path: PathType, bits_stored: int = 8) -> None:
    from pydicom.pixels.decoders.base import get_decoder

    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        name = tsyntax.name if tsyntax.is_transfer_syntax else "private/unknown syntax"
        raise CodecUnavailableError(
            f"transfer syntax {tsyntax} ({name}) is not supported by any pixel decoder", path
        ) from None
    if decoder.is_available and not _needs_gpl_plugin(str(tsyntax), bits_stored):
        return
    label = _GPL_HINTS.get(str(tsyntax), tsyntax.name)
    hint = ""
    if _needs_gpl_plugin(str(tsyntax), bits_stored):
        label = f"{bits_stored}-bit {label}"
        hint = (" It can be read by installing the optional GPL-licensed plugin "
                "'pylibjpeg-libjpeg' yourself (pip install pylibjpeg pylibjpeg-libjpeg, in the "
                "Python environment PneumoView runs in); PneumoView uses it once installed but "
                "does not bundle it because of its licence.")
    else:
        missing = list(decoder.missing_dependencies)  # e.g. "pylibjpeg - requires ..."
        if missing:
            hint = f" Plugins that would: {'; '.join(missing)}."
    raise CodecUnavailableError(f"no installed codec decodes {label} ({tsyntax}).{hint}", path)


def decode(path: PathType, frame: int = 0, max_bytes: int = DEFAULT_MAX_PIXEL_BYTES,
           ds: Dataset | None = None) -> DecodedImage:
    """Decode one frame to modality values (float32) with its display and model facts.

    ``ds`` may be what :func:`read_dataset` read from ``path`` (decoded as it is: the file is
    not parsed twice), or a header from :func:`read_header` (it is checked first, so a refused
    file costs no pixel read; then the file is read in full).
    """
    if ds is not None and not _has_pixels(ds):
        check_decodable(ds, path, max_bytes)
    header = ds
    full = read_dataset(path, max_bytes) if ds is None or not _has_pixels(ds) else ds
    _check_not_truncated(full, header, path)
    check_decodable(full, path, max_bytes)
    n_frames = number_of_frames(full)
    if not 0 <= frame < n_frames:
        raise PneumoViewError(f"frame {frame} does not exist (the file has {n_frames})", path)
    if not _has_pixels(full):
        raise NoPixelDataError("has no pixel data", path)
    photometric = str(full.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    try:
        stored = codecs.decode_frame(full, frame)
        _check_shape(stored, full, path)
        values, bits = _display_values(stored, full, frame, photometric)
    except PneumoViewError:
        raise
    except codecs.DecodeFailure as exc:
        raise PneumoViewError(f"cannot decode pixel data: {exc}", path) from None
    except MemoryError:
        raise PneumoViewError("not enough memory to decode this image", path) from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # Rust codecs raise pyo3's PanicException
        raise PneumoViewError(f"cannot decode pixel data ({codecs.one_line(exc)})",
                              path) from exc
    grey = values.ndim == 2
    little = colour.is_little_endian(full)
    windows = declared_windows(functional_groups.voi_source(full, frame), values, little) \
        if grey else ()
    return DecodedImage(
        path=str(path), values=values, frame=frame, n_frames=n_frames, photometric=photometric,
        invert=display_inverts(full), modality=str(full.get("Modality", "") or ""),
        windows=windows, header=_header_copy(full), colour_bits=bits,
        identity=_identity(full, frame) if grey else None,
        overlays=frame_overlays(full, frame, values.shape[:2]))


def _header_copy(ds: Dataset) -> Dataset:
    header = ds.copy()
    for key in _PIXEL_KEYWORDS:
        if key in header:
            del header[key]
    return header


def _check_not_truncated(full: Dataset, header: Dataset | None, path: PathType) -> None:
    """A file cut short inside encapsulated pixel data reads (in pydicom) as an empty dataset;
    when its header alone reads with Rows/Columns, say that the pixel data is what is damaged
    rather than calling it "not an image"."""
    if "Rows" in full and "Columns" in full:
        return
    if header is None or "Rows" not in header:
        try:
            header = read_header(path)
        except PneumoViewError:
            return
    if "Rows" in header and "Columns" in header:
        raise PneumoViewError(
            "the pixel data is cut short or damaged (the file ends inside it, or its item "
            "structure is broken): the header reads, the image does not", path)


def _display_values(stored: np.ndarray, ds: Dataset, frame: int,
                    photometric: str) -> tuple[np.ndarray, int]:
    """(values, colour bit depth): grey after the frame's Modality LUT, PALETTE COLOR indices
    through the palette, true colour as stored (exact in float32)."""
    bits = header_int(ds, "BitsStored", 8)
    if stored.ndim == 2 and photometric == "PALETTE COLOR":
        return colour.apply_palette(stored, ds).astype(np.float32), colour.palette_bits(ds)
    if stored.ndim == 3:
        return colour.exact_float_depth(stored, bits)
    from pydicom.pixels import apply_modality_lut

    source = functional_groups.rescale_source(ds, frame)
    return modality_values(stored, source, apply_modality_lut), bits


def _identity(ds: Dataset, frame: int) -> Window | None:
    """The no-VOI window over every value the stored bits can hold, after the frame's
    Modality LUT; only for data of at most ``windowing.IDENTITY_MAX_BITS`` bits stored."""
    from pydicom.pixels import apply_modality_lut

    bits = header_int(ds, "BitsStored", 8)
    if not 1 <= bits <= windowing.IDENTITY_MAX_BITS:
        return None
    signed = header_int(ds, "PixelRepresentation", 0) == 1
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    stored = np.arange(lo, hi + 1, dtype=np.int32).reshape(1, -1)
    try:
        values = modality_values(stored, functional_groups.rescale_source(ds, frame),
                           apply_modality_lut)
    except Exception:  # a Modality LUT that cannot map every value: no identity
        return None
    return windowing.identity_window(float(values.min()), float(values.max()))


def _check_shape(stored: np.ndarray, ds: Dataset, path: PathType) -> None:
    """The decoded frame must be Rows x Columns (x samples): a header whose Columns disagrees
    with the data length would otherwise decode to a 4-D array instead of an error."""
    rows, cols = header_int(ds, "Rows", 0, path), header_int(ds, "Columns", 0, path)
    ok = stored.ndim in (2, 3) and stored.shape[:2] == (rows, cols)
    if ok and stored.ndim == 3:
        ok = stored.shape[2] in (3, 4)
    if not ok:
        raise PneumoViewError(f"the pixel data does not match the header: decoded shape "
                              f"{tuple(stored.shape)}, header {rows}x{cols}", path)


def modality_values(stored: np.ndarray, ds: Dataset, apply_modality_lut: Any) -> np.ndarray:
    """Apply the Modality LUT (rescale or LUT sequence) to grey data; colour passes through.

    Rescale is done in float32 in place (the common case, and twice as fast as pydicom's
    float64 path); the LUT sequence goes through pydicom.
    """
    if stored.ndim == 3 and stored.shape[-1] in (3, 4):
        return stored.astype(np.float32)
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    try:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid RescaleSlope/RescaleIntercept: {exc}") from None
    if not (np.isfinite(slope) and np.isfinite(intercept)):
        name = getattr(ds, "filename", None)  # None for a functional group's item
        raise PneumoViewError(f"invalid rescale (slope {slope}, intercept {intercept})",
                              name if isinstance(name, str) else None)
    values = stored.astype(np.float32)
    if slope != 1:
        values *= np.float32(slope)
    if intercept != 0:
        values += np.float32(intercept)
    return values
