"""The fast header parser: the few elements the tree needs, straight from the bytes.

It handles the common case (the 128-byte preamble and "DICM", little-endian, a plain
character set), reads through a :class:`~.readbuffer.ReadBuffer` and stops after Columns
(0028,0011). Anything unusual (big-endian or deflated syntax, ISO 2022 character sets,
VR/syntax mismatches, oddly encoded values) raises :class:`~.readbuffer.Fallback`, and the
pydicom path (:mod:`.pydicomheader`) reads the file instead, so this parser never has to be
clever. Tests check that both paths give identical records.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.indexer.fields import (
    CHARSET_TAG,
    ESSENTIAL_TAGS,
    INCOMPLETE,
    INT,
    STOP_AFTER,
    UINT16,
    WANTED,
    WANTED_TAGS,
    clean,
    to_int,
)
from pneumoview.core.indexer.readbuffer import CHUNK, Fallback, ReadBuffer, Truncated
from pneumoview.core.indexer.records import DICOMDIR_SOP_CLASS

__all__ = ["fast_fields"]

_VRS = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    b"UN UR US UT UV".split())
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_TEXT_VRS = frozenset(b"AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT UN".split())

#: Character sets the fast path decodes itself (pydicom's default is ISO 8859-1 too).
_SIMPLE_CHARSETS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1",
                    "ISO_IR 192": "utf_8"}

_IMPLICIT_LE = "1.2.840.10008.1.2"
_UNHANDLED_SYNTAXES = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}  # big endian, deflate
_META_KEPT = (0x00020002, 0x00020003, 0x00020010)  # media SOP class / instance, syntax

_MAX_SKIP_DEPTH = 16

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TAG = struct.Struct("<HH")
_TAG_LEN = struct.Struct("<HHI")

_Raw = dict[int, tuple[bytes | None, bytes]]


def _element_header(w: ReadBuffer, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, vr or None, value length, header length) of the element at ``pos``."""
    off = w.view(pos, pos + 8)
    group, elem = _TAG.unpack_from(w.data, off)
    if implicit or group == 0xFFFE:
        return (group << 16) | elem, None, _U32.unpack_from(w.data, off + 4)[0], 8
    vr = bytes(w.data[off + 4:off + 6])
    if vr not in _VRS:
        raise Fallback
    if vr in _LONG_VRS:
        off = w.view(pos, pos + 12)
        return (group << 16) | elem, vr, _U32.unpack_from(w.data, off + 8)[0], 12
    return (group << 16) | elem, vr, _U16.unpack_from(w.data, off + 6)[0], 8


def _skip_undefined(w: ReadBuffer, pos: int, implicit: bool, depth: int = 0) -> int:
    """Skip an undefined-length sequence (items, then the sequence delimiter)."""
    if depth > _MAX_SKIP_DEPTH:
        raise Fallback
    while True:
        off = w.view(pos, pos + 8)
        group, elem, length = _TAG_LEN.unpack_from(w.data, off)
        pos += 8
        if group == 0xFFFE and elem == 0xE0DD:
            return pos
        if group != 0xFFFE or elem != 0xE000:
            raise Fallback
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


def fast_fields(path: str, size: int, f: Any = None, first: bytes = b"") -> dict[str, Any]:
    """Header fields of a preamble+DICM little-endian file, or raise Fallback/Truncated.

    ``f``/``first``: an open file and the bytes already read from its start (saves an open).
    """
    if f is None:
        with open(path, "rb") as fh:
            return fast_fields(path, size, fh, fh.read(CHUNK))
    w = ReadBuffer(f, size, first)
    if w.data[128:132] != b"DICM":
        raise Fallback
    pos, meta = _read_meta(w, 132)
    syntax = meta.get(0x00020010, b"").decode("latin_1").strip(" \x00")
    implicit = _check_syntax(w, pos, syntax)
    raw = _wanted_elements(w, pos, implicit)
    if not any(t in raw for t in ESSENTIAL_TAGS) and \
            meta.get(0x00020002, b"").decode("latin_1").strip(" \x00") != DICOMDIR_SOP_CLASS:
        raise PneumoViewError(INCOMPLETE, path)
    return _decode_fields(raw, meta, syntax)


