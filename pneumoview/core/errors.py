"""The errors core functions let escape: one base type, subclasses for what callers decide on.

Every failure a user can cause (a broken file, a missing codec, an image too large) is a
:class:`PneumoViewError` whose message names the file and the reason, so that the GUI, the batch
report and the command line can show it as it is, without a traceback. Callers that must act on
the kind of failure (the batch engine choosing ``skipped`` or ``error``, a front end adding its
own advice) test the type, never the text. Messages state facts only: what to do about them
("pass --resume", "raise the limit in the settings") differs between the command line and the
viewer, so each front end words it from the type and its fields
(:mod:`pneumoview.commands.advice` for the command line, :mod:`pneumoview.qt.advice` for the
viewer).
"""

from __future__ import annotations

import errno
from os import PathLike


class PneumoViewError(Exception):
    """A failure with a user-facing message naming the file (when there is one) and the reason."""

    def __init__(self, reason: str, path: str | PathLike[str] | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


# --------------------------------------------------------------------------------------------
# Reading one file


class NotDicomError(PneumoViewError):
    """The file holds no DICOM content (no preamble and nothing DICOM-like; an empty file)."""


class FileAccessError(PneumoViewError):
    """The file (or folder) cannot be opened or read: gone, permission, an I/O error.

    ``errno`` is the operating system's error number when there is one.
    """

    def __init__(self, reason: str, path: str | PathLike[str] | None = None,
                 errno_: int | None = None) -> None:
        super().__init__(reason, path)
        self.errno = errno_


class NoPixelDataError(PneumoViewError):
    """A DICOM object without an image: no Rows/Columns (a report, a key object), or an image
    object whose Pixel Data element is missing."""


class CodecUnavailableError(PneumoViewError):
    """No installed decoder handles the file's transfer syntax."""


class DeviceUnavailableError(PneumoViewError):
    """The compute device asked for (``device``: "cuda", "cuda:1", "mps") is not available to
    this PyTorch build; ``auto`` or ``cpu`` would run."""

    def __init__(self, reason: str, *, device: str) -> None:
        super().__init__(reason)
        self.device = device


class ImageTooLargeError(PneumoViewError):
    """Opening the image would need more memory than the size guard allows.

    ``need_bytes`` and ``limit_bytes`` let a front end say by how much to raise the limit.
    """

    def __init__(self, reason: str, path: str | PathLike[str] | None = None, *,
                 need_bytes: int = 0, limit_bytes: int = 0) -> None:
        super().__init__(reason, path)
        self.need_bytes = int(need_bytes)
        self.limit_bytes = int(limit_bytes)


def file_access_error(exc: OSError, path: str | PathLike[str] | None,
                      what: str = "file") -> FileAccessError:
    """The one wording of an ``OSError`` met while reading a ``what`` (file, report, folder)."""
    code = exc.errno
    if isinstance(exc, FileNotFoundError) or code == errno.ENOENT:
        reason = f"{what} not found (moved or deleted?)"
    elif isinstance(exc, PermissionError) or code in (errno.EACCES, errno.EPERM):
        reason = f"permission denied: the {what} cannot be read"
    elif isinstance(exc, IsADirectoryError) or code == errno.EISDIR:
        reason = "is a folder, not a DICOM file" if what == "file" else f"the {what} is a folder"
    else:
        reason = f"cannot read the {what} ({exc.strerror or exc})"
    return FileAccessError(reason, path, code)


# --------------------------------------------------------------------------------------------
# Reports


class ReportError(PneumoViewError):
    """A batch report (or its manifest or lock) cannot be used as asked."""


class ReportExistsError(ReportError):
    """The report exists and the run was asked neither to resume nor to replace it."""


class ReportWriteError(ReportError):
    """The report cannot be written; ``errno`` says why (``ENOSPC``: the disk is full)."""

    def __init__(self, reason: str, path: str | PathLike[str] | None = None,
                 errno_: int | None = None) -> None:
        super().__init__(reason, path)
        self.errno = errno_

    @property
    def disk_full(self) -> bool:
        return self.errno == errno.ENOSPC

    @property
    def not_permitted(self) -> bool:
        return self.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


class ReportLocked(ReportError):
    """Another live run holds the report's lock."""


class NotAReportError(ReportError):
    """The file at the report's name is not a PneumoView batch report (it is left alone)."""


class ReportUnfinishedError(ReportError):
    """The run that writes the report (or one shard of it) stopped before the end: a torn last
    line, a manifest that says unfinished, fewer rows than files, no manifest. Resuming that run
    finishes it; ``shard`` is its ``(k, n)`` when it is known to be a shard."""

    def __init__(self, reason: str, path: str | PathLike[str] | None = None, *,
                 shard: tuple[int, int] | None = None) -> None:
        super().__init__(reason, path)
        self.shard = shard


class OutputIsInputError(ReportError):
    """The output named is one of the reports being read."""


class ReportMismatchError(ReportError):
    """A report cannot be continued (or shards joined) by this run: another model, threshold or
    shard. ``field`` names what differs; ``report_value`` is the report's value (the exact
    threshold or ``(k, n)`` shard to resume with)."""

    def __init__(self, reason: str, path: str | PathLike[str] | None = None, *,
                 field: str, report_value: object = None) -> None:
        super().__init__(reason, path)
        self.field = field
        self.report_value = report_value


class ShardError(ReportError):
    """A shard of a sharded run is missing or does not fit the others; ``missing`` lists the
    shard indices not given (empty when the shards are all there but disagree)."""

    def __init__(self, reason: str, path: str | PathLike[str] | None = None, *,
                 missing: tuple[int, ...] = ()) -> None:
        super().__init__(reason, path)
        self.missing = missing
