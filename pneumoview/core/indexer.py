"""Indexing a folder of DICOM files into Patient -> Study -> Series -> Instance.

Only headers are read, never pixel data. The common case (a file with the 128-byte preamble and
"DICM", little-endian, a plain character set) goes through a small parser that reads the few
elements the tree needs and stops after Columns (0028,0011); anything unusual (big-endian or
deflated syntax, ISO 2022 character sets, VR/syntax mismatches, oddly encoded values) falls back
to :func:`pneumoview.core.dicomio.read_header`, i.e. pydicom, so the fast path never has to be
clever. Tests check that both paths give identical :class:`Instance` records.

An :class:`~pneumoview.core.indexcache.IndexCache` keyed by path and
:func:`~pneumoview.core.indexcache.stat_key` (size, mtime, ctime, inode, device) makes
reopening a folder a walk plus one ``stat`` per file. Paths are kept exactly as the OS gives
them (a name that is not valid UTF-8 is a str with surrogate escapes, as ``os.fsdecode``
makes). A DICOMDIR is read for the files it references, which may not escape its folder.
Symlink loops are cut by remembering visited folders by (st_dev, st_ino). Log messages carry
paths at debug level only, never patient data.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import os
import stat as stat_mod
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pneumoview.core.errors import FileAccessError, NotDicomError, PneumoViewError
from pneumoview.core.indexcache import IndexCache, stat_key
from pneumoview.core.walk import IssueCallback as IssueCallback
from pneumoview.core.walk import iter_files as iter_files
from pneumoview.core.walk import walk as _walk

__all__ = [
    "Instance", "Series", "Study", "Patient", "IndexProgress", "IndexResult", "IndexCache",
    "build_tree", "iter_files", "read_instance", "index_folder", "DICOMDIR_SOP_CLASS",
]

log = logging.getLogger(__name__)

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage

PathType = str | os.PathLike[str]


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------
@dataclass
class Instance:
    """One DICOM file's indexed header fields (strings are '' when absent)."""

    path: str
    sop_instance_uid: str
    instance_number: int | None
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    study_instance_uid: str
    study_date: str
    study_time: str
    study_description: str
    accession_number: str
    series_instance_uid: str
    series_number: int | None
    series_description: str
    modality: str
    rows: int
    columns: int
    n_frames: int
    photometric: str
    transfer_syntax: str
    view_position: str
    body_part: str
    sop_class_uid: str
    file_size: int
    mtime_ns: int


_INSTANCE_FIELDS = tuple(f.name for f in dataclasses.fields(Instance))


@dataclass
class Series:
    uid: str
    number: int | None
    description: str
    modality: str
    instances: list[Instance]
    placeholder: bool = False  # True for the "Unknown series" group of files without a UID


@dataclass
class Study:
    uid: str
    date: str
    time: str
    description: str
    accession: str
    series: list[Series]
    placeholder: bool = False


@dataclass
class Patient:
    id: str
    name: str
    birth_date: str
    sex: str
    studies: list[Study]
    placeholder: bool = False


@dataclass
class IndexProgress:
    files_seen: int
    dicom_found: int
    non_dicom: int
    errors: int
    current: str  # path of the file being read, relative to the indexed root


@dataclass
class IndexResult:
    root: str
    patients: list[Patient]
    instances: list[Instance]
    non_dicom: list[str]
    errors: list[tuple[str, str]]
    cancelled: bool
    from_cache: int
    headers_read: int = 0  # headers actually parsed this run (0 for a fully cached reopen)
    dicomdirs: list[str] = field(default_factory=list)  # DICOMDIR files that were followed
    elapsed_s: float = 0.0


# --------------------------------------------------------------------------------------------
# Value normalisation shared by both readers (so they agree exactly)
# --------------------------------------------------------------------------------------------
def _clean(text: str) -> str:
    """Multi-values joined by a backslash, each stripped of padding spaces and NULs."""
    if "\\" in text:
        return "\\".join(part.strip(" \x00") for part in text.split("\\"))
    return text.strip(" \x00")


def _to_int(text: str) -> int | None:
    first = text.split("\\", 1)[0].strip(" \x00")
    if not first:
        return None
    try:
        return int(first)
    except ValueError:
        pass
    try:
        value = float(first)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


# --------------------------------------------------------------------------------------------
# Fast header parser
# --------------------------------------------------------------------------------------------
class _Fallback(Exception):
    """The fast parser met something it does not handle: let pydicom read the file."""


