"""DICOM fuzzing: a seed corpus, structure-aware mutators and a fork-per-case runner.

Used by ``tests/test_fuzz_short.py`` (a short CI run) and ``tools/fuzz_campaign.py`` (a long
campaign). Both start one or more *servers* (``python -m tests.support.fuzzing serve``): a
server imports PneumoView once (and loads a random-weight model for the inference target), then
for every case builds the mutated file and **forks a child** that runs the targets on it under
an address-space limit (``resource.setrlimit``). The server watches the child: a signal
(SIGSEGV, SIGABRT, SIGKILL...) is counted as a crash, a child still running after the time bound
is killed and counted as a hang, and any exception other than :class:`PneumoViewError` escaping
a core function is counted as unexpected, with its traceback. Nothing is hidden by an in-process
``except``.

A case is fully determined by ``(seed name, rng seed)``: :func:`make_case` rebuilds the same
bytes, so a failure can be reproduced from its JSON record alone (the campaign also saves the
file).

Seeds are real DICOM files: ``../shared/data/dicom`` (chest radiographs, found through
``tests/support/shared_data.py``, so ``PNEUMOVIEW_TEST_DATA`` reaches the servers too),
pydicom's and pydicom-data's test files (read with ``download=False``; many transfer syntaxes,
multi-frame, colour, SR/RT objects with no pixels) and small files built here from real chest
pixels in several encodings. When none of those exist (a bare machine) the built files fall back
to synthetic pixels, so the fuzzer always has a corpus.
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.shared_data import shared_path

REPO = Path(__file__).resolve().parents[2]

#: pydicom / pydicom-data test files used as seeds: (name, why).
PYDICOM_SEEDS = (
    ("CT_small.dcm", "explicit LE, signed 16-bit with rescale"),
    ("MR_small_bigendian.dcm", "explicit big endian"),
    ("MR_small_implicit.dcm", "implicit VR"),
    ("MR_small_RLE.dcm", "RLE lossless"),
    ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS lossless"),
    ("MR_small_jp2klossless.dcm", "JPEG 2000 lossless"),
    ("JPEG2000.dcm", "JPEG 2000"),
    ("JPGExtended.dcm", "JPEG extended 12-bit"),
    ("SC_rgb_jpeg_dcmtk.dcm", "JPEG baseline YBR colour"),
    ("SC_rgb_rle_2frame.dcm", "RLE colour, 2 frames"),
    ("SC_ybr_full_422_uncompressed.dcm", "YBR_FULL_422"),
    ("SC_rgb_small_odd.dcm", "odd-sized RGB"),
    ("rtplan.dcm", "no pixel data, sequences"),
    ("test-SR.dcm", "structured report, nested sequences"),
    ("no_meta.dcm", "no preamble, no file meta"),
    ("image_dfl.dcm", "deflated explicit LE"),
    ("nested_priv_SQ.dcm", "private nested sequences"),
    ("liver_1frame.dcm", "enhanced multi-frame, 1 frame"),
    ("emri_small_RLE.dcm", "multi-frame RLE"),
    ("JPEG-LL.dcm", "JPEG lossless process 14"),
    ("OBXXXX1A_rle.dcm", "RLE"),
    ("693_J2KR.dcm", "JPEG 2000 lossless"),
    ("vlut_04.dcm", "VOI LUT sequence"),
    ("mlut_18.dcm", "Modality LUT sequence"),
    ("OT-PAL-8-face.dcm", "palette colour"),
    ("US1_J2KR.dcm", "colour JPEG 2000"),
    ("DICOMDIR", "a DICOMDIR (run through index_folder: its paths must stay in its folder)"),
)

#: Real chest radiographs in ../shared/data/dicom.
SHARED_SEEDS = ("nhsx_nih_cxr.dcm", "txv_siim_cxr.dcm", "pydicomdata_RG1_UNCI.dcm",
                "pydicomdata_RG1_J2KR.dcm")


@dataclass(frozen=True)
class Seed:
    name: str
    data: bytes
    origin: str
    weight: float = 1.0


# --------------------------------------------------------------------------------------------
# Seed corpus


def _pydicom_file(name: str) -> str | None:
    try:
        from pydicom.data import get_testdata_file

        return get_testdata_file(name, download=False)
    except Exception:
        return None


def _chest_pixels() -> tuple[Any, str]:
    """A real chest radiograph as uint8 (H, W), or a synthetic one when none is available.

    pydicom-data's chest first: it is installed wherever PneumoView is, so the built seeds,
    and with them every (seed, rng) case, are the same bytes on CI and on a fresh machine.
    """
    import numpy as np

    for find in (lambda: _pydicom_file("RG1_UNCI.dcm"),
                 lambda: shared_path("dicom", "nhsx_nih_cxr.dcm")):
        path = find()
        if path and os.path.exists(path):
            try:
                import pydicom

                arr = pydicom.dcmread(path).pixel_array.astype(np.float32)
                arr = (arr - arr.min()) / max(1.0, float(arr.max() - arr.min())) * 255
                return arr.astype(np.uint8), str(path)
            except Exception:
                pass
    y, x = np.mgrid[0:512, 0:512]
    arr = (128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0)).astype(np.uint8)
    return arr, "synthetic"


def _fixed_uids(ds: Any, name: str) -> None:
    """Deterministic UIDs (the factory draws random ones): the same (seed, rng) must give the
    same bytes in every process, or a case could not be rebuilt from its record."""
    from pydicom.uid import generate_uid

    for i, key in enumerate(("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")):
        uid = generate_uid(entropy_srcs=[name, key, str(i)])
        setattr(ds, key, uid)
        if key == "SOPInstanceUID" and hasattr(ds, "file_meta"):
            ds.file_meta.MediaStorageSOPInstanceUID = uid


def built_seeds() -> list[Seed]:
    """Small files built in-process from real chest pixels, one per encoding and oddity."""
    import numpy as np
    from pydicom.uid import (
        ImplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGLSLossless,
        RLELossless,
    )

    from tests.support import dicom_factory as fac

    chest, origin = _chest_pixels()
    small8 = np.ascontiguousarray(chest[::8, ::8][:96, :96])  # ~96x96 real pixels
    small16 = small8.astype(np.uint16) * 16
    out: list[tuple[str, Any]] = []
    out.append(("built_dx_8bit.dcm", fac.make_dataset(small8, BodyPartExamined="CHEST",
                                                      ViewPosition="PA")))
    out.append(("built_cr_12bit_rescale.dcm", fac.rescaled_12bit_twin(small8)))
    out.append(("built_mono1.dcm", fac.monochrome1_twin(fac.make_dataset(small8))))
    signed = (small16.astype(np.int32) - 2048).astype(np.int16)
    out.append(("built_signed_rescale.dcm", fac.make_dataset(
        signed, bits_stored=13, signed=True, RescaleSlope=0.5, RescaleIntercept=100,
        WindowCenter=100, WindowWidth=2000)))
    out.append(("built_multiframe.dcm", fac.make_dataset(np.stack([small8] * 3))))
    rgb = np.stack([small8] * 3, axis=-1)
    out.append(("built_rgb_grey.dcm", fac.make_dataset(
        rgb, SOPClassUID="1.2.840.10008.5.1.4.1.1.7")))
    for syntax, label in ((RLELossless, "rle"), (JPEGLSLossless, "jpegls"),
                          (JPEG2000Lossless, "j2k")):
        try:
            out.append((f"built_{label}.dcm", fac.reencode(fac.make_dataset(small16,
                                                                           bits_stored=12),
                                                          syntax)))
        except Exception:
            pass
    seeds = []
    for name, ds in out:
        _fixed_uids(ds, name)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        seeds.append(Seed(name, buf.getvalue(), f"built from {origin}", 3.0))
    # implicit VR and big-endian twins of the 8-bit file
    base = out[0][1]
    for syntax, label in ((ImplicitVRLittleEndian, "implicit"),):
        try:
            import pydicom

            ds = pydicom.dcmread(io.BytesIO(seeds[0].data))
            ds.file_meta.TransferSyntaxUID = syntax
            buf = io.BytesIO()
            ds.save_as(buf, implicit_vr=True, little_endian=True, enforce_file_format=True)
            seeds.append(Seed(f"built_{label}.dcm", buf.getvalue(), f"built from {origin}",
                              2.0))
        except Exception as exc:
            print(f"seed {label} not built: {exc}", file=sys.stderr)
    del base
    # no preamble: the same dataset written without the 128-byte preamble + DICM
    seeds.append(Seed("built_no_preamble.dcm", seeds[0].data[132:], "built", 1.0))
    return seeds


def seed_corpus(include_large: bool = True) -> list[Seed]:
    """Every seed available here: real shared files, pydicom(-data) files and built ones."""
    seeds: list[Seed] = []
    if include_large:
        for name in SHARED_SEEDS:
            p = shared_path("dicom", name)
            if p is not None and p.is_file():
                seeds.append(Seed(f"shared_{name}", p.read_bytes(), str(p),
                                  0.5 if p.stat().st_size > 2_000_000 else 1.0))
    for name, _why in PYDICOM_SEEDS:
        p = _pydicom_file(name)
        if p and os.path.isfile(p):
            size = os.path.getsize(p)
            if size > 2_000_000 and not include_large:
                continue
            seeds.append(Seed(f"pydicom_{name}", Path(p).read_bytes(), p,
                              0.5 if size > 500_000 else 1.0))
    seeds.extend(built_seeds())
    return seeds


# --------------------------------------------------------------------------------------------
# Element map: where each top-level element's tag, VR, length and value lie in the bytes

LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


@dataclass
class Element:
    tag: int
    vr: str | None
    start: int  # first byte of the tag
    length_at: int  # offset of the length field
    length_size: int  # 2 or 4
    value_at: int
    length: int  # as declared (0xFFFFFFFF = undefined)
    end: int  # one past the last byte of the element (delimiters included)
    meta: bool


@dataclass
class Layout:
    preamble: bool
    meta_end: int  # offset where the dataset starts
    implicit: bool
    little: bool
    elements: list[Element] = field(default_factory=list)

    def find(self, tag: int) -> Element | None:
        for e in self.elements:
            if e.tag == tag:
                return e
        return None

    @property
    def pixel(self) -> Element | None:
        return self.find(0x7FE00010)


def layout(data: bytes) -> Layout | None:
    """Parse the file meta by hand and the top-level dataset with pydicom's element generator;
    ``None`` when the bytes do not parse (deflated, already broken)."""
    from pydicom.filereader import data_element_generator

    preamble = data[128:132] == b"DICM"
    pos = 132 if preamble else 0
    elements: list[Element] = []
    ts = None
    try:
        while pos + 8 <= len(data):
            group, elem = struct.unpack_from("<HH", data, pos)
            if group != 0x0002:
                break
            vr = data[pos + 4:pos + 6].decode("ascii")
            if vr in LONG_VRS:
                length = struct.unpack_from("<I", data, pos + 8)[0]
                length_at, size, value_at = pos + 8, 4, pos + 12
            else:
                length = struct.unpack_from("<H", data, pos + 6)[0]
                length_at, size, value_at = pos + 6, 2, pos + 8
            end = value_at + length
            if end > len(data):
                return None
            tag = (group << 16) | elem
            if tag == 0x00020010:
                ts = data[value_at:end].rstrip(b"\0 ").decode("ascii", "replace")
            elements.append(Element(tag, vr, pos, length_at, size, value_at, length, end, True))
            pos = end
    except (struct.error, UnicodeDecodeError):
        return None
    meta_end = pos
    if ts is None and not elements:
        ts = "1.2.840.10008.1.2"  # no meta: guess implicit LE like pydicom does
        # raw explicit files without meta: sniff a VR
        if len(data) > 8 and data[4:6].isalpha() and data[4:6].isupper():
            ts = "1.2.840.10008.1.2.1"
    if ts == "1.2.840.10008.1.2.1.99":  # deflated: no element map
        return Layout(preamble, meta_end, False, True, elements)
    implicit = ts == "1.2.840.10008.1.2"
    little = ts != "1.2.840.10008.1.2.2"
    fp = io.BytesIO(data)
    fp.seek(meta_end)
    try:
        gen = data_element_generator(fp, implicit, little, defer_size=64)
        prev: Element | None = None
        for raw in gen:
            # undefined-length sequences come back parsed (DataElement, value offset in
            # file_tell); everything else raw (RawDataElement.value_tell)
            value_at = getattr(raw, "value_tell", None)
            if value_at is None:
                value_at = raw.file_tell
            length = getattr(raw, "length", 0xFFFFFFFF)
            if implicit:
                start, length_at, size = value_at - 8, value_at - 4, 4
            elif raw.VR in LONG_VRS or length == 0xFFFFFFFF:
                start, length_at, size = value_at - 12, value_at - 4, 4
            else:
                start, length_at, size = value_at - 8, value_at - 2, 2
            if prev is not None:
                prev.end = start
            el = Element(int(raw.tag), None if implicit else raw.VR, start, length_at, size,
                         value_at, length, fp.tell(), False)
            elements.append(el)
            prev = el
        if prev is not None:
            prev.end = fp.tell()
    except Exception:
        return None
    return Layout(preamble, meta_end, implicit, little, elements)


# --------------------------------------------------------------------------------------------
# Mutators: each takes (data, rng, layout or None) and returns (new data, description)

Mutator = Callable[[bytes, random.Random, "Layout | None"], "tuple[bytes, str]"]

INTERESTING_32 = (0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                  0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
INTERESTING_16 = (0, 1, 2, 3, 7, 8, 9, 12, 15, 16, 17, 32, 64, 255, 256, 0x7FFF, 0x8000,
                  0xFFFE, 0xFFFF)


def _pack(value: int, size: int, little: bool) -> bytes:
    return struct.pack(("<" if little else ">") + ("H" if size == 2 else "I"),
                       value & (0xFFFF if size == 2 else 0xFFFFFFFF))


def _splice_value(data: bytes, lay: Layout, el: Element, value: bytes) -> bytes:
    """Replace an element's value (defined length) and fix its length field."""
    if len(value) % 2:
        value += b" " if value[-1:].isalnum() or value[-1:] == b"." else b"\0"
    if el.length == 0xFFFFFFFF:
        return data
    if el.length_size == 2 and len(value) > 0xFFFF:
        value = value[:0xFFFE]
    little = True if el.meta else lay.little
    head = data[:el.length_at] + _pack(len(value), el.length_size, little)
    return head + data[el.length_at + el.length_size:el.value_at] + value + \
        data[el.value_at + el.length:]


