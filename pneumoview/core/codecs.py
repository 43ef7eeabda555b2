"""Decoding one frame with every installed pixel-data plugin that supports its syntax, in turn.

pydicom, given no plugin, tries its available plugins itself; but the one it tries first may
refuse a stream another decodes (Pillow fails on some valid JPEG 2000 streams that OpenJPEG and
GDCM read), and gdcm must never see a frame whose own size disagrees with the header: on such a
stream it throws a C++ exception that aborts the whole process (SIGABRT) where the other
plugins raise a Python error (tests/test_fuzz_short.py holds such a case). So the plugins
are tried here one at a time, gdcm last and only for a frame whose codestream header matches
the dataset's Rows, Columns and Samples per Pixel (:func:`codestream_matches`), and a failure
names every plugin tried.

An optional plugin the user installs is picked up the same way: pydicom lists it as available
for the syntax once its package imports (e.g. pylibjpeg-libjpeg for 12-bit JPEG Extended).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

#: Plugins that can take the process down on a malformed stream: tried last, and only when the
#: frame's codestream agrees with the header.
LAST_RESORT = ("gdcm",)
#: Plugins tried first where pydicom offers them: the same lossless values, several times
#: faster (1024 px 8-bit films on 2026-12-03: RLE 4.4 ms with pylibjpeg-rle against 28.8 with
#: pydicom's numpy decoder; JPEG 2000 125 ms with pylibjpeg-openjpeg against 139 with Pillow,
#: which also refuses some valid streams OpenJPEG reads).
FIRST_CHOICE = ("pylibjpeg",)

_JPEG_FAMILY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
_J2K_FAMILY = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
               "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}


class DecodeFailure(Exception):
    """Every plugin tried failed; ``tried`` names them with their one-line reasons."""

    def __init__(self, tried: list[tuple[str, str]]) -> None:
        self.tried = tried
        super().__init__(summary(tried))


#: How pydicom wraps a plugin's own error, even when that plugin was the only one asked.
_PYDICOM_WRAPPER = "Unable to decode as exceptions were raised by all available plugins:"


def one_line(exc: BaseException, plugin: str = "") -> str:
    """A plugin's error as one short line: pydicom's multi-line wrapper around it removed."""
    text = " ".join(str(exc).split())
    if text.startswith(_PYDICOM_WRAPPER):
        text = text[len(_PYDICOM_WRAPPER):].strip()
        if plugin and text.startswith(f"{plugin}:"):
            text = text[len(plugin) + 1:].strip()
    else:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def summary(tried: list[tuple[str, str]]) -> str:
    names = ", ".join(name for name, _ in tried)
    reasons = "; ".join(f"{name}: {reason}" for name, reason in tried)
    return f"no installed decoder could read it (tried {names}: {reasons})"


def transfer_syntax(ds: Dataset) -> UID | None:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return None if uid is None else UID(str(uid))


def available_plugins(ds: Dataset) -> tuple[str, ...]:
    """The plugins pydicom has available for ``ds``'s syntax (none for native data)."""
    uid = transfer_syntax(ds)
    if uid is None or not uid.is_transfer_syntax or not uid.is_encapsulated:
        return ()
    try:
        from pydicom.pixels.decoders.base import get_decoder

        return tuple(get_decoder(uid).available_plugins)
    except Exception:  # an unsupported syntax: check_decodable says so
        return ()


def plugin_order(ds: Dataset) -> list[str]:
    """Plugins in the order to try them: the first choices, then pydicom's (sorted) order,
    last resorts at the end."""
    plugins = available_plugins(ds)
    first = [p for p in FIRST_CHOICE if p in plugins and p not in LAST_RESORT]
    return first + [p for p in plugins if p not in LAST_RESORT and p not in first] + \
        [p for p in plugins if p in LAST_RESORT]


def frame_bytes(ds: Dataset, frame: int) -> bytes | None:
    """The encapsulated bytes of ``frame``, or None when the encapsulation is unreadable."""
    try:
        from pydicom.encaps import get_frame

        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        return bytes(get_frame(ds.PixelData, frame, number_of_frames=n_frames))
    except Exception:  # unreadable encapsulation: no last resort
        return None


def _j2k_size(stream: bytes) -> tuple[int, int, int] | None:
    """(height, width, components) from a JPEG 2000 codestream's SIZ marker (15444-1 A.5.1)."""
    start = stream.find(b"\xff\x4f\xff\x51")
    if start < 0 or len(stream) < start + 44:
        return None
    siz = start + 4  # Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, ..., Csiz
    x, y, xo, yo = (int.from_bytes(stream[siz + o:siz + o + 4], "big") for o in (4, 8, 12, 16))
    comps = int.from_bytes(stream[siz + 36:siz + 38], "big")
    return y - yo, x - xo, comps


def _jpeg_size(stream: bytes) -> tuple[int, int, int] | None:
    try:
        from pydicom.pixels.utils import _get_jpg_parameters

        info: dict[str, Any] = _get_jpg_parameters(stream)
        return int(info["height"]), int(info["width"]), int(info["components"])
    except Exception:  # no SOF marker or a changed pydicom: not checked
        return None


def codestream_matches(ds: Dataset, frame: int) -> bool:
    """Whether ``frame``'s codestream declares the dataset's Rows x Columns x Samples."""
    uid = transfer_syntax(ds)
    stream = frame_bytes(ds, frame)
    if uid is None or stream is None:
        return False
    size = _j2k_size(stream) if str(uid) in _J2K_FAMILY else \
        _jpeg_size(stream) if str(uid) in _JPEG_FAMILY else None
    try:
        want = (int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel", 1) or 1))
    except (AttributeError, TypeError, ValueError):
        return False
    return size == want


def decode_frame(ds: Dataset, frame: int) -> np.ndarray:
    """The stored values of ``frame`` (0-based), decoded by the first plugin that can.

    Native data is read by pydicom directly. Raises :class:`DecodeFailure` when every plugin
    failed; other errors (a memory error, pydicom's own checks on native data) propagate.
    """
    from pydicom.pixels import pixel_array

    plugins = plugin_order(ds)
    if not plugins:
        return pixel_array(ds, index=frame)
    tried: list[tuple[str, str]] = []
    for plugin in plugins:
        if plugin in LAST_RESORT and tried and not codestream_matches(ds, frame):
            tried.append((plugin, "not tried: the frame's size disagrees with the header"))
            continue
        try:
            return pixel_array(ds, index=frame, decoding_plugin=plugin)
        except MemoryError:
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # Rust codecs raise pyo3's PanicException
            tried.append((plugin, one_line(exc, plugin)))
    raise DecodeFailure(tried)
