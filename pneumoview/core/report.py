"""The batch report: a CSV written row by row, resumable, shardable and mergeable.

Why it is built this way:

* rows are flushed as they are written, so a crash or ``kill -9`` loses at most the rows still
  in flight; every row is one line (messages are flattened, line breaks in file names are
  escaped), so a half-written last line is simply everything after the last newline, and
  :func:`load_for_resume` cuts it off;
* the report is valid UTF-8 and safe to open in a spreadsheet, yet every cell reads back exactly
  through :func:`read_report` (see :func:`encode_cell`): ``path`` and ``relpath`` are the names
  the OS gave, with undecodable bytes, control characters and ``%`` percent-escaped, and a
  text cell that a spreadsheet would take for a formula gets a leading apostrophe;
* one run at a time writes a report: :class:`ReportLock` holds ``REPORT.csv.lock``;
* resuming keeps only rows whose file is unchanged (same relpath, size and mtime_ns), refuses to
  mix models or thresholds, and rewrites the report atomically before appending (a temporary
  file renamed over ``--output``: a symbolic link there is replaced, never written through), so
  the finished report has exactly one row per file;
* a manifest JSON beside the report (``REPORT.manifest.json``) says which shard it is, how many
  files the shard holds, with which model and threshold, and whether the run finished (or was
  cancelled), so :func:`merge_reports` can refuse a missing, doubled, unfinished or mixed shard.
"""

from __future__ import annotations

import contextlib
import csv
import enum
import errno
import hashlib
import io
import json
import logging
import math
import os
import re
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pneumoview.core.errors import (
    NotAReportError,
    OutputIsInputError,
    PneumoViewError,
    ReportLocked,
    ReportMismatchError,
    ReportUnfinishedError,
    ReportWriteError,
    ShardError,
)
from pneumoview.core.reportrow import COLUMNS as _COLUMNS
from pneumoview.core.reportrow import STATUSES as STATUSES
from pneumoview.core.reportrow import ReportRow as ReportRow
from pneumoview.core.reportrow import Status as Status

log = logging.getLogger(__name__)

#: Report columns, in order: the fields of :class:`~pneumoview.core.reportrow.ReportRow`.
#: The first 15 are the documented interface; the rest are extras. Columns are only ever
#: appended: a report of an older format has a prefix of these.
COLUMNS: tuple[str, ...] = _COLUMNS
#: The manifest's ``report_format``: 1 = the first 20 columns (no field in the manifest), 2 =
#: ``model_id`` appended, 3 = cells encoded by :func:`encode_cell` (paths exact and
#: percent-escaped, formula-like cells behind an apostrophe; before, text was written as it
#: was, whitespace collapsed everywhere). Each later appended column or cell change bumps it;
#: :func:`read_report` reads each report by its own format, so older ones resume and merge.
#: 4 = ``logit`` (the raw logit, full precision: ``repr``) and ``operating_point`` (which
#: threshold the row used: :mod:`pneumoview.core.oppoints`) appended. 5 = the content gate's
#: ``gate``, ``atypicality``, ``atypicality_percentile`` appended (and the manifest's ``gate``).
REPORT_FORMAT = 5
#: The first format whose cells :func:`decode_cell` decodes.
ENCODED_CELLS_FORMAT = 3
#: The columns of format 1; every report has at least these.
LEGACY_COLUMNS = COLUMNS[:20]

MANIFEST_FORMAT = "pneumoview-batch-manifest-1"

#: Most shards one batch may be split into (a manifest claiming more is refused).
MAX_SHARDS = 100_000

#: Largest manifest read (ours are a few hundred bytes).
MAX_MANIFEST_BYTES = 1 << 20

#: The report's first line, byte for byte: ``--resume`` refuses a file that does not start so.
HEADER_LINE = (",".join(COLUMNS) + "\n").encode("ascii")
#: Why a file at a report's name is refused (and left alone) as a report.
NOT_A_REPORT = "not a PneumoView batch report (its first line is not the report's header)"

PATH_KEYS = ("path", "relpath")

PathType = str | PathLike[str]