def _header_end(lay: Layout | None, data: bytes) -> int:
    if lay is not None and lay.pixel is not None:
        return lay.pixel.value_at
    return min(len(data), 4096)


def m_bit_flips(data: bytes, rng: random.Random, lay: Layout | None) -> tuple[bytes, str]:
    buf = bytearray(data)
    n = rng.choice((1, 1, 2, 4, 8, 32))
    if not buf:
        return data + b"\0", "bit_flips(empty: one byte added)"
    limit = _header_end(lay, data) if rng.random() < 0.75 else len(buf)
    limit = max(1, min(limit, len(buf)))
    for _ in range(n):
        i = rng.randrange(limit)
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf), f"bit_flips({n} in first {limit} bytes)"


def m_byte_values(data: bytes, rng: random.Random, lay: Layout | None) -> tuple[bytes, str]:
    buf = bytearray(data)
    if not buf:
        return data + b"\xff", "byte_values(empty: one byte added)"
    n = rng.choice((1, 2, 4, 16))
    limit = max(1, min(len(buf), _header_end(lay, data)))
    for _ in range(n):
        buf[rng.randrange(limit)] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x20, 0x5C))
    return bytes(buf), f"byte_values({n})"


def regions(data: bytes, lay: Layout | None) -> dict[str, tuple[int, int]]:
    """Byte ranges of the file's regions, for truncation at every one of them."""
    out: dict[str, tuple[int, int]] = {}
    if lay is None:
        return {"anywhere": (0, len(data))}
    if lay.preamble:
        out["preamble"] = (0, 128)
        out["magic"] = (128, 132)
    if lay.meta_end > (132 if lay.preamble else 0):
        out["meta"] = (132 if lay.preamble else 0, lay.meta_end)
    px = lay.pixel
    if px is not None:
        out["header"] = (lay.meta_end, px.start)
        out["pixel_element_header"] = (px.start, px.value_at)
        out["pixel_data"] = (px.value_at, len(data))
    else:
        out["header"] = (lay.meta_end, len(data))
    return {k: v for k, v in out.items() if v[1] > v[0]}


