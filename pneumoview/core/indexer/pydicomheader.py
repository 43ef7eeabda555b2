"""The pydicom path: header fields read with :func:`pneumoview.core.dicomio.read_header`, for
every file the fast parser leaves (big-endian, deflated, ISO 2022, no preamble, oddities)."""

from __future__ import annotations

from typing import Any

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.indexer.fields import INCOMPLETE, INT, KEYWORDS, UINT16, WANTED, clean, to_int
from pneumoview.core.indexer.records import DICOMDIR_SOP_CLASS

__all__ = ["pydicom_fields", "pydicom_text"]

_ESSENTIAL_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "Rows", "PatientID")


def pydicom_text(value: Any) -> str:
    """A pydicom value as the fast parser would give it (multi-values joined by a backslash)."""
    if value is None:
        return ""
    from pydicom.multival import MultiValue

    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(clean(str(v)) for v in value)
    return clean(str(value))


def pydicom_fields(path: str) -> dict[str, Any]:
    """The same fields as :func:`~.fastheader.fast_fields`, read by pydicom."""
    from pneumoview.core.dicomio import read_header

    ds = read_header(path)
    meta = getattr(ds, "file_meta", None)
    if not any(k in ds for k in _ESSENTIAL_KEYWORDS):
        if meta is None or str(meta.get("MediaStorageSOPClassUID", "")) != DICOMDIR_SOP_CLASS:
            raise PneumoViewError(INCOMPLETE, path)
    out: dict[str, Any] = {}
    for name, kind in WANTED.values():
        out[name] = _field(ds, path, name, kind)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    out["transfer_syntax"] = clean(syntax)
    if not out["sop_class_uid"] and meta is not None:
        out["sop_class_uid"] = pydicom_text(meta.get("MediaStorageSOPClassUID"))
    if not out["sop_instance_uid"] and meta is not None:
        out["sop_instance_uid"] = pydicom_text(meta.get("MediaStorageSOPInstanceUID"))
    return out


def _field(ds: Any, path: str, name: str, kind: int) -> Any:
    """One field's value; PneumoViewError naming the keyword when pydicom cannot convert it."""
    try:
        value = ds.get(KEYWORDS[name])
        # str() of a value read as a sequence converts the elements nested in it: it can
        # raise too
        text = "" if kind == UINT16 else pydicom_text(value)
    except Exception as exc:  # a value pydicom cannot convert
        raise PneumoViewError(f"unreadable value for {KEYWORDS[name]} ({exc})", path) from exc
    if kind == UINT16:
        try:
            return int(value) if value not in (None, "") else 0
        except (TypeError, ValueError):
            return 0
    if kind == INT:
        return to_int(text)
    return text