# --------------------------------------------------------------------------------------------
# Sharding


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N``; a clear error otherwise."""
    try:
        k_text, n_text = str(text).split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise PneumoViewError(f"--shard must look like K/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise PneumoViewError(f"--shard {text}: K must be in 0..N-1 and N at least 1")
    if n > MAX_SHARDS:
        raise PneumoViewError(f"--shard {text}: at most {MAX_SHARDS} shards")
    return k, n


def shard_of(relpath: str, n: int) -> int:
    """The shard (0..n-1) a file belongs to: sha256 of its '/'-separated relpath, mod n.

    A hash of the relative path is the same on every machine and every run, whatever the mount
    point, the scan order or the number of files.
    """
    digest = hashlib.sha256(relpath.replace(os.sep, "/").encode("utf-8", "surrogateescape"))
    return int.from_bytes(digest.digest()[:8], "big") % n


# --------------------------------------------------------------------------------------------
# Formatting rows


#: Longest text a header-derived field (message, UIDs, patient ID...) may take in the report: a
#: corrupt header can hold megabytes in one element, which would make the report unreadable by
#: Python's csv module (128 KiB field limit), and so --resume and merge-reports.
MAX_FIELD_CHARS = 1024


def _one_line(text: Any) -> str:
    return " ".join(str(text).split()) if text is not None else ""


def _valid_utf8(text: str) -> str:
    """Lone surrogates (undecodable bytes in a header or message) as ``\\udcff`` text."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# ---- paths: exact, one line, valid UTF-8

#: Characters a path cell percent-escapes besides ``%``: C0 controls (tab and line breaks
#: included), DEL, C1 controls, the Unicode line/paragraph separators, the bidirectional
#: marks and overrides (which reorder how a name is shown) and lone surrogates.
_PATH_ESCAPES = re.compile("[%\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e"
                           "\u2066-\u2069\ud800-\udfff]")


def _percent(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as os.fsdecode gives it
        return f"%{code - 0xDC00:02X}"
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))


def escape_path(path: str) -> str:
    """A file name as the OS gave it, as one line of valid UTF-8; :func:`unescape_path` inverts.

    ``%`` becomes ``%25``; a byte that is not UTF-8 (``os.fsdecode`` keeps it as a lone
    surrogate) becomes ``%XX`` of that byte; control characters (tab, line feed, carriage
    return, escape, ...) and bidirectional controls become ``%XX`` of their UTF-8 bytes.
    Every other character is kept.
    """
    return _PATH_ESCAPES.sub(_percent, path)


def unescape_path(text: str) -> str:
    """The exact name :func:`escape_path` wrote (``os.fsencode`` of it gives the OS's bytes)."""
    return unquote(text, encoding="utf-8", errors="surrogateescape") if "%" in text else text


# ---- spreadsheet formulas (OWASP "CSV injection")

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def neutralise_formula(text: str) -> str:
    """A leading apostrophe for a text cell a spreadsheet would run as a formula.

    OWASP's advice: a cell that starts with ``= + - @``, TAB or CR and is not a number gets a
    ``'``; a cell that already starts with ``'`` gets one more, so that reading drops exactly
    one (:func:`restore_formula`).
    """
    if text.startswith("'") or (text.startswith(_FORMULA_START)
                                and not _NUMBER.fullmatch(text)):
        return "'" + text
    return text