def m_truncate(data: bytes, rng: random.Random, lay: Layout | None) -> tuple[bytes, str]:
    regs = regions(data, lay)
    if not regs or len(data) < 2:
        return data[:0], "truncate(to empty)"
    name = rng.choice(sorted(regs))
    lo, hi = regs[name]
    how = rng.random()
    if how < 0.2:
        cut = lo
    elif how < 0.3:
        cut = min(len(data) - 1, lo + 1)
    elif how < 0.4 and lay is not None:
        # exactly at an element boundary inside the region
        starts = [e.start for e in lay.elements if lo <= e.start < hi] or [lo]
        cut = rng.choice(starts)
    else:
        cut = rng.randrange(lo, hi)
    return data[:cut], f"truncate({name} at {cut} of {len(data)})"


def m_length(data: bytes, rng: random.Random, lay: Layout | None) -> tuple[bytes, str]:
    if lay is None or not lay.elements:
        return m_bit_flips(data, rng, lay)
    el = rng.choice(lay.elements)
    if rng.random() < 0.3 and lay.pixel is not None:
        el = lay.pixel
    size = el.length_size
    choices = [v for v in INTERESTING_32 if size == 4 or v <= 0xFFFF] + \
        [max(0, el.length - 1), el.length + 1, el.length * 2, el.length + 2,
         len(data) - el.value_at, len(data) - el.value_at + 2]
    value = rng.choice(choices)
    little = True if el.meta else lay.little
    new = data[:el.length_at] + _pack(value, size, little) + data[el.length_at + size:]
    return new, f"length({el.tag:08X}: {el.length} -> {value})"