class _Truncated(Exception):
    """The header ends in the middle of an element."""


_STRING = 0
_UINT16 = 1
_INT = 2

#: (group << 16 | element) -> (Instance field, kind). SpecificCharacterSet is handled apart.
_WANTED: dict[int, tuple[str, int]] = {
    0x00080016: ("sop_class_uid", _STRING),
    0x00080018: ("sop_instance_uid", _STRING),
    0x00080020: ("study_date", _STRING),
    0x00080030: ("study_time", _STRING),
    0x00080050: ("accession_number", _STRING),
    0x00080060: ("modality", _STRING),
    0x00081030: ("study_description", _STRING),
    0x0008103E: ("series_description", _STRING),
    0x00100010: ("patient_name", _STRING),
    0x00100020: ("patient_id", _STRING),
    0x00100030: ("patient_birth_date", _STRING),
    0x00100040: ("patient_sex", _STRING),
    0x00180015: ("body_part", _STRING),
    0x00185101: ("view_position", _STRING),
    0x0020000D: ("study_instance_uid", _STRING),
    0x0020000E: ("series_instance_uid", _STRING),
    0x00200011: ("series_number", _INT),
    0x00200013: ("instance_number", _INT),
    0x00280004: ("photometric", _STRING),
    0x00280008: ("n_frames", _INT),
    0x00280010: ("rows", _UINT16),
    0x00280011: ("columns", _UINT16),
}
_CHARSET_TAG = 0x00080005
#: A header with none of these is treated as damaged (pydicom silently returns what it read
#: of a truncated file, so this is how both readers catch truncation before the identifiers).
_ESSENTIAL_TAGS = (0x00080016, 0x00080018, 0x0020000D, 0x00280010, 0x00100020)
_INCOMPLETE = ("DICOM header has no identifiers and no image size (file truncated or "
               "damaged?); copy the file again from its source")
_STOP_AFTER = 0x00280011
_WANTED_TAGS = frozenset(_WANTED) | {_CHARSET_TAG}

#: Keywords for the pydicom path, in the same order as _WANTED.
_KEYWORDS: dict[str, str] = {
    "sop_class_uid": "SOPClassUID", "sop_instance_uid": "SOPInstanceUID",
    "study_date": "StudyDate", "study_time": "StudyTime", "accession_number": "AccessionNumber",
    "modality": "Modality", "study_description": "StudyDescription",
    "series_description": "SeriesDescription", "patient_name": "PatientName",
    "patient_id": "PatientID", "patient_birth_date": "PatientBirthDate",
    "patient_sex": "PatientSex", "body_part": "BodyPartExamined",
    "view_position": "ViewPosition", "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID", "series_number": "SeriesNumber",
    "instance_number": "InstanceNumber", "photometric": "PhotometricInterpretation",
    "n_frames": "NumberOfFrames", "rows": "Rows", "columns": "Columns",
}

_VRS = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    b"UN UR US UT UV".split())
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_TEXT_VRS = frozenset(b"AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT UN".split())

#: Character sets the fast path decodes itself (pydicom's default is ISO 8859-1 too).
_SIMPLE_CHARSETS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1",
                    "ISO_IR 192": "utf_8"}

_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_UNHANDLED_SYNTAXES = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}  # big endian, deflate

_CHUNK = 16384
_MAX_SKIP_DEPTH = 16

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TAG = struct.Struct("<HH")
_TAG_LEN = struct.Struct("<HHI")


class _Window:
    """A sliding read window over a file, addressed by absolute offsets."""

    __slots__ = ("f", "size", "base", "data")

    def __init__(self, f: Any, size: int, first: bytes) -> None:
        self.f = f
        self.size = size
        self.base = 0
        self.data = first

    def view(self, start: int, end: int) -> int:
        """Make [start, end) readable; return the offset of ``start`` inside ``self.data``."""
        if start >= self.base and end <= self.base + len(self.data):
            return start - self.base
        if end > self.size:
            raise _Truncated
        if end - start > (1 << 24):
            raise _Fallback  # a 16 MiB value we want is not a plausible header
        self.f.seek(start)
        self.data = self.f.read(max(end - start, _CHUNK))
        self.base = start
        if len(self.data) < end - start:
            raise _Truncated
        return 0