def restore_formula(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def encode_cell(key: str, text: str) -> str:
    """Report text of one cell (format 3): paths escaped, then formula-like cells neutralised."""
    return neutralise_formula(escape_path(text) if key in PATH_KEYS else _valid_utf8(text))


def decode_cell(key: str, text: str, report_format: int = REPORT_FORMAT) -> str:
    """The value :func:`encode_cell` was given (cells of formats 1 and 2 are returned as they
    are)."""
    if report_format < ENCODED_CELLS_FORMAT:
        return text
    text = restore_formula(text)
    return unescape_path(text) if key in PATH_KEYS else text


def format_value(key: str, value: Any) -> str:
    """A row value as report text (floats fixed, booleans true/false, None empty).

    Paths are kept exactly (no whitespace collapsed); other text is flattened to one line and
    capped at :data:`MAX_FIELD_CHARS`.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if key == "probability" and isinstance(value, float):
        return f"{value:.6f}" if math.isfinite(value) else ""
    if key == "threshold" and isinstance(value, float):
        return f"{value:.6g}"
    if key == "logit" and isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if key == "elapsed_ms" and isinstance(value, float):
        return f"{value:.1f}"
    if key in ("atypicality", "atypicality_percentile") and isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else ""
    if key in PATH_KEYS:
        return encode_cell(key, os.fspath(value) if isinstance(value, PathLike) else str(value))
    text = _one_line(value)
    if len(text) > MAX_FIELD_CHARS:
        text = text[:MAX_FIELD_CHARS - 3] + "..."
    return encode_cell(key, text)


def format_row(row: Mapping[str, Any]) -> list[str]:
    return [format_value(k, row.get(k)) for k in COLUMNS]


def parse_row(row: Mapping[str, str]) -> dict[str, Any]:
    """Report text back to typed values (the GUI and merge use it)."""
    out: dict[str, Any] = dict(row)
    for key in ("file_size", "mtime_ns", "frame"):
        out[key] = int(row[key]) if row.get(key, "").lstrip("-").isdigit() else None
    for key in ("probability", "threshold", "elapsed_ms", "logit", "atypicality",
                "atypicality_percentile"):
        try:
            out[key] = float(row[key]) if row.get(key) else None
        except ValueError:
            out[key] = None
    flagged = row.get("flagged", "")
    out["flagged"] = True if flagged == "true" else False if flagged == "false" else None
    return out


# --------------------------------------------------------------------------------------------
# Writing


def is_regular_target(path: PathType) -> bool:
    """True when ``path`` is (or will be) a regular file; False for /dev/full, a pipe, a tty."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def check_output_target(path: PathType) -> None:
    """Refuse an output that is not a regular file (or a new name), before anything opens it.

    A FIFO would block the run for ever, a device (``/dev/full``, a tty) would swallow the
    report; ``stat`` follows a symbolic link, so a link to one is refused too. A link to a
    regular file (or a dangling one) is allowed: the report replaces the link itself.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise PneumoViewError(f"cannot use this output ({exc.strerror or exc})", path) from exc
    if not stat.S_ISREG(mode):
        raise PneumoViewError(f"the output is {_kind(mode)}, not a regular file; choose a "
                              "file name for the report", path)


def _write_error(path: PathType, exc: OSError) -> ReportWriteError:
    if exc.errno == errno.ENOSPC:
        why = "the disk is full (no space left on device)"
    elif exc.errno == errno.EFBIG:
        why = "the file is too large (file system or process file size limit)"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "permission denied or read-only file system"
    else:
        why = f"{exc.strerror or exc}"
    return ReportWriteError(f"cannot write the report: {why}", path, exc.errno)


def _csv_line(cells: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


def _row_line(row: Mapping[str, Any]) -> str:
    """One row as one line of valid UTF-8; a row that cannot be formatted is an error row.

    A row is never dropped and never stops the rows around it: if formatting fails (a value
    whose ``str`` raises, say), the line keeps what can be kept and says why.
    """
    try:
        line = _csv_line(format_row(row))
        line.encode("utf-8")
        return line
    except Exception as exc:  # one bad value must not lose the other rows
        log.warning("a report row could not be formatted (%s)", type(exc).__name__)
        safe: dict[str, Any] = {}
        for key in ("path", "relpath", "file_size", "mtime_ns", "threshold", "model_sha256"):
            with contextlib.suppress(Exception):
                format_value(key, row.get(key)).encode("utf-8")
                safe[key] = row.get(key)
        safe.update(status="error", message=f"this file's row could not be written "
                                            f"({type(exc).__name__}: {exc})")
        return _csv_line(format_row(safe))


def _temp_beside(target: Path) -> tuple[int, Path]:
    """A new temporary file beside ``target`` (``.NAME.tmp-XXXX``, never a link) with the mode
    the file it replaces had (a private 0600 report stays private), else the umask's."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent or ".")
    try:
        st = os.stat(target, follow_symlinks=False)
        mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None
    except OSError:
        mode = None
    with contextlib.suppress(OSError, AttributeError):
        os.fchmod(fd, 0o666 & ~_umask() if mode is None else mode)
    return fd, Path(name)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class ReportWriter:
    """Write a report: the header (and ``keep``, rows from a resumed report) into a temporary
    file renamed over ``path``, then rows appended to that same file, flushed as they come.

    Renaming puts a regular file at ``path`` whatever was there (a symbolic link is replaced,
    never followed); writing on through the open temporary file means no second ``open`` of a
    name that could have been swapped meanwhile.
    """

    def __init__(self, path: PathType, keep: Iterable[Mapping[str, Any]] = ()) -> None:
        self.path = str(path)
        check_output_target(self.path)
        target = Path(self.path)
        tmp: Path | None = None
        try:
            fd, tmp = _temp_beside(target)
            self._fh: io.TextIOWrapper = open(  # closed in close()
                fd, "w", encoding="utf-8", newline="")
            self._fh.write(",".join(COLUMNS) + "\n")
            for row in keep:
                self._fh.write(_row_line(row))
            self._fh.flush()
            os.fsync(self._fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                with contextlib.suppress(Exception):
                    self._abandon()
            raise _write_error(self.path, exc) from exc

    def write_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        lines = [_row_line(row) for row in rows]
        try:
            for line in lines:
                self._fh.write(line)
            self._fh.flush()
        except OSError as exc:
            self._abandon()
            raise _write_error(self.path, exc) from exc

    def _abandon(self) -> None:
        """Drop what sits in the buffer (it cannot be written) and close the file."""
        try:
            os.close(self._fh.fileno())
        except OSError:
            pass
        try:
            self._fh.close()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self._fh.closed:
            return
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        except OSError as exc:
            self._abandon()
            raise _write_error(self.path, exc) from exc


def write_report_atomic(path: PathType, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write a whole report to a temporary file beside ``path`` and rename it into place."""
    ReportWriter(path, rows).close()


# --------------------------------------------------------------------------------------------
# One writer at a time


def lock_path(report: PathType) -> Path:
    p = Path(report)
    return p.with_name(p.name + ".lock")


class ReportLock:
    """An exclusive lock on ``REPORT.csv.lock`` for as long as one run writes the report.

    ``fcntl.flock`` (POSIX; ``msvcrt.locking`` on Windows) belongs to the open file, so the
    kernel releases it when the holder dies however it dies: a lock file left by a killed run
    never blocks ``--resume``. The holder writes its PID, host and start time into the file so
    that a second run can say who holds it. Where the file system cannot lock at all (some
    network mounts), the run goes on with a warning.
    """

    def __init__(self, report: PathType) -> None:
        self.path = lock_path(report)
        self._fd: int | None = None

    def __enter__(self) -> ReportLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        for _ in range(20):  # the holder may unlink the file between our open and our lock
            fd = self._open()
            try:
                locked = _try_lock(fd)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise ReportLocked(f"another run is writing this report ({holder})",
                                   self.path.with_suffix("")) from None
            except BaseException:
                os.close(fd)
                raise
            if not locked:
                log.warning("%s: this file system cannot lock files; make sure no other run "
                            "writes the same report", self.path)
            if self._still_at_path(fd):
                self._fd = fd
                self._write_holder()
                return
            os.close(fd)
        raise PneumoViewError("cannot take the report's lock (it keeps changing)", self.path)

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) \
            | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PneumoViewError("the report's lock file is a symbolic link; remove it",
                                      self.path) from None
            raise _write_error(self.path, exc) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise PneumoViewError("the report's lock file is not a regular file; remove it",
                                  self.path)
        return fd

    def _still_at_path(self, fd: int) -> bool:
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)

    def _write_holder(self) -> None:
        assert self._fd is not None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, (json.dumps(info) + "\n").encode("utf-8"))

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):  # unlink while still holding it (see acquire)
            if self._still_at_path(fd):
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(fd)  # releases the lock


def lock_holder(report: PathType) -> str | None:
    """Who holds ``report``'s lock (as :class:`ReportLocked` words it), or None when no live
    run does. Only looks: never creates, takes or removes the lock file."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(lock_path(report), flags)
    except OSError:
        return None  # no lock file (a holder keeps it while it holds it), or not ours to open
    try:
        try:
            _try_lock(fd)
        except BlockingIOError:
            return _read_holder(fd)
        except OSError:
            return None
        return None
    finally:
        os.close(fd)  # releases the probe's own lock, if it took one


def _try_lock(fd: int) -> bool:
    """Lock ``fd`` without waiting: True, or False where locking is not supported; raises
    :class:`BlockingIOError` when another process holds it."""
    try:
        if sys.platform == "win32":
            import msvcrt

            os.lseek(fd, 1 << 20, os.SEEK_SET)  # lock a byte past the holder text we read
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EDEADLK):
                    raise BlockingIOError(exc.errno, "locked") from None
                raise
            return True
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return False
        raise


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode("utf-8"))
        pid, host, started = int(info["pid"]), str(info["host"]), str(info["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return "its PID is not known yet"
    where = "" if host == socket.gethostname() else f" on {host}"
    return f"PID {pid}{where}, started {started}"


# --------------------------------------------------------------------------------------------
# Reading and resuming


#: The header lines a report may start with: today's columns, or (reports written before
#: columns were appended) the first 20 of them and each longer prefix.
def _header_columns(first_line: bytes) -> tuple[str, ...] | None:
    for n in range(len(COLUMNS), len(LEGACY_COLUMNS) - 1, -1):
        if first_line == (",".join(COLUMNS[:n]) + "\n").encode("ascii"):
            return COLUMNS[:n]
    return None


def starts_like_a_report(path: PathType) -> bool:
    """True for an empty file or one whose first line is a report header (read: 4 KiB)."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    return not head or _header_columns(head[: head.find(b"\n") + 1]) is not None


def report_format_of(path: PathType) -> int:
    """The cell format of a report: its manifest's ``report_format`` (1 when the manifest
    predates the field), :data:`REPORT_FORMAT` when there is no readable manifest."""
    try:
        manifest = read_manifest(path, required=False)
    except PneumoViewError:
        return REPORT_FORMAT
    if manifest is None:
        return REPORT_FORMAT
    return int(manifest.get("report_format", 1))


def read_report(path: PathType, *, allow_partial_tail: bool = True,
                report_format: int | None = None) -> list[dict[str, str]]:
    """Rows of a report as text dicts, cells decoded (:func:`decode_cell`) to the exact values
    written; a half-written last line is dropped (when allowed). Columns a report of an
    older version lacks are empty strings. ``report_format`` defaults to the manifest's.
    """
    if not is_regular_target(path):
        raise PneumoViewError("not a regular file", path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise PneumoViewError("report not found", path) from None
    except OSError as exc:
        raise PneumoViewError(f"cannot read the report ({exc.strerror or exc})", path) from exc
    if not data:
        return []
    header = _header_columns(data[: data.find(b"\n") + 1])
    if header is None:
        raise NotAReportError(NOT_A_REPORT, path)
    if not data.endswith(b"\n"):
        if not allow_partial_tail:
            raise ReportUnfinishedError("the report's last line is incomplete (the run was "
                                        "interrupted)", path)
        data = data[: data.rfind(b"\n") + 1]
    fmt = report_format_of(path) if report_format is None else report_format
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""))
    try:
        next(reader)
        lines = list(reader)
    except csv.Error as exc:
        raise PneumoViewError(f"the report cannot be parsed ({exc})", path) from None
    rows = []
    missing = dict.fromkeys(COLUMNS[len(header):], "")
    for i, values in enumerate(lines):
        if len(values) != len(header):
            if i == len(lines) - 1 and allow_partial_tail:
                break  # an interrupted last row
            raise PneumoViewError(f"report row {i + 2} is malformed ({len(values)} fields, "
                                  f"expected {len(header)})", path)
        row = {k: decode_cell(k, v, fmt) for k, v in zip(header, values, strict=True)}
        rows.append({**row, **missing})
    return rows


def _refuse_weights(have: str, want: str, path: PathType) -> None:
    """Refuse a report made with other weights (``have``: its sha256; empty: not known)."""
    if have and have != want:
        raise ReportMismatchError(
            f"refusing to mix models: the report was made with model sha256 {have[:12]}..., "
            f"this run uses {want[:12]}...", path, field="model", report_value=have)


def _refuse_model_id(have: str, want: str, path: PathType) -> None:
    """Refuse a report whose model_id differs: same weights, other behaviour (metadata)."""
    if have and want and have != want:
        raise ReportMismatchError(
            f"refusing to mix models: the report was made with model_id {have[:17]}..., this "
            f"run uses {want[:17]}... (the same weights with other metadata: calibration, "
            "threshold or input settings differ)", path, field="model", report_value=have)


#: ``gate`` cells of rows that the content gate did not judge (``--no-gate``; no gate in the
#: model); any other non-empty cell is a content-gate verdict
_TAGS_ONLY_CELLS = ("off", "absent")


def _gate_of_row(cell: str) -> str | None:
    """How a row was gated ("content" / "tags"), None when its cell does not say."""
    if not cell:
        return None
    return "tags" if cell in _TAGS_ONLY_CELLS else "content"


def _refuse_gate(have: str | None, want: str | None, path: PathType) -> None:
    """Refuse to mix rows judged by the content gate with rows judged by the tag gate alone."""
    if have and want and have != want:
        how = {"content": "with the content gate", "tags": "with the tag gate only"}
        raise ReportMismatchError(
            f"refusing to mix gates: the report was made {how.get(have, have)}, this run "
            f"{how.get(want, want)} (the content gate turned off, or a model without one)",
            path, field="gate", report_value=have)


def load_for_resume(path: PathType, *, model_sha256: str, threshold: float,
                    shard: tuple[int, int] | None, model_id: str = "",
                    policy: Mapping[str, Any] | None = None,
                    gate: str | None = None) -> dict[str, dict[str, str]]:
    """Rows already in a report (by relpath), after checking they can be continued.

    Refuses (``PneumoViewError``) a file that is not a report, and a report made with another
    model (weights sha256, or ``model_id`` where the report has one: reports of format 1 have
    none and resume when the weights match) or threshold, or for another shard: mixing them
    would give one report with two meanings. Thresholds are compared like with like: the
    manifest's exact value with this run's, and each row's six-digit text with this run's
    threshold written the same way. ``policy`` (``ScoringPolicy.manifest_fields()``) is this
    run's set of operating points and site profile: a report made with another set is refused,
    and each row's threshold must be one of the set's. ``gate`` is how this run gates
    ("content" or "tags"): a report gated otherwise (the manifest's ``gate``; reports before
    format 5 were gated by tags alone) is refused.
    """
    from pneumoview.core import oppoints

    if not os.path.lexists(path):
        return {}
    check_output_target(path)
    try:
        looks_right = starts_like_a_report(path)
    except OSError as exc:
        raise PneumoViewError(f"cannot read the report ({exc.strerror or exc})", path) from exc
    if not looks_right:
        raise NotAReportError(NOT_A_REPORT, path)
    manifest = read_manifest(path, required=False)
    if manifest is not None:
        have = (manifest["shard_index"], manifest["shard_count"])
        want = shard or (0, 1)
        if have != (want[0], want[1]):
            raise ReportMismatchError(
                f"the report was written for shard {have[0]}/{have[1]}, this run is shard "
                f"{want[0]}/{want[1]}", path, field="shard", report_value=have)
        _refuse_weights(manifest["model_sha256"], model_sha256, path)  # before model_id:
        _refuse_model_id(str(manifest.get("model_id") or ""), model_id, path)  # same weights
        _refuse_gate(str(manifest.get("gate") or "tags"), gate, path)
        why = None if policy is None else oppoints.policy_mismatch(
            oppoints.manifest_policy(manifest), policy, single_thresholds=False)
        if why:
            raise ReportMismatchError(why, path, field="policy")
        if float(manifest["threshold"]) != threshold:
            used = float(manifest["threshold"])
            raise ReportMismatchError(
                f"refusing to mix thresholds: the report used {used!r}, this run "
                f"{threshold!r}", path, field="threshold", report_value=used)
    rows = read_report(path)
    done: dict[str, dict[str, str]] = {}
    allowed = {format_value("threshold", float(t))
               for t in (policy or {}).get("operating_points", {}).values()}
    ours = format_value("threshold", float(threshold))
    allowed.add(ours)
    for row in rows:
        _refuse_weights(row["model_sha256"], model_sha256, path)
        _refuse_model_id(row.get("model_id", ""), model_id, path)
        _refuse_gate(_gate_of_row(row.get("gate", "")), gate, path)
        if row["threshold"] and row["threshold"] not in allowed:
            raise ReportMismatchError(
                f"refusing to mix thresholds: the report used {row['threshold']}, this run "
                f"{threshold!r}", path, field="threshold", report_value=row["threshold"])
        done[row["relpath"]] = row  # a later row for the same file wins
    return done


# --------------------------------------------------------------------------------------------
# Manifest


def manifest_path(report: PathType) -> Path:
    p = Path(report)
    return p.with_name(p.name + ".manifest.json")


def write_manifest(report: PathType, data: Mapping[str, Any]) -> Path:
    """Write the manifest atomically (temp file + rename) beside ``report``.

    ``root`` and the names in ``merged_from`` are file names: escaped like report paths
    (:func:`escape_path`) by the caller, so the manifest is valid UTF-8 JSON.
    """
    target = manifest_path(report)
    payload = {"format": MANIFEST_FORMAT, "report_format": REPORT_FORMAT, **data,
               "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp: Path | None = None
    try:
        fd, tmp = _temp_beside(target)
        with open(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise _write_error(target, exc) from exc
    return target


def read_manifest(report: PathType, *, required: bool = True) -> dict[str, Any] | None:
    """The manifest beside ``report``, checked (:func:`check_manifest`); None when absent and
    not ``required``."""
    path = manifest_path(report)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise PneumoViewError(f"its manifest {path.name} is {_kind(st.st_mode)}, not a "
                                  "regular file", report)
        if st.st_size > MAX_MANIFEST_BYTES:
            raise PneumoViewError(f"its manifest {path.name} is {st.st_size} bytes, too large "
                                  "to be a PneumoView manifest", report)
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not required:
            return None
        raise ReportUnfinishedError(f"its manifest {path.name} is missing, so the shard "
                                    "cannot be checked", report) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PneumoViewError(f"unreadable manifest {path.name} ({type(exc).__name__}: "
                              f"{str(exc)[:200]})", report) from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise PneumoViewError(f"{path.name} is not a PneumoView batch manifest", report)
    check_manifest(data, f"{report}: manifest {path.name}")
    return data


class RunState(str, enum.Enum):
    """What a manifest says of its run. Only a finished run is complete; the other two are
    what ``--resume`` continues (and merge refuses)."""

    FINISHED = "finished"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # stopped without saying so: killed, crashed, power cut

    def __str__(self) -> str:
        return self.value


def run_state(manifest: Mapping[str, Any]) -> RunState:
    """The :class:`RunState` of a checked manifest."""
    if manifest.get("cancelled"):
        return RunState.CANCELLED
    return RunState.FINISHED if manifest.get("finished") else RunState.INTERRUPTED


#: Integer manifest fields: (smallest, largest or None); required ones are marked.
_MANIFEST_INTS: dict[str, tuple[int, int | None, bool]] = {
    "shard_index": (0, MAX_SHARDS - 1, True),
    "shard_count": (1, MAX_SHARDS, True),
    "files": (0, None, True),
    "rows": (0, None, False),
    "report_format": (1, None, False),
}


def check_manifest(data: Mapping[str, Any], where: str) -> None:
    """Types and ranges of every field the resume and the merge rely on, with a message
    naming the field (a hand-edited or damaged manifest must not merge nothing, exhaust
    memory or raise a traceback)."""

    def bad(field: str, what: str) -> PneumoViewError:
        return PneumoViewError(f"{where}: {field!r} {what}, got {data.get(field)!r:.80}")

    for field, (low, high, required) in _MANIFEST_INTS.items():
        if field not in data:
            if required:
                raise PneumoViewError(f"{where}: the field {field!r} is missing")
            continue
        value = data[field]
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(field, "must be an integer")
        if value < low or (high is not None and value > high):
            raise bad(field, f"must be in {low}..{'' if high is None else high}")
    if data["shard_index"] >= data["shard_count"]:
        raise bad("shard_index", f"must be below shard_count ({data['shard_count']})")
    if data.get("report_format", 1) > REPORT_FORMAT:
        raise PneumoViewError(f"{where}: written by a newer PneumoView (report format "
                              f"{data['report_format']}; this version reads up to "
                              f"{REPORT_FORMAT}); use that version")
    for field in ("finished", "cancelled"):
        if field in data and not isinstance(data[field], bool):
            raise bad(field, "must be true or false")
    if "finished" not in data:
        raise PneumoViewError(f"{where}: the field 'finished' is missing")
    threshold = data.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) \
            or not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
        raise bad("threshold", "must be a number in [0, 1]")
    if not isinstance(data.get("model_sha256"), str):
        raise bad("model_sha256", "must be a text (the model's sha256)")
    if data.get("model_id") is not None and not isinstance(data["model_id"], str):
        raise bad("model_id", "must be a text (the model's identity)")
    _check_manifest_gate(data, where)
    from pneumoview.core.oppoints import check_manifest_policy

    check_manifest_policy(data, where)


def _check_manifest_gate(data: Mapping[str, Any], where: str) -> None:
    """The manifest's ``gate`` (format 5): absent (the tag gate alone), "content" or "tags"."""
    gate = data.get("gate")
    if gate is not None and gate not in ("content", "tags"):
        raise PneumoViewError(f"{where}: 'gate' must be 'content' or 'tags', got {gate!r:.80}")


# --------------------------------------------------------------------------------------------
# Merging shards


@dataclass(frozen=True)
class MergeResult:
    output: str
    shards: int
    rows: int
    model_sha256: str
    threshold: float


def merge_reports(inputs: Sequence[PathType], output: PathType) -> MergeResult:
    """Join the reports of shards 0..N-1 into one report sorted by relpath.

    Fails with a :class:`PneumoViewError` naming the problem when a manifest is damaged
    (:func:`check_manifest`), a shard is missing or given twice, a shard did not finish, shards
    used different models/thresholds/shard counts, a row is in the wrong shard, or a file
    appears twice.
    """
    if not inputs:
        raise PneumoViewError("no shard reports given")
    check_output_target(output)
    shards = _ShardSet()
    for report in inputs:
        shards.add(report, output)
    n = shards.check_agree()
    gate = shards.one_gate()
    policy = _one_policy([m for _, m in shards.by_index.values()])
    merged = shards.merged_rows(n)
    write_report_atomic(output, merged)
    first = shards.by_index[0][1]
    write_manifest(output, {
        "shard_index": 0, "shard_count": 1, "files": len(merged),
        "model_sha256": first.get("model_sha256"),
        **({"model_id": next(iter(shards.model_ids))} if shards.model_ids else {}),
        "report_format": REPORT_FORMAT, "model_label": first.get("model_label"),
        "threshold": first.get("threshold"), "finished": True, "cancelled": False,
        **policy, "gate": gate,
        "merged_from": [escape_path(os.path.basename(shards.by_index[k][0]))
                        for k in range(n)],
    })
    return MergeResult(str(output), n, len(merged), str(first.get("model_sha256")),
                       float(first.get("threshold")))  # type: ignore[arg-type]


class _ShardSet:
    """The shard reports given to :func:`merge_reports`, checked as they are added."""

    def __init__(self) -> None:
        self.by_index: dict[int, tuple[str, dict[str, Any]]] = {}
        self.counts: set[int] = set()
        self.models: set[str] = set()
        self.model_ids: set[str] = set()
        self.thresholds: set[float] = set()
        self.gates: set[str] = set()

    def add(self, report: PathType, output: PathType) -> None:
        """Read one shard's manifest; refuse the output itself, a duplicate, an unfinished run."""
        if os.path.realpath(report) == os.path.realpath(output):
            raise OutputIsInputError("the output is one of the inputs", output)
        m = read_manifest(report)
        assert m is not None
        k, n = m["shard_index"], m["shard_count"]
        if k in self.by_index:
            raise PneumoViewError(f"shard {k}/{n} given twice ({self.by_index[k][0]} and "
                                  f"{report})")
        state = run_state(m)
        if state is not RunState.FINISHED:
            raise ReportUnfinishedError(
                f"shard {k}/{n} did not finish (its manifest says "
                f"{'cancelled' if state is RunState.CANCELLED else 'unfinished'})", report,
                shard=(k, n))
        self.by_index[k] = (str(report), m)
        self.counts.add(n)
        self.models.add(m["model_sha256"])
        if m.get("model_id"):  # format-1 manifests have none: the weights' sha256 decides
            self.model_ids.add(str(m["model_id"]))
        self.thresholds.add(float(m["threshold"]))
        self.gates.add(str(m.get("gate") or "tags"))  # before format 5: the tag gate alone

    def one_gate(self) -> str:
        """How the shards were gated ("content" or "tags"); refuses shards gated differently."""
        if len(self.gates) != 1:
            raise PneumoViewError("refusing to merge reports gated differently (some with the "
                                  "content gate, some with the tag gate only: --no-gate)")
        return next(iter(self.gates))

    def check_agree(self) -> int:
        """The shard count N, once the manifests agree on it, the model and the threshold and
        every shard 0..N-1 is present."""
        if len(self.counts) != 1:
            raise PneumoViewError("the reports come from different shard counts "
                                  f"{sorted(self.counts)}")
        if len(self.models) != 1:
            raise PneumoViewError("refusing to merge reports made with different models "
                                  f"({', '.join(sorted(s[:12] for s in self.models))})")
        if len(self.model_ids) > 1:
            raise PneumoViewError("refusing to merge reports made with different model_ids "
                                  "(the same weights with other metadata: "
                                  f"{', '.join(sorted(s[:17] for s in self.model_ids))})")
        if len(self.thresholds) != 1:
            raise PneumoViewError("refusing to merge reports made with different thresholds "
                                  f"({', '.join(repr(t) for t in sorted(self.thresholds))})")
        n = next(iter(self.counts))
        if len(self.by_index) < n:
            raise _missing_shards(self.by_index, n)
        return n

    def merged_rows(self, n: int) -> list[dict[str, str]]:
        """Every shard's rows, sorted by relpath, each file once and in its own shard."""
        seen: dict[str, int] = {}
        merged: list[dict[str, str]] = []
        for k in range(n):
            report, m = self.by_index[k]
            rows = read_report(report, allow_partial_tail=False)
            if len(rows) != m["files"]:
                raise ReportUnfinishedError(f"shard {k}/{n} has {len(rows)} rows but its "
                                            f"manifest counts {m['files']} files", report,
                                            shard=(k, n))
            for row in rows:
                self._check_row(row, k, n, seen, report)
                seen[row["relpath"]] = k
                merged.append(row)
        merged.sort(key=lambda r: r["relpath"])
        return merged

    def _check_row(self, row: dict[str, str], k: int, n: int, seen: dict[str, int],
                   report: str) -> None:
        rel = row["relpath"]
        if rel in seen:
            raise PneumoViewError(f"file {rel!r} appears twice (shards {seen[rel]} and "
                                  f"{k}); the shards overlap - rerun them with the same N")
        if n > 1 and shard_of(rel, n) != k:
            raise PneumoViewError(f"file {rel!r} belongs to shard {shard_of(rel, n)}/{n} "
                                  f"but is in shard {k}'s report")
        if row.get("model_id"):
            self.model_ids.add(row["model_id"])
            if len(self.model_ids) > 1:
                raise PneumoViewError(f"file {rel!r} was scored with another model_id "
                                      f"({row['model_id'][:17]}...) than the other rows; "
                                      "refusing to merge", report)


def _one_policy(manifests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The shards' common operating points and profile; refuses shards made under others."""
    from pneumoview.core import oppoints

    first = oppoints.manifest_policy(manifests[0])
    for m in manifests[1:]:
        why = oppoints.policy_mismatch(first, oppoints.manifest_policy(m))
        if why:
            raise PneumoViewError(why.replace("the report used", "one shard used")
                                  .replace("this run", "another"))
    return first


def _missing_shards(given: Mapping[int, Any], n: int, show: int = 10) -> ShardError:
    """Which shards are missing, the first ``show`` of them (``n`` may be large)."""
    missing: list[int] = []
    for k in range(n):
        if k not in given:
            missing.append(k)
            if len(missing) == show:
                break
    total = n - len(given)
    names = ", ".join(f"{k}/{n}" for k in missing)
    more = f" and {total - len(missing)} more" if total > len(missing) else ""
    have = ", ".join(f"{k}/{n}" for k in sorted(given))
    return ShardError(f"shard(s) {names}{more} missing (given: {have})",
                      missing=tuple(k for k in range(n) if k not in given))