#: (tag, VR, candidate values) for value edits: sizes, bit depths, photometric, rescale...
VALUE_EDITS: tuple[tuple[int, str, tuple[Any, ...]], ...] = (
    (0x00280010, "US", (0, 1, 2, 3, 0x7FFF, 0xFFFF, 4097, 65535)),  # Rows
    (0x00280011, "US", (0, 1, 2, 3, 0x7FFF, 0xFFFF, 4097, 65535)),  # Columns
    (0x00280008, "IS", ("0", "-1", "2", "1000", "99999999", "2147483648", "abc", "1.5", "")),
    (0x00280100, "US", (0, 1, 7, 8, 12, 16, 24, 32, 64, 255, 0xFFFF)),  # BitsAllocated
    (0x00280101, "US", (0, 1, 10, 13, 15, 16, 17, 33, 0xFFFF)),  # BitsStored
    (0x00280102, "US", (0, 7, 9, 12, 15, 31, 0xFFFF)),  # HighBit
    (0x00280002, "US", (0, 2, 3, 4, 255)),  # SamplesPerPixel
    (0x00280103, "US", (0, 1, 2, 0xFFFF)),  # PixelRepresentation
    (0x00280006, "US", (0, 1, 2)),  # PlanarConfiguration
    (0x00280004, "CS", ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422",
                        "PALETTE COLOR", "YBR_RCT", "YBR_ICT", "HSV", "", "X" * 16)),
    (0x00281053, "DS", ("0", "-1", "nan", "inf", "-inf", "1e308", "1e-308", "abc", "")),
    (0x00281052, "DS", ("0", "-1e308", "nan", "inf", "1e38", "abc", "")),
    (0x00281050, "DS", ("0", "-1", "nan", "inf", "1e308", "abc", "1\\2\\3", "")),
    (0x00281051, "DS", ("0", "-1", "nan", "inf", "1e-308", "abc", "1\\2", "")),
    (0x00281056, "CS", ("SIGMOID", "LINEAR_EXACT", "NONSENSE", "")),
    (0x00200052, "UI", ("", "1.2.3", "x" * 64)),
    (0x00080060, "CS", ("CT", "MR", "CR", "DX", "", "\0\0")),
    (0x00185101, "CS", ("LAT", "LL", "PA", "")),
    (0x00180015, "CS", ("CHEST", "HAND", "", "chest")),
    (0x00100010, "PN", ("", "^^^^", "=" * 64, "\\" * 10)),
    (0x00082112, "UI", ("",)),
    (0x00020010, "UI", (
        "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.201", "1.2.3.4.5.6.7.8.9",
        "1.2.840.113619.5.2", "", "garbage", "1.2.840.10008.1.2.4.50\\1.2.3")),
)


def _encode(vr: str, value: Any, little: bool) -> bytes:
    if vr == "US":
        return struct.pack("<H" if little else ">H", int(value) & 0xFFFF)
    text = str(value).encode("latin-1")
    return text


def _insert_element(data: bytes, lay: Layout, tag: int, vr: str, value: bytes) -> bytes:
    """Insert a new top-level element before the first one with a larger tag."""
    if len(value) % 2:
        value += b" " if vr not in ("UI", "OB") else b"\0"
    meta = (tag >> 16) == 0x0002
    little = True if meta else lay.little
    e = "<" if little else ">"
    if meta or not lay.implicit:
        head = struct.pack(e + "HH", tag >> 16, tag & 0xFFFF) + vr.encode()
        if vr in LONG_VRS:
            head += b"\0\0" + struct.pack(e + "I", len(value))
        else:
            head += struct.pack(e + "H", len(value))
    else:
        head = struct.pack(e + "HHI", tag >> 16, tag & 0xFFFF, len(value))
    pos = lay.meta_end if not meta else (132 if lay.preamble else 0)
    for el in lay.elements:
        if el.meta == meta and el.tag > tag:
            pos = el.start
            break
        if el.meta == meta:
            pos = el.end
    return data[:pos] + head + value + data[pos:]


def m_value(data: bytes, rng: random.Random, lay: Layout | None) -> tuple[bytes, str]:
    """Set an interesting value on a size/depth/photometric/rescale/syntax element."""
    if lay is None:
        return m_byte_values(data, rng, lay)
    tag, vr, values = rng.choice(VALUE_EDITS)
    if rng.random() < 0.35:
        tag, vr, values = rng.choice([v for v in VALUE_EDITS if v[0] in (
            0x00280010, 0x00280011, 0x00280008, 0x00020010)])  # sizes and syntax more often
    value = rng.choice(values)
    el = lay.find(tag)
    little = True if (tag >> 16) == 2 else lay.little
    raw = _encode(vr, value, little)
    if el is None:
        if (tag >> 16) == 2 and not lay.elements:
            return data, f"value({tag:08X}) skipped: no meta"
        return _insert_element(data, lay, tag, vr, raw), f"insert({tag:08X}={value!r})"
    return _splice_value(data, lay, el, raw), f"value({tag:08X}={value!r})"