def _element_header(w: _Window, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, vr or None, value length, header length) of the element at ``pos``."""
    off = w.view(pos, pos + 8)
    group, elem = _TAG.unpack_from(w.data, off)
    if implicit or group == 0xFFFE:
        return (group << 16) | elem, None, _U32.unpack_from(w.data, off + 4)[0], 8
    vr = bytes(w.data[off + 4:off + 6])
    if vr not in _VRS:
        raise _Fallback
    if vr in _LONG_VRS:
        off = w.view(pos, pos + 12)
        return (group << 16) | elem, vr, _U32.unpack_from(w.data, off + 8)[0], 12
    return (group << 16) | elem, vr, _U16.unpack_from(w.data, off + 6)[0], 8


def _skip_undefined(w: _Window, pos: int, implicit: bool, depth: int = 0) -> int:
    """Skip an undefined-length sequence (items, then the sequence delimiter)."""
    if depth > _MAX_SKIP_DEPTH:
        raise _Fallback
    while True:
        off = w.view(pos, pos + 8)
        group, elem, length = _TAG_LEN.unpack_from(w.data, off)
        pos += 8
        if group == 0xFFFE and elem == 0xE0DD:
            return pos
        if group != 0xFFFE or elem != 0xE000:
            raise _Fallback
        if length != 0xFFFFFFFF:
            pos += length
            continue
        while True:  # an undefined-length item: elements until the item delimiter
            tag, vr, length, hdr = _element_header(w, pos, implicit)
            if tag == 0xFFFEE00D:
                pos += 8
                break
            if length == 0xFFFFFFFF:
                pos = _skip_undefined(w, pos + hdr, implicit or vr == b"UN", depth + 1)
            else:
                pos += hdr + length


def _fast_fields(path: str, size: int, f: Any = None, first: bytes = b"") -> dict[str, Any]:
    """Header fields of a preamble+DICM little-endian file, or raise _Fallback/_Truncated.

    ``f``/``first``: an open file and the bytes already read from its start (saves an open).
    """
    if f is None:
        with open(path, "rb") as fh:
            return _fast_fields(path, size, fh, fh.read(_CHUNK))
    w = _Window(f, size, first)
    if w.data[128:132] != b"DICM":
        raise _Fallback
    # File meta information: always explicit VR little endian, group 0002.
    pos = 132
    meta: dict[int, bytes] = {}
    while True:
        if pos >= size:
            raise _Truncated
        off = w.view(pos, pos + 8)
        if _U16.unpack_from(w.data, off)[0] != 0x0002:
            break
        tag, vr, length, hdr = _element_header(w, pos, False)
        if length == 0xFFFFFFFF:
            raise _Fallback
        if tag in (0x00020002, 0x00020003, 0x00020010):
            voff = w.view(pos + hdr, pos + hdr + length)
            meta[tag] = bytes(w.data[voff:voff + length])
        pos += hdr + length
    syntax = meta.get(0x00020010, b"").decode("latin_1").strip(" \x00")
    if not syntax or syntax in _UNHANDLED_SYNTAXES:
        raise _Fallback
    implicit = syntax == _IMPLICIT_LE
    if implicit:
        # pydicom corrects files whose data contradict the declared syntax; so do we, by
        # leaving them to it.
        if pos + 8 <= size and bytes(w.data[(o := w.view(pos, pos + 8)) + 4:o + 6]) in _VRS:
            raise _Fallback
    elif not _known_syntax(syntax):
        raise _Fallback  # unknown private syntax: let pydicom probe it
    raw: dict[int, tuple[bytes | None, bytes]] = {}
    wanted = _WANTED_TAGS
    tag_at, u16_at, u32_at = _TAG.unpack_from, _U16.unpack_from, _U32.unpack_from
    while pos < size:
        # Inline element-header parse while the window holds it (the hot loop: ~90 elements
        # per typical header); _element_header handles the window edges.
        data = w.data
        off = pos - w.base
        if off >= 0 and off + 12 <= len(data):
            group, elem = tag_at(data, off)
            tag = (group << 16) | elem
            if implicit or group == 0xFFFE:
                vr, length, hdr = None, u32_at(data, off + 4)[0], 8
            else:
                vr = data[off + 4:off + 6]
                if vr in _LONG_VRS:
                    length, hdr = u32_at(data, off + 8)[0], 12
                elif vr in _VRS:
                    length, hdr = u16_at(data, off + 6)[0], 8
                else:
                    raise _Fallback
        else:
            tag, vr, length, hdr = _element_header(w, pos, implicit)
        if tag > _STOP_AFTER:
            break
        if length == 0xFFFFFFFF:
            if tag in wanted:
                raise _Fallback
            pos = _skip_undefined(w, pos + hdr, implicit or vr == b"UN")
            continue
        end = pos + hdr + length
        if tag in wanted:
            voff = w.view(pos + hdr, end)
            raw[tag] = (vr, w.data[voff:voff + length])
        elif end > size:
            raise _Truncated
        pos = end
    if not any(t in raw for t in _ESSENTIAL_TAGS) and \
            meta.get(0x00020002, b"").decode("latin_1").strip(" \x00") != DICOMDIR_SOP_CLASS:
        raise PneumoViewError(_INCOMPLETE, path)
    return _decode_fields(raw, meta, syntax)


@functools.lru_cache(maxsize=64)
def _known_syntax(syntax: str) -> bool:
    from pydicom.uid import UID

    return UID(syntax).is_transfer_syntax


def _decode_fields(raw: dict[int, tuple[bytes | None, bytes]], meta: dict[int, bytes],
                   syntax: str) -> dict[str, Any]:
    charset_raw = raw.pop(_CHARSET_TAG, (None, b""))[1].decode("latin_1")
    terms = {t.strip(" \x00") for t in charset_raw.split("\\")} - {""} or {""}
    encodings = {_SIMPLE_CHARSETS.get(t) for t in terms}
    if len(encodings) != 1 or None in encodings:
        raise _Fallback  # ISO 2022 code extensions, other single-byte sets: pydicom decodes
    encoding = str(encodings.pop())
    out: dict[str, Any] = {"transfer_syntax": syntax}
    for tag, (vr, value) in raw.items():
        name, kind = _WANTED[tag]
        if kind == _UINT16:
            if vr not in (None, b"US", b"UN") or len(value) not in (0, 2):
                raise _Fallback
            out[name] = _U16.unpack(value)[0] if value else 0
            continue
        if vr is not None and vr not in _TEXT_VRS:
            raise _Fallback
        try:
            text = value.decode(encoding)
        except UnicodeDecodeError:
            raise _Fallback from None
        out[name] = _to_int(text) if kind == _INT else _clean(text)
    if not out.get("sop_class_uid") and 0x00020002 in meta:
        out["sop_class_uid"] = _clean(meta[0x00020002].decode("latin_1"))
    if not out.get("sop_instance_uid") and 0x00020003 in meta:
        out["sop_instance_uid"] = _clean(meta[0x00020003].decode("latin_1"))
    return out


# --------------------------------------------------------------------------------------------
# pydicom path
# --------------------------------------------------------------------------------------------
def _pydicom_text(value: Any) -> str:
    if value is None:
        return ""
    from pydicom.multival import MultiValue

    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_clean(str(v)) for v in value)
    return _clean(str(value))


def _pydicom_fields(path: str) -> dict[str, Any]:
    from pneumoview.core.dicomio import read_header

    ds = read_header(path)
    meta = getattr(ds, "file_meta", None)
    if not any(k in ds for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "Rows",
                                 "PatientID")):
        if meta is None or str(meta.get("MediaStorageSOPClassUID", "")) != DICOMDIR_SOP_CLASS:
            raise PneumoViewError(_INCOMPLETE, path)
    out: dict[str, Any] = {}
    for name, kind in _WANTED.values():
        try:
            value = ds.get(_KEYWORDS[name])
            # str() of a value read as a sequence converts the elements nested in it: it can
            # raise too (a twin of the fuzzer's find in `info`)
            text = "" if kind == _UINT16 else _pydicom_text(value)
        except Exception as exc:  # a value pydicom cannot convert
            raise PneumoViewError(f"unreadable value for {_KEYWORDS[name]} ({exc})",
                                  path) from exc
        if kind == _UINT16:
            try:
                out[name] = int(value) if value not in (None, "") else 0
            except (TypeError, ValueError):
                out[name] = 0
        elif kind == _INT:
            out[name] = _to_int(text)
        else:
            out[name] = text
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    out["transfer_syntax"] = _clean(syntax)
    if not out["sop_class_uid"] and meta is not None:
        out["sop_class_uid"] = _pydicom_text(meta.get("MediaStorageSOPClassUID"))
    if not out["sop_instance_uid"] and meta is not None:
        out["sop_instance_uid"] = _pydicom_text(meta.get("MediaStorageSOPInstanceUID"))
    return out


# --------------------------------------------------------------------------------------------
# Reading one file
# --------------------------------------------------------------------------------------------
_NOT_DICOM = object()


def _plausible_raw_dicom(head: bytes) -> bool:
    """A file without preamble may still be DICOM (old ACR-NEMA style): it then starts with a
    low even group number. Anything else (PNG, JPEG, text, zip...) is not worth a forced read,
    which on a large non-DICOM file could read much of it."""
    if len(head) < 8:
        return False
    group_le = _U16.unpack_from(head, 0)[0]
    group_be = struct.unpack_from(">H", head, 0)[0]
    return group_le in (0x0000, 0x0002, 0x0004, 0x0008) or group_be in (0x0002, 0x0008)


def _make_instance(path: str, st: os.stat_result, fields: dict[str, Any]) -> Instance:
    n_frames = fields.get("n_frames")
    return Instance(
        path=path,
        sop_instance_uid=fields.get("sop_instance_uid", ""),
        instance_number=fields.get("instance_number"),
        patient_id=fields.get("patient_id", ""),
        patient_name=fields.get("patient_name", ""),
        patient_birth_date=fields.get("patient_birth_date", ""),
        patient_sex=fields.get("patient_sex", ""),
        study_instance_uid=fields.get("study_instance_uid", ""),
        study_date=fields.get("study_date", ""),
        study_time=fields.get("study_time", ""),
        study_description=fields.get("study_description", ""),
        accession_number=fields.get("accession_number", ""),
        series_instance_uid=fields.get("series_instance_uid", ""),
        series_number=fields.get("series_number"),
        series_description=fields.get("series_description", ""),
        modality=fields.get("modality", ""),
        rows=int(fields.get("rows", 0) or 0),
        columns=int(fields.get("columns", 0) or 0),
        n_frames=max(1, n_frames) if isinstance(n_frames, int) else 1,
        photometric=fields.get("photometric", ""),
        transfer_syntax=fields.get("transfer_syntax", ""),
        view_position=fields.get("view_position", ""),
        body_part=fields.get("body_part", ""),
        sop_class_uid=fields.get("sop_class_uid", ""),
        file_size=int(st.st_size),
        mtime_ns=int(st.st_mtime_ns),
    )


def _read(path: str, st: os.stat_result, fast: bool = True) -> Instance | object:
    """An Instance, or _NOT_DICOM; PneumoViewError for DICOM-looking files that fail."""
    try:
        with open(path, "rb") as f:
            head = f.read(_CHUNK)
            if fast and head[128:132] == b"DICM":
                try:
                    return _make_instance(path, st, _fast_fields(path, st.st_size, f, head))
                except _Truncated:
                    raise PneumoViewError(
                        "DICOM header ends early (file truncated: incomplete copy or "
                        "download?)", path) from None
                except _Fallback:
                    pass
                except (struct.error, ValueError, IndexError) as exc:
                    log.debug("fast header parse fell back to pydicom (%s)", type(exc).__name__)
    except FileNotFoundError:
        raise PneumoViewError("file not found (moved or deleted while indexing?)", path) from None
    except PermissionError:
        raise PneumoViewError("permission denied: the file cannot be read", path) from None
    except OSError as exc:
        raise PneumoViewError(f"cannot read the file ({exc.strerror or exc})", path) from None
    has_preamble = head[128:132] == b"DICM"
    if not has_preamble:
        if not _plausible_raw_dicom(head):
            return _NOT_DICOM
        try:
            return _make_instance(path, st, _pydicom_fields(path))
        except PneumoViewError:
            return _NOT_DICOM  # no preamble and no readable DICOM content
    return _make_instance(path, st, _pydicom_fields(path))


def read_instance(path: PathType, *, fast: bool = True) -> Instance:
    """Read one file's header into an :class:`Instance` (no pixel data is read).

    Raises PneumoViewError for a non-DICOM file or a damaged header. ``fast=False`` forces the
    pydicom reader (``dicomio.read_header``); the default tries the small parser first.
    """
    spath = os.fspath(path)
    try:
        st = os.stat(spath)
    except FileNotFoundError as exc:
        raise FileAccessError("file not found", spath, exc.errno) from None
    except OSError as exc:
        raise FileAccessError(f"cannot read the file ({exc.strerror or exc})", spath,
                              exc.errno) from None
    if stat_mod.S_ISDIR(st.st_mode):
        raise FileAccessError("is a folder, not a DICOM file", spath, errno.EISDIR)
    result = _read(spath, st, fast=fast)
    if result is _NOT_DICOM:
        raise NotDicomError("not a DICOM file (no DICM preamble, no DICOM content)", spath)
    assert isinstance(result, Instance)
    return result


# --------------------------------------------------------------------------------------------
# Grouping
# --------------------------------------------------------------------------------------------
def _first(values: Iterable[str]) -> str:
    return next((v for v in values if v), "")


def _num_key(number: int | None) -> tuple[int, int]:
    return (1, 0) if number is None else (0, number)


def build_tree(instances: Iterable[Instance]) -> list[Patient]:
    """Group instances Patient -> Study -> Series, sorted for display.

    Files without a PatientID are grouped by name (or into one "Unknown patient"); files
    without a Study/Series Instance UID go into one "Unknown study"/"Unknown series" group per
    parent, whose uid is a stable "unknown:..." key that no real UID can equal.
    Order: patients by name then ID, studies by date/time, series by SeriesNumber, instances by
    InstanceNumber then path (missing numbers last).
    """
    patients: dict[tuple[str, str], dict[str, dict[str, list[Instance]]]] = {}
    for inst in instances:
        pkey = (inst.patient_id, "") if inst.patient_id else ("", inst.patient_name)
        skey = inst.study_instance_uid or ""
        rkey = inst.series_instance_uid or ""
        patients.setdefault(pkey, {}).setdefault(skey, {}).setdefault(rkey, []).append(inst)

    out: list[Patient] = []
    for (pid, pname), studies in patients.items():
        pkey_text = pid or f"name:{pname}"
        study_list: list[Study] = []
        all_p = [i for series in studies.values() for insts in series.values() for i in insts]
        for suid, series_map in studies.items():
            all_s = [i for insts in series_map.values() for i in insts]
            study_uid = suid or f"unknown:study:{pkey_text}"
            series_list: list[Series] = []
            for ruid, insts in series_map.items():
                insts.sort(key=lambda i: (_num_key(i.instance_number), i.path))
                number = next((i.series_number for i in insts if i.series_number is not None),
                              None)
                series_list.append(Series(
                    uid=ruid or f"unknown:series:{study_uid}",
                    number=number,
                    description=_first(i.series_description for i in insts)
                    or ("Unknown series" if not ruid else ""),
                    modality=_first(i.modality for i in insts),
                    instances=insts,
                    placeholder=not ruid))
            series_list.sort(key=lambda s: (_num_key(s.number), s.description, s.uid))
            study_list.append(Study(
                uid=study_uid,
                date=_first(i.study_date for i in all_s),
                time=_first(i.study_time for i in all_s),
                description=_first(i.study_description for i in all_s)
                or ("Unknown study" if not suid else ""),
                accession=_first(i.accession_number for i in all_s),
                series=series_list,
                placeholder=not suid))
        study_list.sort(key=lambda s: (s.date, s.time, s.description, s.uid))
        out.append(Patient(
            id=pid,
            name=pname or _first(i.patient_name for i in all_p)
            or ("Unknown patient" if not pid else ""),
            birth_date=_first(i.patient_birth_date for i in all_p),
            sex=_first(i.patient_sex for i in all_p),
            studies=study_list,
            placeholder=not pid and not pname))
    out.sort(key=lambda p: (p.placeholder, p.name, p.id))
    return out


# --------------------------------------------------------------------------------------------
# Walking
# --------------------------------------------------------------------------------------------
def _file_key(path: str, st: os.stat_result) -> tuple[Any, ...]:
    """Identity of a file, so one reached twice (DICOMDIR + walk, two symlinks) counts once."""
    if st.st_ino:
        return (st.st_dev, st.st_ino)
    return ("path", os.path.normcase(os.path.realpath(path)))


# --------------------------------------------------------------------------------------------
# DICOMDIR
# --------------------------------------------------------------------------------------------
def _is_within(child: str, parent: str) -> bool:
    try:
        return os.path.commonpath([child, parent]) == parent
    except ValueError:  # different drives
        return False


def _dicomdir_references(path: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Files a DICOMDIR references (inside its folder) and error entries for refused ones."""
    from pneumoview.core.dicomio import read_header

    folder = os.path.dirname(path)
    real_folder = os.path.realpath(folder)
    ds = read_header(path)
    found: list[str] = []
    errors: list[tuple[str, str]] = []
    try:
        records = list(ds.get("DirectoryRecordSequence", []) or [])
    except Exception as exc:  # a damaged sequence (found by the fuzzer)
        raise PneumoViewError(f"unreadable directory records ({type(exc).__name__})",
                              path) from None
    for record in records:
        try:  # values inside records are converted when read: a damaged one raises here
            ref = record.get("ReferencedFileID")
            parts = None if ref is None else (
                [str(p) for p in ref] if not isinstance(ref, str) else str(ref).split("\\"))
        except Exception as exc:  # found by the fuzzer
            errors.append((path, f"DICOMDIR record unreadable ({type(exc).__name__}); "
                                 "skipped (the DICOMDIR may be damaged)"))
            continue
        if parts is None:
            continue
        parts = [p.strip(" \x00") for p in parts]
        shown = "\\".join(parts)
        bad = (not parts or any(
            p in ("", ".", "..") or "/" in p or "\\" in p or ":" in p or "\x00" in p
            for p in parts))
        target = os.path.normpath(os.path.join(folder, *parts)) if not bad else ""
        if bad or not _is_within(target, os.path.normpath(folder)) \
                or not _is_within(os.path.realpath(target), real_folder):
            errors.append((path, f"DICOMDIR refers to {shown!r}, outside its folder or not a "
                                 "plain relative path; refused (the DICOMDIR may be malicious "
                                 "or damaged)"))
            continue
        found.append(target)
    return found, errors