def _read_meta(w: ReadBuffer, pos: int) -> tuple[int, dict[int, bytes]]:
    """The file meta information (always explicit VR little endian, group 0002): the position
    after it and the values of the elements in :data:`_META_KEPT`."""
    meta: dict[int, bytes] = {}
    while True:
        if pos >= w.size:
            raise Truncated
        off = w.view(pos, pos + 8)
        if _U16.unpack_from(w.data, off)[0] != 0x0002:
            return pos, meta
        tag, _vr, length, hdr = _element_header(w, pos, False)
        if length == 0xFFFFFFFF:
            raise Fallback
        if tag in _META_KEPT:
            voff = w.view(pos + hdr, pos + hdr + length)
            meta[tag] = bytes(w.data[voff:voff + length])
        pos += hdr + length


def _check_syntax(w: ReadBuffer, pos: int, syntax: str) -> bool:
    """Whether the data set at ``pos`` is implicit VR; Fallback for a syntax left to pydicom."""
    if not syntax or syntax in _UNHANDLED_SYNTAXES:
        raise Fallback
    if syntax == _IMPLICIT_LE:
        # pydicom corrects files whose data contradict the declared syntax; so do we, by
        # leaving them to it.
        if pos + 8 <= w.size and bytes(w.data[(o := w.view(pos, pos + 8)) + 4:o + 6]) in _VRS:
            raise Fallback
        return True
    if not _known_syntax(syntax):
        raise Fallback  # unknown private syntax: let pydicom probe it
    return False


def _wanted_elements(w: ReadBuffer, pos: int, implicit: bool) -> _Raw:
    """(VR, value bytes) of each wanted element of the data set, up to :data:`STOP_AFTER`."""
    raw: _Raw = {}
    size = w.size
    wanted = WANTED_TAGS
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
                    raise Fallback
        else:
            tag, vr, length, hdr = _element_header(w, pos, implicit)
        if tag > STOP_AFTER:
            break
        if length == 0xFFFFFFFF:
            if tag in wanted:
                raise Fallback
            pos = _skip_undefined(w, pos + hdr, implicit or vr == b"UN")
            continue
        end = pos + hdr + length
        if tag in wanted:
            voff = w.view(pos + hdr, end)
            raw[tag] = (vr, w.data[voff:voff + length])
        elif end > size:
            raise Truncated
        pos = end
    return raw


@functools.lru_cache(maxsize=64)
def _known_syntax(syntax: str) -> bool:
    from pydicom.uid import UID

    return UID(syntax).is_transfer_syntax


def _encoding(raw: _Raw) -> str:
    """The Python codec for the file's SpecificCharacterSet (popped from ``raw``)."""
    charset_raw = raw.pop(CHARSET_TAG, (None, b""))[1].decode("latin_1")
    terms = {t.strip(" \x00") for t in charset_raw.split("\\")} - {""} or {""}
    encodings = {_SIMPLE_CHARSETS.get(t) for t in terms}
    if len(encodings) != 1 or None in encodings:
        raise Fallback  # ISO 2022 code extensions, other single-byte sets: pydicom decodes
    return str(encodings.pop())


def _decode_fields(raw: _Raw, meta: dict[int, bytes], syntax: str) -> dict[str, Any]:
    encoding = _encoding(raw)
    out: dict[str, Any] = {"transfer_syntax": syntax}
    for tag, (vr, value) in raw.items():
        name, kind = WANTED[tag]
        if kind == UINT16:
            if vr not in (None, b"US", b"UN") or len(value) not in (0, 2):
                raise Fallback
            out[name] = _U16.unpack(value)[0] if value else 0
            continue
        if vr is not None and vr not in _TEXT_VRS:
            raise Fallback
        try:
            text = value.decode(encoding)
        except UnicodeDecodeError:
            raise Fallback from None
        out[name] = to_int(text) if kind == INT else clean(text)
    if not out.get("sop_class_uid") and 0x00020002 in meta:
        out["sop_class_uid"] = clean(meta[0x00020002].decode("latin_1"))
    if not out.get("sop_instance_uid") and 0x00020003 in meta:
        out["sop_instance_uid"] = clean(meta[0x00020003].decode("latin_1"))
    return out