def m_pixel(data: bytes, rng: random.Random, lay: Layout | None) -> tuple[bytes, str]:
    """Missing, empty, odd-length, short, long or re-typed pixel data."""
    if lay is None or lay.pixel is None:
        return m_truncate(data, rng, lay)
    px = lay.pixel
    kind = rng.choice(("remove", "empty", "odd", "half", "one_byte", "junk_after", "vr",
                       "fragments"))
    if kind == "remove":
        return data[:px.start] + data[px.end:], "pixel(remove)"
    if px.length == 0xFFFFFFFF and kind in ("empty", "odd", "half", "one_byte"):
        kind = "fragments"
    if kind == "empty":
        return _splice_value(data, lay, px, b""), "pixel(empty)"
    if kind == "odd":
        # an odd length, declared as such (no padding)
        n = max(1, px.length - 1) | 1
        little = lay.little
        head = data[:px.length_at] + _pack(n, px.length_size, little)
        return head + data[px.length_at + px.length_size:px.value_at + n] + \
            data[px.value_at + px.length:], "pixel(odd length)"
    if kind == "half":
        return _splice_value(data, lay, px, data[px.value_at:px.value_at + px.length // 2]), \
            "pixel(half)"
    if kind == "one_byte":
        return _splice_value(data, lay, px, b"\x01\x00"), "pixel(2 bytes)"
    if kind == "junk_after":
        return data + bytes(rng.randrange(256) for _ in range(rng.choice((1, 7, 64)))), \
            "pixel(junk after)"
    if kind == "vr" and px.vr is not None:
        new_vr = rng.choice((b"OB", b"OW", b"UN", b"US", b"SQ", b"XX"))
        return data[:px.start + 4] + new_vr + data[px.start + 6:], f"pixel(VR {new_vr!r})"
    # fragments: corrupt an item tag/length inside encapsulated data
    buf = bytearray(data)
    i = data.find(b"\xfe\xff\x00\xe0", px.value_at)
    hits = []
    while i != -1 and len(hits) < 64:
        hits.append(i)
        i = data.find(b"\xfe\xff\x00\xe0", i + 4)
    if not hits:
        return m_bit_flips(data, rng, lay)
    at = rng.choice(hits)
    struct.pack_into("<I", buf, at + 4, rng.choice(INTERESTING_32))
    return bytes(buf), f"pixel(fragment item length at {at})"


def m_vr(data: bytes, rng: random.Random, lay: Layout | None) -> tuple[bytes, str]:
    """Replace an element's VR with a wrong one (explicit VR files)."""
    if lay is None or lay.implicit or not any(e.vr for e in lay.elements):
        return m_length(data, rng, lay)
    el = rng.choice([e for e in lay.elements if e.vr])
    new = rng.choice((b"SQ", b"OB", b"UN", b"US", b"UL", b"FD", b"DS", b"IS", b"UI", b"PN",
                      b"AT", b"XX", b"\0\0", b"ox"))
    return data[:el.start + 4] + new + data[el.start + 6:], \
        f"vr({el.tag:08X} {el.vr} -> {new!r})"


def _nested(depth: int, implicit: bool, little: bool, close: bool) -> bytes:
    e = "<" if little else ">"
    tag = struct.pack(e + "HH", 0x0008, 0x1140)
    seq_head = tag + (struct.pack(e + "I", 0xFFFFFFFF) if implicit
                      else b"SQ\0\0" + struct.pack(e + "I", 0xFFFFFFFF))
    item = struct.pack(e + "HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack(e + "HHI", 0xFFFE, 0xE00D, 0)
    seq_end = struct.pack(e + "HHI", 0xFFFE, 0xE0DD, 0)
    out = (seq_head + item) * depth
    if close:
        out += (item_end + seq_end) * depth
    return out


def m_deep_sequence(data: bytes, rng: random.Random, lay: Layout | None) -> tuple[bytes, str]:
    """Insert nested undefined-length sequences, closed or not, at the right tag position."""
    if lay is None:
        return m_bit_flips(data, rng, lay)
    depth = rng.choice((10, 100, 500, 2000, 10000))
    close = rng.random() < 0.7
    blob = _nested(depth, lay.implicit, lay.little, close)
    pos = lay.meta_end
    for el in lay.elements:
        if not el.meta and el.tag > 0x00081140:
            pos = el.start
            break
        if not el.meta:
            pos = el.end
    return data[:pos] + blob + data[pos:], f"deep_sequence(depth {depth}, closed {close})"


def m_shuffle(data: bytes, rng: random.Random, lay: Layout | None) -> tuple[bytes, str]:
    """Duplicate, drop or swap whole elements (out of order, repeated tags)."""
    if lay is None:
        return m_bit_flips(data, rng, lay)
    top = [e for e in lay.elements if not e.meta]
    if len(top) < 2:
        return m_bit_flips(data, rng, lay)
    a = rng.choice(top)
    kind = rng.choice(("dup", "drop", "swap"))
    if kind == "dup":
        return data[:a.end] + data[a.start:a.end] + data[a.end:], f"dup({a.tag:08X})"
    if kind == "drop":
        return data[:a.start] + data[a.end:], f"drop({a.tag:08X})"
    i = top.index(a)
    b = top[i + 1] if i + 1 < len(top) else top[i - 1]
    first, second = (a, b) if a.start < b.start else (b, a)
    return (data[:first.start] + data[second.start:second.end] + data[first.end:second.start]
            + data[first.start:first.end] + data[second.end:]), \
        f"swap({first.tag:08X},{second.tag:08X})"


def m_insert_junk(data: bytes, rng: random.Random, lay: Layout | None) -> tuple[bytes, str]:
    limit = max(1, min(len(data), _header_end(lay, data)))
    at = rng.randrange(limit)
    junk = bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 3, 4, 8, 100))))
    return data[:at] + junk + data[at:], f"insert_junk({len(junk)} at {at})"


MUTATORS: dict[str, tuple[Mutator, float]] = {
    "bit_flips": (m_bit_flips, 3.0),
    "byte_values": (m_byte_values, 1.0),
    "truncate": (m_truncate, 2.0),
    "length": (m_length, 2.5),
    "value": (m_value, 4.0),
    "pixel": (m_pixel, 2.0),
    "vr": (m_vr, 1.5),
    "deep_sequence": (m_deep_sequence, 0.7),
    "shuffle": (m_shuffle, 1.0),
    "insert_junk": (m_insert_junk, 1.0),
}


def mutate(data: bytes, rng: random.Random, rounds: int | None = None) -> tuple[bytes, list[str]]:
    """Apply 1-3 weighted mutators in sequence (the layout is re-parsed between rounds)."""
    names = list(MUTATORS)
    weights = [MUTATORS[n][1] for n in names]
    n = rounds if rounds is not None else rng.choice((1, 1, 1, 2, 2, 3))
    log = []
    for _ in range(n):
        name = rng.choices(names, weights)[0]
        lay = layout(data)
        data, what = MUTATORS[name][0](data, rng, lay)
        log.append(what)
    return data, log