def _is_dicomdir_name(path: str) -> bool:
    return os.path.basename(path).upper() == "DICOMDIR"


# --------------------------------------------------------------------------------------------
# Indexing
# --------------------------------------------------------------------------------------------
_CACHED_FIELDS = _INSTANCE_FIELDS[1:-2]  # everything but path, file_size, mtime_ns


def _instance_from_cache(path: str, values: Any, size: int, mtime_ns: int) -> Instance | None:
    """Rebuild an Instance from its cached value list (None if the entry does not fit)."""
    if not isinstance(values, list) or len(values) != len(_CACHED_FIELDS):
        return None
    return Instance(path, *values, size, mtime_ns)  # type: ignore[call-arg]


def _cache_fields(inst: Instance) -> list[Any]:
    return [getattr(inst, k) for k in _CACHED_FIELDS]


def index_folder(
    root: PathType,
    *,
    progress: Callable[[IndexProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_instances: Callable[[list[Instance]], None] | None = None,
    cache: IndexCache | None | bool = True,
    follow_symlinks: bool = True,
    progress_every: int = 50,
    progress_interval_s: float = 0.1,
) -> IndexResult:
    """Index every DICOM file below ``root`` (a folder, or a single file) into a tree.

    ``progress`` is called every ``progress_every`` files or ``progress_interval_s`` seconds
    and once at the end; ``cancel`` is polled between files (a cancelled result holds what was
    found so far); ``on_instances`` receives batches of new instances as they are found.
    ``cache``: True uses the per-user cache file, an :class:`IndexCache` uses that one (left
    open), False/None reads every header. Callbacks run in the calling thread (a GUI calls
    this from a worker and forwards them with signals). Files that failed are not cached, so
    they are retried on the next run; a cancelled run keeps what it cached so far.
    """
    t0 = time.perf_counter()
    root_s = os.path.abspath(os.fspath(root))
    if not os.path.exists(root_s):
        raise PneumoViewError("folder not found", root_s)
    single_file = os.path.isfile(root_s)
    base = os.path.dirname(root_s) if single_file else root_s
    base_prefix = base if base.endswith(os.sep) else base + os.sep

    own_cache = cache is True
    store: IndexCache | None
    if cache is True:
        store = IndexCache()
    elif isinstance(cache, IndexCache):
        store = cache
    else:
        store = None
    if store is not None and not store.available:
        store = None
    cached = store.entries_under(base) if store is not None else {}

    instances: list[Instance] = []
    non_dicom: list[str] = []
    errors: list[tuple[str, str]] = []
    dicomdirs: list[str] = []
    seen_keys: set[tuple[Any, ...]] = set()
    present: set[str] = set()
    counts = {"seen": 0, "cache": 0, "read": 0}
    batch: list[Instance] = []
    last_progress = last_batch = time.monotonic()
    cancelled = False
    queue: deque[tuple[str, os.stat_result]] = deque()  # DICOMDIR references to read next
    walk_state = {"cancelled": False}

    def report(current: str, force: bool = False) -> None:
        nonlocal last_progress
        if progress is None:
            return
        now = time.monotonic()
        if force or counts["seen"] % progress_every == 0 \
                or now - last_progress >= progress_interval_s:
            last_progress = now
            progress(IndexProgress(files_seen=counts["seen"], dicom_found=len(instances),
                                   non_dicom=len(non_dicom), errors=len(errors),
                                   current=current))

    def emit(force: bool = False) -> None:
        nonlocal last_batch, batch
        if on_instances is None or not batch:
            return
        now = time.monotonic()
        if force or len(batch) >= 256 or now - last_batch >= 0.25:
            last_batch = now
            out, batch = batch, []
            on_instances(out)

    def handle(path: str, st: os.stat_result) -> None:
        key = _file_key(path, st)
        if key in seen_keys:
            return
        seen_keys.add(key)
        present.add(path)
        counts["seen"] += 1
        rel = path[len(base_prefix):] if path.startswith(base_prefix) \
            else os.path.relpath(path, base)
        report(rel)
        if _is_dicomdir_name(path):
            counts["read"] += 1  # DICOMDIRs are not cached: small, and read each time
            follow_dicomdir(path)
            return
        hit = cached.get(path)
        skey = stat_key(st)
        if hit is not None and hit[0] == skey:
            if hit[2] is None:
                non_dicom.append(path)
                counts["cache"] += 1
                return
            inst = _instance_from_cache(path, hit[2], st.st_size, st.st_mtime_ns)
            if inst is not None:
                counts["cache"] += 1
                add_instance(inst)
                return
        counts["read"] += 1
        try:
            result = _read(path, st)
        except PneumoViewError as exc:
            errors.append((path, exc.reason))
            log.debug("header failed: %s", path)
            return
        if result is _NOT_DICOM:
            non_dicom.append(path)
            if store is not None:
                store.put_not_dicom(path, skey)
            return
        assert isinstance(result, Instance)
        if result.sop_class_uid == DICOMDIR_SOP_CLASS:
            follow_dicomdir(path)
            return
        if store is not None:
            store.put_instance(path, skey, _cache_fields(result))
            if counts["read"] % 500 == 0:
                store.flush()
        add_instance(result)

    def add_instance(inst: Instance) -> None:
        instances.append(inst)
        batch.append(inst)
        emit()

    def follow_dicomdir(path: str) -> None:
        dicomdirs.append(path)
        try:
            refs, refused = _dicomdir_references(path)
        except PneumoViewError as exc:
            errors.append((path, f"DICOMDIR unreadable: {exc.reason}"))
            return
        errors.extend(refused)
        for ref in refs:
            try:
                st = os.stat(ref)
            except OSError:
                errors.append((path, "DICOMDIR refers to a missing file "
                                     f"{os.path.relpath(ref, os.path.dirname(path))!r}"))
                continue
            if stat_mod.S_ISREG(st.st_mode):
                queue.append((ref, st))

    try:
        if single_file:
            walk: Iterator[tuple[str, os.stat_result]] = iter([(root_s, os.stat(root_s))])
        else:
            walk = _walk(root_s, follow_symlinks, cancel, walk_state)
        for path, st in walk:
            if cancel is not None and cancel():
                cancelled = True
                break
            handle(path, st)
            while queue:
                if cancel is not None and cancel():
                    cancelled = True
                    break
                handle(*queue.popleft())
            if cancelled:
                break
        cancelled = cancelled or walk_state["cancelled"]
    finally:
        if store is not None:
            store.flush()
            if not cancelled and not single_file:
                store.forget_missing(base, present)
            if own_cache:
                store.close()
    emit(force=True)
    report("", force=True)
    return IndexResult(
        root=root_s, patients=build_tree(instances), instances=instances, non_dicom=non_dicom,
        errors=errors, cancelled=cancelled, from_cache=counts["cache"],
        headers_read=counts["read"], dicomdirs=dicomdirs,
        elapsed_s=time.perf_counter() - t0)


def describe(result: IndexResult) -> str:
    """One line for logs and the status bar (counts only, nothing patient-identifying)."""
    n_studies = sum(len(p.studies) for p in result.patients)
    n_series = sum(len(s.series) for p in result.patients for s in p.studies)
    return (f"{len(result.instances)} images in {n_series} series, {n_studies} studies, "
            f"{len(result.patients)} patients; {len(result.non_dicom)} non-DICOM files, "
            f"{len(result.errors)} errors; {result.from_cache} from cache"
            + (" (cancelled)" if result.cancelled else "")
            + f" in {result.elapsed_s:.2f} s")
