"""Reading one file's header into an :class:`~.records.Instance`: the fast parser first, the
pydicom path when it gives up, and a clear reason naming the file when neither can."""

from __future__ import annotations

import errno
import logging
import os
import stat as stat_mod
import struct
from typing import Any

from pneumoview.core.errors import FileAccessError, NotDicomError, PneumoViewError
from pneumoview.core.indexer.fastheader import fast_fields
from pneumoview.core.indexer.pydicomheader import pydicom_fields
from pneumoview.core.indexer.readbuffer import CHUNK, Fallback, Truncated
from pneumoview.core.indexer.records import Instance, PathType

__all__ = ["NOT_DICOM", "read_file", "read_instance"]

log = logging.getLogger(__name__)

#: What :func:`read_file` returns for a file that is not DICOM at all.
NOT_DICOM = object()

_U16 = struct.Struct("<H")


def _plausible_raw_dicom(head: bytes) -> bool:
    """A file without preamble may still be DICOM (old ACR-NEMA style): it then starts with a
    low even group number. Anything else (PNG, JPEG, text, zip...) is not worth a forced read,
    which on a large non-DICOM file could read much of it."""
    if len(head) < 8:
        return False
    group_le = _U16.unpack_from(head, 0)[0]
    group_be = struct.unpack_from(">H", head, 0)[0]
    return group_le in (0x0000, 0x0002, 0x0004, 0x0008) or group_be in (0x0002, 0x0008)


def make_instance(path: str, st: os.stat_result, fields: dict[str, Any]) -> Instance:
    """An Instance from a reader's field dict (absent fields empty) and the file's stat."""
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


def read_file(path: str, st: os.stat_result, fast: bool = True) -> Instance | object:
    """An Instance, or NOT_DICOM; PneumoViewError for DICOM-looking files that fail."""
    try:
        with open(path, "rb") as f:
            head = f.read(CHUNK)
            if fast and head[128:132] == b"DICM":
                try:
                    return make_instance(path, st, fast_fields(path, st.st_size, f, head))
                except Truncated:
                    raise PneumoViewError(
                        "DICOM header ends early (file truncated: incomplete copy or "
                        "download?)", path) from None
                except Fallback:
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
            return NOT_DICOM
        try:
            return make_instance(path, st, pydicom_fields(path))
        except PneumoViewError:
            return NOT_DICOM  # no preamble and no readable DICOM content
    return make_instance(path, st, pydicom_fields(path))


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
    result = read_file(spath, st, fast=fast)
    if result is NOT_DICOM:
        raise NotDicomError("not a DICOM file (no DICM preamble, no DICOM content)", spath)
    assert isinstance(result, Instance)
    return result