def pick_seed(seeds: list[Seed], rng: random.Random) -> Seed:
    return rng.choices(seeds, [s.weight for s in seeds])[0]


def make_case(seeds_by_name: dict[str, Seed], seed_name: str, rng_seed: int) \
        -> tuple[bytes, list[str]]:
    """The mutated bytes of one case, rebuilt exactly from its (seed name, rng seed)."""
    rng = random.Random(rng_seed)
    return mutate(seeds_by_name[seed_name].data, rng)


# --------------------------------------------------------------------------------------------
# Targets (run in the forked child)

ALL_TARGETS = ("index", "index_folder", "header", "gate", "decode", "display", "contract",
               "inference", "batch_task", "info")


class _Ctx:
    engine: Any = None
    targets: tuple[str, ...] = ALL_TARGETS


def _outcome(fn: Callable[[], Any], allowed: tuple[type[BaseException], ...] = ()) \
        -> tuple[dict[str, Any], Any]:
    from pneumoview.core.errors import PneumoViewError

    t0 = time.perf_counter()
    try:
        value = fn()
        res = {"outcome": "ok"}
    except PneumoViewError as exc:
        value = None
        res = {"outcome": "error", "message": str(exc.reason)[:200]}
        if not exc.path:
            res["no_path"] = True
    except allowed as exc:
        value = None
        res = {"outcome": "documented", "type": type(exc).__name__, "message": str(exc)[:200]}
    except RecursionError as exc:
        value = None
        res = {"outcome": "unexpected", "type": "RecursionError", "message": str(exc)[:200],
               "traceback": traceback.format_exc(limit=-8)[-3000:]}
    except BaseException as exc:
        value = None
        res = {"outcome": "unexpected", "type": type(exc).__name__, "message": str(exc)[:300],
               "traceback": traceback.format_exc()[-4000:]}
    res["ms"] = round((time.perf_counter() - t0) * 1000, 2)
    return res, value


def run_targets(path: str, targets: tuple[str, ...], engine: Any = None) -> dict[str, Any]:
    """Drive every core entry point on one file; returns {target: outcome}.

    ``engine`` (a loaded :class:`~pneumoview.core.inference.Engine`) enables the inference
    target; without it the target is left out.
    """
    import numpy as np

    from pneumoview.core import contract, dicomio, gate, windowing

    out: dict[str, Any] = {}
    if "index" in targets:
        try:
            from pneumoview.core import indexer
        except ImportError:
            indexer = None
        if indexer is not None:
            out["index"], _ = _outcome(lambda: indexer.read_instance(path))
    if "index_folder" in targets and os.path.basename(path) == "DICOMDIR":
        from pneumoview.core import indexer

        def index_dir() -> Any:
            folder = os.path.dirname(os.path.abspath(path))
            res = indexer.index_folder(folder, cache=False)
            listed = [i.path for i in res.instances] + list(res.non_dicom) + \
                [p for p, _ in res.errors]
            outside = [p for p in listed
                       if os.path.commonpath([os.path.abspath(p), folder]) != folder]
            if outside:
                raise AssertionError(f"DICOMDIR led outside its folder: {outside[:3]}")
            return res
        out["index_folder"], _ = _outcome(index_dir)
    header = None
    if "header" in targets or "gate" in targets:
        out["header"], header = _outcome(lambda: dicomio.read_header(path))
    if "gate" in targets and header is not None:
        out["gate"], _ = _outcome(lambda: gate.not_scorable_reason(
            header, dicomio.number_of_frames(header)))
    decoded = None
    if "decode" in targets:
        out["decode"], decoded = _outcome(lambda: dicomio.decode(path))
        if decoded is not None:
            problems = []
            v = decoded.values
            if v.dtype != np.float32 or v.ndim not in (2, 3) or v.size == 0 \
                    or (v.ndim == 3 and v.shape[2] not in (3, 4)):
                problems.append(f"values {v.dtype} {v.shape}")
            if decoded.n_frames > 1:
                last, _ = _outcome(lambda: dicomio.decode(path, frame=decoded.n_frames - 1))
                out["decode_last_frame"] = last
            if problems:
                out["decode"] = {"outcome": "wrong", "message": "; ".join(problems)}
    if decoded is not None and "display" in targets:
        def display() -> Any:
            if decoded.is_colour:
                return None
            w = windowing.default_window(decoded.values, decoded.windows)
            img = windowing.apply_window(decoded.values, w, decoded.invert)
            windowing.presets(decoded.values, decoded.windows, decoded.modality)
            if img.shape != decoded.values.shape or img.dtype != np.uint8:
                raise AssertionError(f"display image {img.dtype} {img.shape}")
            return img
        out["display"], _ = _outcome(display)
    if decoded is not None and "contract" in targets:
        def model_in() -> Any:
            x = contract.model_input(decoded.values, decoded.invert)
            if x.shape != (224, 224) or not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
                raise AssertionError(f"contract output out of range {x.shape}")
            return x
        # model_input documents ValueError for images it cannot take (non-finite values);
        # the engine and the batch turn it into PneumoViewError / an error row.
        out["contract"], _ = _outcome(model_in, allowed=(ValueError,))
    if decoded is not None and "inference" in targets and engine is not None:
        def infer() -> Any:
            pred = engine.score(decoded)
            if pred.status == "scored" and not 0.0 <= pred.probability <= 1.0:
                raise AssertionError(f"probability {pred.probability}")
            return pred
        out["inference"], _ = _outcome(infer)
    if "batch_task" in targets:
        from pneumoview.core import batch

        def task() -> Any:
            res = batch.decode_task({"path": path, "file_size": os.path.getsize(path)})
            if res.get("status") not in ("scored", "not_scored", "skipped", "error"):
                raise AssertionError(f"batch status {res.get('status')!r}")
            return res
        out["batch_task"], _ = _outcome(task)
    if "info" in targets:
        from pneumoview.commands import info

        out["info"], _ = _outcome(lambda: info.describe(path))
    return out


