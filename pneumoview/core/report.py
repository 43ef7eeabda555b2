"""The batch report: a CSV written row by row, resumable, shardable and mergeable.

Why it is built this way:

* rows are flushed as they are written, so a crash or ``kill -9`` loses at most the rows still
  in flight; every row is one line (messages are flattened), so a half-written last line is
  simply everything after the last newline, and :func:`load_for_resume` cuts it off;
* resuming keeps only rows whose file is unchanged (same relpath, size and mtime_ns), refuses to
  mix models or thresholds, and rewrites the report atomically before appending, so the finished
  report has exactly one row per file;
* a manifest JSON beside the report (``REPORT.manifest.json``) says which shard it is, how many
  files the shard holds, with which model and threshold, and whether the run finished (or was
  cancelled), so :func:`merge_reports` can refuse a missing, doubled, unfinished or mixed shard.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from pneumoview.core.errors import PneumoViewError

#: Report columns, in order. The first 15 are the documented interface; the rest are extras.
#: Columns are only ever appended: a report of an older format has a prefix of these.
COLUMNS: tuple[str, ...] = (
    "path", "relpath", "file_size", "mtime_ns", "status", "probability", "flagged", "threshold",
    "message", "patient_id", "study_instance_uid", "series_instance_uid", "sop_instance_uid",
    "view_position", "model_sha256",
    "study_date", "modality", "frame", "model_label", "elapsed_ms",
    "model_id",
)
#: The manifest's ``report_format``: 1 = the first 20 columns (no field in the manifest), 2 =
#: ``model_id`` appended. Each later appended column bumps it.
REPORT_FORMAT = 2
#: The columns of format 1; every report has at least these.
LEGACY_COLUMNS = COLUMNS[:20]

STATUSES = ("scored", "not_scored", "skipped", "error")
MANIFEST_FORMAT = "pneumoview-batch-manifest-1"

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
#: corrupt header can hold megabytes in one element (found by the fuzzer), which made the report
#: unreadable by Python's csv module (128 KiB field limit), and so --resume and merge-reports.
MAX_FIELD_CHARS = 1024


def _one_line(text: Any) -> str:
    return " ".join(str(text).split()) if text is not None else ""


def format_value(key: str, value: Any) -> str:
    """A row value as report text (floats fixed, booleans true/false, None empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if key == "probability" and isinstance(value, float):
        return f"{value:.6f}" if math.isfinite(value) else ""
    if key == "threshold" and isinstance(value, float):
        return f"{value:.6g}"
    if key == "elapsed_ms" and isinstance(value, float):
        return f"{value:.1f}"
    text = _one_line(value)
    if len(text) > MAX_FIELD_CHARS and key not in ("path", "relpath"):
        text = text[:MAX_FIELD_CHARS - 3] + "..."
    return text


def format_row(row: Mapping[str, Any]) -> list[str]:
    return [format_value(k, row.get(k)) for k in COLUMNS]


def parse_row(row: Mapping[str, str]) -> dict[str, Any]:
    """Report text back to typed values (the GUI and merge use it)."""
    out: dict[str, Any] = dict(row)
    for key in ("file_size", "mtime_ns", "frame"):
        out[key] = int(row[key]) if row.get(key, "").lstrip("-").isdigit() else None
    for key in ("probability", "threshold", "elapsed_ms"):
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
    except FileNotFoundError:
        return True
    except OSError:
        return True


def _write_error(path: PathType, exc: OSError) -> PneumoViewError:
    import errno

    if exc.errno == errno.ENOSPC:
        why = "the disk is full (no space left on device); free space and run again with --resume"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "permission denied or read-only file system; choose another --output"
    else:
        why = f"{exc.strerror or exc}"
    return PneumoViewError(f"cannot write the report: {why}", path)


class ReportWriter:
    """Append rows to a report CSV, flushing each batch so a kill loses nothing written."""

    def __init__(self, path: PathType, *, append: bool = False) -> None:
        self.path = str(path)
        self.rows_written = 0
        regular = is_regular_target(self.path)
        mode = "a" if (append and regular) else "w"
        try:
            self._fh: io.TextIOWrapper = open(  # noqa: SIM115 - closed in close()
                self.path, mode, encoding="utf-8", newline="")
        except OSError as exc:
            raise _write_error(self.path, exc) from exc
        self._csv = csv.writer(self._fh, lineterminator="\n")
        try:
            if mode == "w" or self._fh.tell() == 0:
                self._csv.writerow(COLUMNS)
                self._fh.flush()
        except OSError as exc:
            self._abandon()
            raise _write_error(self.path, exc) from exc

    def write_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        try:
            n = 0
            for row in rows:
                self._csv.writerow(format_row(row))
                n += 1
            self._fh.flush()
            self.rows_written += n
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
            if is_regular_target(self.path):
                os.fsync(self._fh.fileno())
            self._fh.close()
        except OSError as exc:
            self._abandon()
            raise _write_error(self.path, exc) from exc


def write_report_atomic(path: PathType, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write a whole report to a temporary file beside ``path`` and rename it into place."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(COLUMNS)
            for row in rows:
                writer.writerow(format_row(row))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise _write_error(path, exc) from exc


# --------------------------------------------------------------------------------------------
# Reading and resuming


def read_report(path: PathType, *, allow_partial_tail: bool = True) -> list[dict[str, str]]:
    """Rows of a report as text dicts; a half-written last line is dropped (when allowed)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise PneumoViewError("report not found", path) from None
    except OSError as exc:
        raise PneumoViewError(f"cannot read the report ({exc.strerror or exc})", path) from exc
    if data and not data.endswith(b"\n"):
        if not allow_partial_tail:
            raise PneumoViewError("the report's last line is incomplete (the run was "
                                  "interrupted); finish it with --resume first", path)
        data = data[: data.rfind(b"\n") + 1]
    text = data.decode("utf-8", errors="replace")
    if not text.strip():
        return []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise PneumoViewError(f"the report cannot be parsed ({exc})", path) from None
    if header is None:
        return []
    columns = tuple(header)
    if len(columns) < len(LEGACY_COLUMNS) or columns != COLUMNS[:len(columns)]:
        raise PneumoViewError("not a PneumoView batch report (unexpected columns); choose "
                              "another --output", path)
    rows = []
    try:
        lines = list(reader)
    except csv.Error as exc:
        raise PneumoViewError(f"the report cannot be parsed ({exc})", path) from None
    missing = dict.fromkeys(COLUMNS[len(columns):], "")  # an older format: empty new columns
    for i, values in enumerate(lines):
        if len(values) != len(columns):
            if i == len(lines) - 1 and allow_partial_tail:
                break  # an interrupted last row
            raise PneumoViewError(f"report row {i + 2} is malformed ({len(values)} fields, "
                                  f"expected {len(columns)})", path)
        rows.append({**dict(zip(columns, values, strict=True)), **missing})
    return rows


def _refuse_model_id(have: str, want: str, path: PathType) -> None:
    """Refuse a report whose model_id differs: same weights, other behaviour (metadata)."""
    if have and want and have != want:
        raise PneumoViewError(
            f"refusing to mix models: the report was made with model_id {have[:17]}..., this "
            f"run uses {want[:17]}... (the same weights with other metadata: calibration, "
            "threshold or input settings differ); write to a new --output or use the same "
            "--model", path)


def load_for_resume(path: PathType, *, model_sha256: str, threshold: float,
                    shard: tuple[int, int] | None,
                    model_id: str = "") -> dict[str, dict[str, str]]:
    """Rows already in a report (by relpath), after checking they can be continued.

    Refuses (``PneumoViewError``) a report made with another model (weights sha256, or
    ``model_id`` where the report has one: reports of format 1 have none and resume when the
    weights match) or threshold, or for another shard: mixing them would give one report with
    two meanings.
    """
    if not os.path.exists(path):
        return {}
    if not is_regular_target(path):
        raise PneumoViewError("--resume needs a regular report file", path)
    manifest = read_manifest(path, required=False)
    if manifest is not None:
        have = (manifest.get("shard_index"), manifest.get("shard_count"))
        want = shard or (0, 1)
        if have != (want[0], want[1]):
            raise PneumoViewError(
                f"the report was written for shard {have[0]}/{have[1]}, this run is shard "
                f"{want[0]}/{want[1]}; resume with the same --shard", path)
        _refuse_model_id(str(manifest.get("model_id") or ""), model_id, path)
    rows = read_report(path)
    done: dict[str, dict[str, str]] = {}
    for row in rows:
        sha = row["model_sha256"]
        if sha and sha != model_sha256:
            raise PneumoViewError(
                f"refusing to mix models: the report was made with model sha256 {sha[:12]}..., "
                f"this run uses {model_sha256[:12]}...; write to a new --output or use the "
                "same --model", path)
        _refuse_model_id(row.get("model_id", ""), model_id, path)
        try:
            row_thr = float(row["threshold"]) if row["threshold"] else None
        except ValueError:
            row_thr = None
        if row_thr is not None and abs(row_thr - threshold) > 1e-9:
            raise PneumoViewError(
                f"refusing to mix thresholds: the report used {row_thr:g}, this run "
                f"{threshold:g}; write to a new --output or pass --threshold {row_thr:g}", path)
        done[row["relpath"]] = row  # a later row for the same file wins
    return done


# --------------------------------------------------------------------------------------------
# Manifest


def manifest_path(report: PathType) -> Path:
    p = Path(report)
    return p.with_name(p.name + ".manifest.json")


def write_manifest(report: PathType, data: Mapping[str, Any]) -> Path:
    """Write the manifest atomically (temp file + rename) beside ``report``."""
    target = manifest_path(report)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    payload = {"format": MANIFEST_FORMAT, **data, "updated": time.strftime(
        "%Y-%m-%dT%H:%M:%S%z")}
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise _write_error(target, exc) from exc
    return target


def read_manifest(report: PathType, *, required: bool = True) -> dict[str, Any] | None:
    path = manifest_path(report)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not required:
            return None
        raise PneumoViewError(f"its manifest {path.name} is missing, so the shard cannot be "
                              "checked; rerun the shard (pneumoview flag ... --shard K/N "
                              "--resume)", report) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PneumoViewError(f"unreadable manifest {path.name} ({exc})", report) from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise PneumoViewError(f"{path.name} is not a PneumoView batch manifest", report)
    return data


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

    Fails with a :class:`PneumoViewError` naming the problem when a shard is missing or given
    twice, a shard did not finish, shards used different models/thresholds/shard counts, a row
    is in the wrong shard, or a file appears twice.
    """
    if not inputs:
        raise PneumoViewError("no shard reports given")
    out_real = os.path.realpath(output)
    by_index: dict[int, tuple[str, dict[str, Any]]] = {}
    counts: set[int] = set()
    models: set[str] = set()
    model_ids: set[str] = set()
    thresholds: set[float] = set()
    for report in inputs:
        if os.path.realpath(report) == out_real:
            raise PneumoViewError("the output is one of the inputs; choose another --output",
                                  output)
        m = read_manifest(report)
        assert m is not None
        k, n = int(m.get("shard_index", -1)), int(m.get("shard_count", 0))
        if k in by_index:
            raise PneumoViewError(f"shard {k}/{n} given twice ({by_index[k][0]} and {report})")
        if m.get("cancelled") or not m.get("finished"):
            raise PneumoViewError(f"shard {k}/{n} did not finish (its manifest says "
                                  f"{'cancelled' if m.get('cancelled') else 'unfinished'}); "
                                  "finish it with pneumoview flag ... --resume", report)
        by_index[k] = (str(report), m)
        counts.add(n)
        models.add(str(m.get("model_sha256", "")))
        if m.get("model_id"):  # format-1 manifests have none: the weights' sha256 decides
            model_ids.add(str(m["model_id"]))
        thresholds.add(float(m.get("threshold", float("nan"))))
    if len(counts) != 1:
        raise PneumoViewError(f"the reports come from different shard counts {sorted(counts)}")
    if len(models) != 1:
        raise PneumoViewError("refusing to merge reports made with different models "
                              f"({', '.join(sorted(s[:12] for s in models))})")
    if len(model_ids) > 1:
        raise PneumoViewError("refusing to merge reports made with different model_ids (the "
                              "same weights with other metadata: "
                              f"{', '.join(sorted(s[:17] for s in model_ids))})")
    if len(thresholds) != 1:
        raise PneumoViewError("refusing to merge reports made with different thresholds "
                              f"({', '.join(f'{t:g}' for t in sorted(thresholds))})")
    n = counts.pop()
    missing = [k for k in range(n) if k not in by_index]
    if missing:
        have = ", ".join(f"{k}/{n}" for k in sorted(by_index))
        raise PneumoViewError(
            f"shard(s) {', '.join(f'{k}/{n}' for k in missing)} missing (given: {have}); run "
            "them (pneumoview flag FOLDER --shard K/N) and pass every shard's report")
    seen: dict[str, int] = {}
    merged: list[dict[str, str]] = []
    for k in range(n):
        report, m = by_index[k]
        rows = read_report(report, allow_partial_tail=False)
        if len(rows) != int(m.get("files", -1)):
            raise PneumoViewError(f"shard {k}/{n} has {len(rows)} rows but its manifest counts "
                                  f"{m.get('files')} files; rerun it with --resume", report)
        for row in rows:
            rel = row["relpath"]
            if rel in seen:
                raise PneumoViewError(f"file {rel!r} appears twice (shards {seen[rel]} and "
                                      f"{k}); the shards overlap - rerun them with the same N")
            if n > 1 and shard_of(rel, n) != k:
                raise PneumoViewError(f"file {rel!r} belongs to shard {shard_of(rel, n)}/{n} "
                                      f"but is in shard {k}'s report")
            if row.get("model_id"):
                model_ids.add(row["model_id"])
                if len(model_ids) > 1:
                    raise PneumoViewError(f"file {rel!r} was scored with another model_id "
                                          f"({row['model_id'][:17]}...) than the other rows; "
                                          "refusing to merge", report)
            seen[rel] = k
            merged.append(row)
    merged.sort(key=lambda r: r["relpath"])
    write_report_atomic(output, merged)
    first = by_index[0][1]
    write_manifest(output, {
        "shard_index": 0, "shard_count": 1, "files": len(merged),
        "model_sha256": first.get("model_sha256"),
        **({"model_id": next(iter(model_ids))} if model_ids else {}),
        "report_format": REPORT_FORMAT, "model_label": first.get("model_label"),
        "threshold": first.get("threshold"), "finished": True, "cancelled": False,
        "merged_from": [os.path.basename(by_index[k][0]) for k in range(n)],
    })
    return MergeResult(str(output), n, len(merged), str(first.get("model_sha256")),
                       float(first.get("threshold")))
