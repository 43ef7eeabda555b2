"""DICOMDIR: the files a media directory references, which may not escape its folder."""

from __future__ import annotations

import os

from pneumoview.core.errors import PneumoViewError

__all__ = ["dicomdir_references", "is_dicomdir_name"]


def _is_within(child: str, parent: str) -> bool:
    try:
        return os.path.commonpath([child, parent]) == parent
    except ValueError:  # different drives
        return False


def is_dicomdir_name(path: str) -> bool:
    return os.path.basename(path).upper() == "DICOMDIR"


def dicomdir_references(path: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Files a DICOMDIR references (inside its folder) and error entries for refused ones."""
    from pneumoview.core.dicomio import read_header

    folder = os.path.dirname(path)
    real_folder = os.path.realpath(folder)
    ds = read_header(path)
    found: list[str] = []
    errors: list[tuple[str, str]] = []
    try:
        records = list(ds.get("DirectoryRecordSequence", []) or [])
    except Exception as exc:  # a damaged sequence
        raise PneumoViewError(f"unreadable directory records ({type(exc).__name__})",
                              path) from None
    for record in records:
        try:  # values inside records are converted when read: a damaged one raises here
            ref = record.get("ReferencedFileID")
            parts = None if ref is None else (
                [str(p) for p in ref] if not isinstance(ref, str) else str(ref).split("\\"))
        except Exception as exc:
            errors.append((path, f"DICOMDIR record unreadable ({type(exc).__name__}); "
                                 "skipped (the DICOMDIR may be damaged)"))
            continue
        if parts is None:
            continue
        target = _target(folder, real_folder, [p.strip(" \x00") for p in parts])
        if target is None:
            shown = "\\".join(p.strip(" \x00") for p in parts)
            errors.append((path, f"DICOMDIR refers to {shown!r}, outside its folder or not a "
                                 "plain relative path; refused (the DICOMDIR may be malicious "
                                 "or damaged)"))
            continue
        found.append(target)
    return found, errors


def _target(folder: str, real_folder: str, parts: list[str]) -> str | None:
    """The referenced path, or None when it is not a plain relative path inside ``folder``
    (also after resolving symlinks)."""
    bad = (not parts or any(
        p in ("", ".", "..") or "/" in p or "\\" in p or ":" in p or "\x00" in p
        for p in parts))
    if bad:
        return None
    target = os.path.normpath(os.path.join(folder, *parts))
    if not _is_within(target, os.path.normpath(folder)) \
            or not _is_within(os.path.realpath(target), real_folder):
        return None
    return target