# --------------------------------------------------------------------------------------------
# The server: one process, a fork per case


def _vm_size() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _rss(key: str = "VmRSS:") -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_child(path: str, targets: tuple[str, ...], engine: Any, timeout_s: float,
              mem_extra: int) -> dict[str, Any]:
    """Fork, run the targets in the child under limits, and classify how the child ended."""
    import resource
    import select
    import signal

    base_vm, base_rss = _vm_size(), _rss()
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            rss_start = _rss()
            os.close(r)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if mem_extra:
                limit = base_vm + mem_extra
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            result = run_targets(path, targets, engine)
            # memory this case added: the child's high-water mark over its RSS at fork
            result["_growth_mb"] = round((_rss("VmHWM:") - rss_start) / 2**20, 1)
            payload = json.dumps(result).encode()
            view = memoryview(payload)
            while view:
                n = os.write(w, view)
                view = view[n:]
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    deadline = t0 + timeout_s
    hung = False
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            hung = True
            break
        ready, _, _ = select.select([r], [], [], left)
        if ready:
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    if hung:
        os.kill(pid, signal.SIGKILL)
    os.close(r)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    rec: dict[str, Any] = {
        "wall_s": round(wall, 4), "cpu_s": round(usage.ru_utime + usage.ru_stime, 4),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "base_rss_mb": round(base_rss / 2**20, 1),
    }
    if hung:
        rec["end"] = "hang"
    elif os.WIFSIGNALED(status):
        rec["end"] = "signal"
        rec["signal"] = signal.Signals(os.WTERMSIG(status)).name
    elif os.WEXITSTATUS(status) != 0:
        rec["end"] = f"exit {os.WEXITSTATUS(status)}"
    else:
        rec["end"] = "ok"
    try:
        rec["targets"] = json.loads(b"".join(chunks)) if chunks else {}
        rec["growth_mb"] = rec["targets"].pop("_growth_mb", None)
    except ValueError:
        rec["targets"] = {}
        if rec["end"] == "ok":
            rec["end"] = "garbled"
    return rec


def classify(rec: dict[str, Any]) -> list[str]:
    """The failures in a case record: [] when every target ended in a result or our error."""
    bad = []
    if rec["end"] != "ok":
        bad.append(rec["end"] if rec["end"] != "signal" else f"signal {rec['signal']}")
    for name, res in rec.get("targets", {}).items():
        if res.get("outcome") in ("unexpected", "wrong"):
            bad.append(f"{name}: {res.get('type', 'wrong result')}: {res.get('message', '')}"[:200])
    return bad


def _make_engine(model_dir: str | None) -> Any:
    if not model_dir:
        return None
    import torch

    torch.set_num_threads(1)
    from pneumoview.core.inference import Engine

    engine = Engine(model_dir, device="cpu", with_cam=False)
    engine.load()
    engine.warm_up()
    return engine


