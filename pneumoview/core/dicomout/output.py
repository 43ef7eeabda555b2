"""Where AI result objects (and retrieved or received DICOM files) are written.

One rule set for every folder PneumoView fills with DICOM files (``flag --dicom-out``,
``pull --out``, ``listen --out``): the folder is never a scanned folder or inside one (nothing
is ever written into a folder being read), each object is one Part-10 file named by its SOP
Instance UID, nothing else is written there (no sidecars, logs or DICOMDIR), and files are
private to the user (0600 in a 0700 folder).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable
from pathlib import Path

from pydicom.dataset import Dataset

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.paths import PathType, private_dir, write_private_file

#: A UID as PS3.5 allows it (digits and dots, at most 64 characters): safe as a file name.
UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
SUFFIX = ".dcm"


def _real(path: PathType) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def is_inside(path: PathType, folder: PathType) -> bool:
    """Whether ``path`` is ``folder`` or below it (links resolved)."""
    inner, outer = _real(path), _real(folder)
    return inner == outer or outer in inner.parents


def check_output_folder(out: PathType, scanned: Iterable[PathType] = ()) -> Path:
    """Refuse ``out`` when it is, or lies inside, a scanned folder (or holds one), or exists
    and is not a folder; returns its absolute path (not created yet)."""
    target = _real(out)
    for folder in scanned:
        if is_inside(target, folder) or is_inside(folder, target):
            raise PneumoViewError(f"the output folder must not be inside the scanned folder "
                                  f"{os.fspath(folder)} (nor hold it): nothing is written "
                                  "where files are read", out)
    if target.exists() and not target.is_dir():
        raise PneumoViewError("the output path exists and is not a folder", out)
    return target


def file_name(ds: Dataset | str) -> str:
    """``<SOPInstanceUID>.dcm``; a UID that is not a plain UID is refused (it names a file)."""
    uid = (ds if isinstance(ds, str) else str(ds.get("SOPInstanceUID", "") or "")).strip()
    if not UID_PATTERN.match(uid) or len(uid) > 64:
        raise PneumoViewError(f"cannot name a file by the SOP Instance UID {uid[:80]!r}: "
                              "not a valid UID")
    return uid + SUFFIX


def part10_bytes(ds: Dataset) -> bytes:
    """The dataset as a DICOM Part-10 file (preamble, meta header), as pydicom writes it."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_object(ds: Dataset, out: PathType) -> Path:
    """Write ``ds`` into ``out`` (created 0700) as ``<SOPInstanceUID>.dcm`` (0600, atomic)."""
    folder = private_dir(out)
    return write_private_file(folder / file_name(ds), part10_bytes(ds))


def write_raw(data: bytes, sop_instance_uid: str, out: PathType,
              staging: PathType | None = None) -> Path:
    """Write an already encoded Part-10 file (as received, byte for byte) named by its UID.

    With ``staging`` (a private folder on the same file system, outside ``out``) the file is
    written there and renamed into ``out``, so a folder that is being scanned while objects
    arrive never shows a half-written or temporary file."""
    folder = private_dir(out)
    name = file_name(sop_instance_uid)
    if staging is None:
        return write_private_file(folder / name, data)
    staged = write_private_file(Path(staging) / name, data)
    os.replace(staged, folder / name)
    return folder / name


def is_object_folder(folder: PathType) -> bool:
    """Whether ``folder`` is missing, empty or holds only ``<UID>.dcm`` files: a folder that
    PneumoView filled, not a user's own folder that an output must not be mixed into."""
    path = Path(folder)
    if not path.exists():
        return True
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return all(n.endswith(SUFFIX) and UID_PATTERN.match(n[:-len(SUFFIX)])
               and (path / n).is_file() for n in names)