def serve(argv: list[str]) -> int:
    """``fuzzing.py serve [--model DIR] [--timeout S] [--mem-mb N] [--targets a,b] [--small]
    [--save DIR]``: read JSON lines {"id", "seed", "rng"} on stdin, write one JSON line each."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m tests.support.fuzzing serve")
    p.add_argument("--model")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--mem-mb", type=int, default=3072)
    p.add_argument("--targets", default=",".join(ALL_TARGETS))
    p.add_argument("--small", action="store_true", help="no seeds over 2 MB")
    p.add_argument("--save", help="folder for reproducers of failing cases")
    p.add_argument("--workdir", default=None)
    p.add_argument("--infer-every", type=int, default=1,
                   help="run the (slow) inference target on one case in N (by rng seed)")
    args = p.parse_args(argv)
    # one torch thread: an OpenMP pool started before fork() deadlocks the forked children
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["PNEUMOVIEW_TORCH_THREADS"] = "1"
    import logging
    import tempfile
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    # import everything the targets use before forking, so each child starts warm
    import numpy  # noqa: F401
    import pydicom  # noqa: F401
    from pydicom.pixels import pixel_array  # noqa: F401

    from pneumoview.commands import info  # noqa: F401
    from pneumoview.core import batch, contract, dicomio, gate, windowing  # noqa: F401
    try:
        from pneumoview.core import indexer  # noqa: F401
    except ImportError:
        pass
    targets = tuple(t for t in args.targets.split(",") if t)
    engine = _make_engine(args.model) if "inference" in targets else None
    seeds = {s.name: s for s in seed_corpus(include_large=not args.small)}
    work = Path(args.workdir or tempfile.mkdtemp(prefix="pv-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    # warm up in this process (lazy imports, numpy/PIL first-call costs) so children start hot
    for name in ("built_dx_8bit.dcm", "built_rgb_grey.dcm", "built_j2k.dcm", "built_rle.dcm",
                 "built_jpegls.dcm"):
        if name in seeds:
            warm = work / f"warm-{os.getpid()}.dcm"
            warm.write_bytes(seeds[name].data)
            run_targets(str(warm), targets, engine)
    out = sys.stdout
    out.write(json.dumps({"ready": True, "seeds": {n: len(s.data) for n, s in seeds.items()},
                          "engine": engine is not None}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req.get("cmd") == "write":  # write a mutated file for a batch/index folder
            data, log = make_case(seeds, req["seed"], int(req["rng"]))
            Path(req["path"]).write_bytes(data)
            out.write(json.dumps({"id": req.get("id"), "written": req["path"],
                                  "mutations": log}) + "\n")
            out.flush()
            continue
        if "path" in req:  # an existing file (a reproducer, a regression case), as it is
            rec = run_child(req["path"], targets, engine if req.get("infer") else None,
                            args.timeout, args.mem_mb * 2**20)
            rec.update(id=req.get("id"), seed="", rng=0, mutations=[], path=req["path"])
            rec["failures"] = classify(rec)
            out.write(json.dumps(rec) + "\n")
            out.flush()
            continue
        data, log = make_case(seeds, req["seed"], int(req["rng"]))
        path = work / f"case-{os.getpid()}.dcm"
        if "DICOMDIR" in req["seed"]:  # alone in its folder, under its own name
            path = work / f"dicomdir-{os.getpid()}" / "DICOMDIR"
            path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        infer = engine if wants_inference(int(req["rng"]), args.infer_every) else None
        rec = run_child(str(path), targets, infer, args.timeout, args.mem_mb * 2**20)
        rec.update(id=req.get("id"), seed=req["seed"], rng=int(req["rng"]), mutations=log,
                   size=len(data))
        failures = classify(rec)
        rec["failures"] = failures
        if failures and args.save:
            save = Path(args.save)
            save.mkdir(parents=True, exist_ok=True)
            stem = f"{req['seed']}-{req['rng']}"
            (save / f"{stem}.dcm").write_bytes(data)
            (save / f"{stem}.json").write_text(json.dumps(rec, indent=1))
        out.write(json.dumps(rec) + "\n")
        out.flush()
    return 0


class Server:
    """Client side of a fork server running in its own Python process."""

    def __init__(self, *, model_dir: str | None = None, timeout_s: float = 30.0,
                 mem_mb: int = 3072, targets: tuple[str, ...] = ALL_TARGETS,
                 small: bool = False, save: str | None = None, workdir: str | None = None,
                 infer_every: int = 1, env: dict[str, str] | None = None) -> None:
        import subprocess

        cmd = [sys.executable, "-m", "tests.support.fuzzing", "serve", "--timeout",
               str(timeout_s), "--mem-mb", str(mem_mb), "--targets", ",".join(targets),
               "--infer-every", str(infer_every)]
        if model_dir:
            cmd += ["--model", str(model_dir)]
        if small:
            cmd.append("--small")
        if save:
            cmd += ["--save", str(save)]
        if workdir:
            cmd += ["--workdir", str(workdir)]
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=full_env, cwd=str(REPO))
        self._info: dict[str, Any] | None = None

    def wait(self) -> Server:
        """Wait for the server's hello (imports, model, seeds, warm-up done)."""
        if self._info is None:
            assert self.proc.stdout
            hello = self.proc.stdout.readline()
            if not hello:
                self.proc.wait()
                raise RuntimeError(f"fuzz server failed to start (exit {self.proc.returncode})")
            self._info = json.loads(hello)
        return self

    @property
    def info(self) -> dict[str, Any]:
        self.wait()
        assert self._info is not None
        return self._info

    @property
    def seed_names(self) -> list[str]:
        return sorted(self.info["seeds"])

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        self.wait()
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fuzz server died (exit {self.proc.wait()})")
        return json.loads(line)

    def case(self, seed: str, rng: int, case_id: Any = None) -> dict[str, Any]:
        return self.request({"id": case_id, "seed": seed, "rng": rng})

    def run_file(self, path: str | Path, infer: bool = False) -> dict[str, Any]:
        """Run the targets on an existing file in a forked child."""
        return self.request({"path": str(path), "infer": infer})

    def write(self, seed: str, rng: int, path: str | Path) -> dict[str, Any]:
        return self.request({"cmd": "write", "seed": seed, "rng": rng, "path": str(path)})

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wants_inference(rng: int, infer_every: int) -> bool:
    """Whether a case also runs the (slow) inference target: one case in ``infer_every``."""
    return infer_every > 0 and rng % infer_every == 0


def run_plan(cases: list[tuple[Any, str, int]], light: list[Server], heavy: Server | None,
             infer_every: int, on_record: Callable[[dict[str, Any]], None]) -> list[str]:
    """Run ``(id, seed, rng)`` cases on the servers in parallel threads.

    Cases that want inference go to ``heavy`` (a server with the model loaded); the rest to the
    ``light`` servers, which never import torch: forking a small process is about twice as
    fast. Returns the errors of servers that died (their remaining cases are not run).
    """
    import queue
    import threading

    light_q: queue.Queue[Any] = queue.Queue()
    heavy_q: queue.Queue[Any] = queue.Queue()
    for case in cases:
        to_heavy = heavy is not None and wants_inference(case[2], infer_every)
        (heavy_q if to_heavy else light_q).put(case)
    for _ in light:
        light_q.put(None)
    heavy_q.put(None)
    errors: list[str] = []

    def work(server: Server, q: Any) -> None:
        while True:
            item = q.get()
            if item is None:
                return
            case_id, seed, rng = item
            try:
                rec = server.case(seed, rng, case_id)
            except Exception as exc:
                errors.append(f"server died on case {case_id} ({seed}, {rng}): {exc}")
                return
            on_record(rec)

    threads = [threading.Thread(target=work, args=(srv, light_q), daemon=True)
               for srv in light]
    if heavy is not None:
        threads.append(threading.Thread(target=work, args=(heavy, heavy_q), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def case_plan(seed_names: list[str], weights: dict[str, float], n: int, master_seed: int) \
        -> Iterator[tuple[str, int]]:
    """A deterministic list of (seed name, rng seed) cases."""
    rng = random.Random(master_seed)
    names = sorted(seed_names)
    w = [weights.get(name, 1.0) for name in names]
    for _ in range(n):
        yield rng.choices(names, w)[0], rng.randrange(2**31)


def seed_weights(seed_sizes: dict[str, int]) -> dict[str, float]:
    """Big seeds (several MB: every case costs a full decode) are picked less often."""
    return {n: (0.4 if size > 2_000_000 else 0.8 if size > 500_000 else 1.0)
            for n, size in seed_sizes.items()}


def replay(path: str, targets: tuple[str, ...] = ALL_TARGETS) -> dict[str, Any]:
    """Run the targets on a saved reproducer in this process (for debugging)."""
    return run_targets(path, targets)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        sys.exit(serve(sys.argv[2:]))
    if len(sys.argv) > 2 and sys.argv[1] == "replay":
        print(json.dumps(replay(sys.argv[2]), indent=1))
        sys.exit(0)
    print("usage: fuzzing.py serve [...] | fuzzing.py replay FILE", file=sys.stderr)
    sys.exit(2)
