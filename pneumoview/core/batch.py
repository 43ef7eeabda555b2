"""Batch flagging of a whole folder: the one engine behind ``pneumoview flag`` and the GUI panel.

A pipeline, not a loop: worker processes (:mod:`pneumoview.core.procpool`) read, gate, decode and
prepare files (contract steps 1-4) while the main process runs one hot model on batches of ready
inputs. Decoding in separate processes gives real parallelism (pydicom and numpy hold the GIL for
much of a decode) and isolation: a codec that segfaults, hangs or eats memory costs one ``error``
row and a worker restart, never the run.

Torch's thread count follows the one rule in :mod:`pneumoview.core.threads`: cores minus the
other busy workers. The decode workers are declared busy by how busy they really were over the
last batches (the time-averaged number of workers with a task), so torch gets most cores when
the model is the bottleneck and leaves cores to the decoders when decoding is; busy GUI workers
(the viewer's own decode) are counted too, so the viewer comes first.

The report (:mod:`pneumoview.core.report`) gets one row per file found under the folder, written
and flushed as results arrive. Nothing here imports Qt, and torch only once a model is loaded.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pneumoview.core import report as rep
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.gatepolicy import (
    GATE_NOT_RUN,
    GateMode,
    effective_gate,
    gate_fields,
    gate_note,
    refuses,
)
from pneumoview.core.procpool import default_memory_limit_mb

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from pneumoview.core.inference import Engine
    from pneumoview.core.inputgate import GateVerdict

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
DEFAULT_TIMEOUT_S = 120.0
DECODE_TARGET = "pneumoview.core.batch:decode_task"

SCORED, NOT_SCORED, SKIPPED, ERROR = "scored", "not_scored", "skipped", "error"


# --------------------------------------------------------------------------------------------
# Worker side: one file -> header facts and the model input (runs in a decode process)


def _has_dicom_magic(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _sop_class_name(header: Any) -> str:
    """The SOP class's name ('Digital X-Ray Image Storage - For Presentation'), or ''."""
    import pydicom

    from pneumoview.core.dicomio import header_text

    uid = header_text(header, "SOPClassUID")
    if not uid:
        meta = getattr(header, "file_meta", None)
        uid = header_text(meta, "MediaStorageSOPClassUID") if meta is not None else ""
    if not uid:
        return ""
    name = pydicom.uid.UID(uid).name
    return "" if name == uid else name


def silence_warnings() -> None:
    """No Python warnings on stderr from this process (pydicom warns about odd headers without
    naming the file; the row's message says what matters). For ``--quiet``."""
    import warnings

    warnings.simplefilter("ignore")


def decode_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Read, gate, decode and prepare one file; runs in a worker process.

    Returns a small dict: ``status`` (scored means "ready for the model"), ``message``, the
    header facts, ``input`` (float32 ``(S, S)`` in [0, 1] or None), per-stage CPU seconds and
    the wall time (``wall_ms``). Only :class:`PneumoViewError` escapes (the pool turns anything
    else into an error row).
    """
    t0 = time.perf_counter()
    if payload.get("quiet"):
        silence_warnings()
    out = _decode_task(payload)
    out["wall_ms"] = (time.perf_counter() - t0) * 1000
    return out


def _decode_task(payload: dict[str, Any]) -> dict[str, Any]:
    from pneumoview.core import contract, dicomio
    from pneumoview.core.gate import not_scorable_reason

    path = str(payload["path"])
    size = int(payload.get("input_size", contract.INPUT_SIZE))
    max_bytes = int(payload.get("max_bytes", dicomio.DEFAULT_MAX_PIXEL_BYTES))
    c0 = time.process_time()
    out: dict[str, Any] = {"status": ERROR, "message": "", "input": None,
                           "cpu_decode_s": 0.0, "cpu_input_s": 0.0}
    if payload.get("file_size") == 0:
        out.update(status=SKIPPED, message="empty file (0 bytes): not a DICOM file")
        return out
    try:
        # one parse serves the gate and the decoder; pixel data over 16 MB is read only when
        # decoded, so a large image that is refused or over the size guard costs no pixel read
        header = dicomio.read_dataset(path)
    except PneumoViewError as exc:
        not_dicom = exc.reason.startswith("not a DICOM file") or not _has_dicom_magic(path)
        if not_dicom and not exc.reason.startswith(("file not found", "permission denied")):
            out.update(status=SKIPPED, message="not a DICOM file")
        else:
            out.update(status=ERROR, message=exc.reason)
        out["cpu_decode_s"] = time.process_time() - c0
        return out
    text = dicomio.header_text
    out.update(
        patient_id=text(header, "PatientID"), study_instance_uid=text(header, "StudyInstanceUID"),
        series_instance_uid=text(header, "SeriesInstanceUID"),
        sop_instance_uid=text(header, "SOPInstanceUID"),
        view_position=text(header, "ViewPosition"), study_date=text(header, "StudyDate"),
        modality=text(header, "Modality"), frame=0)
    # header-only gate first: a lateral or a CT is refused without decoding its pixels; only
    # the colour check needs the pixels (a grey film stored as RGB passes)
    reason = not_scorable_reason(header, dicomio.number_of_frames(header))
    if reason and not reason.startswith("colour image"):
        out.update(status=NOT_SCORED, message=reason,
                   cpu_decode_s=time.process_time() - c0)
        return out
    try:
        decoded = dicomio.decode(path, ds=header, max_bytes=max_bytes)
    except PneumoViewError as exc:
        out.update(status=ERROR, message=exc.reason, cpu_decode_s=time.process_time() - c0)
        if exc.reason.startswith(("has no image", "has no pixel data")):
            # nothing to score: fine for a report or a presentation state, but an image
            # object without its pixels is a truncated or corrupt file
            sop = _sop_class_name(header)
            if "Image Storage" in sop:
                out["message"] = f"{exc.reason}: a {sop} object without its image, the file " \
                                 "is probably truncated or corrupt"
            else:
                out.update(status=NOT_SCORED,
                           message=f"not an image object ({sop or 'no pixel data'})")
        return out
    c1 = time.process_time()
    out["cpu_decode_s"] = c1 - c0
    reason = not_scorable_reason(decoded.header, decoded.n_frames, values=decoded.values)
    if reason:
        out.update(status=NOT_SCORED, message=reason)
        return out
    try:
        x = contract.model_input(decoded.values, decoded.invert, size=size)
    except ValueError as exc:
        out.update(status=ERROR, message=f"cannot prepare the image for the model: {exc}")
        return out
    finally:
        out["cpu_input_s"] = time.process_time() - c1
    out.update(status=SCORED, input=x, shape=decoded.shape)
    if payload.get("gate_statistics"):
        # the content gate's rules read these; computed here, in parallel, not in the model's
        # process (pure numpy on the model input)
        from pneumoview.core.inputgate import content_statistics

        out["gate_statistics"] = content_statistics(x)
    out["cpu_input_s"] = time.process_time() - c1
    return out


# --------------------------------------------------------------------------------------------
# Options, progress, summary


@dataclass
class BatchOptions:
    """What to flag and how; the CLI flags map one to one."""

    root: str | PathLike[str]
    output: str | PathLike[str] | None = None
    model_dir: str | PathLike[str] | None = None
    device: str = "auto"
    threshold: float | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int | None = None
    resume: bool = False
    overwrite: bool = False
    shard: tuple[int, int] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_limit_mb: int | None = -1  # -1: default_memory_limit_mb(workers); None/0: none
    max_image_mb: int = 1024
    decode_target: str = DECODE_TARGET
    follow_symlinks: bool = True
    nice: int = 0  # >0 lowers the decode workers' priority (the GUI: the viewer comes first)
    retry_errors: bool = True  # --resume scores each file of an `error` row once more
    quiet: bool = False  # no warnings from the decoders on stderr (pydicom's, numpy's)
    gate_mode: GateMode = GateMode.CONTENT  # TAGS_ONLY: --no-gate (the tag gate alone)


@dataclass
class BatchProgress:
    done: int
    total: int
    scored: int
    flagged: int
    not_scored: int
    skipped: int
    errors: int
    elapsed_s: float
    rate: float  # files per second in this run
    eta_s: float | None
    phase: str = "flagging"  # "scanning" | "loading model" | "flagging" | "finished"


@dataclass
class BatchSummary:
    """How a run ended. ``counts`` and ``flagged`` are the whole report's (rows kept from a
    resumed report included); ``run_counts`` and ``run_flagged`` this run's rows alone."""

    root: str
    output: str | None
    manifest: str | None
    total: int
    done: int
    resumed: int
    counts: dict[str, int]
    flagged: int
    cancelled: bool
    finished: bool
    elapsed_s: float
    rate: float
    model_label: str
    model_sha256: str
    threshold: float
    workers: int
    restarts: int
    stage_cpu_s: dict[str, float] = field(default_factory=dict)
    run_counts: dict[str, int] = field(default_factory=dict)
    run_flagged: int = 0
    retried: int = 0  # error rows of the resumed report scored again
    unlisted_folders: int = 0  # folders that could not be listed (each an error row)
    gate: str = "tags"  # the manifest's gate: "content" (tag + content gate) or "tags"
    gate_note: str = ""  # gatepolicy.gate_note: why a run was gated by tags alone


# --------------------------------------------------------------------------------------------
# Scanning


class _OwnOutputs:
    """The files the scan must not read: the report being written, its manifest and lock, their
    temporary files."""

    def __init__(self, output: str | None) -> None:
        self.names: dict[str, str] = {}
        self.prefixes: tuple[str, ...] = ()
        self.folder = ""
        if output is None:
            return
        out = Path(output)
        for p in (out, rep.manifest_path(out), rep.lock_path(out)):
            self.names[p.name] = os.path.realpath(p)
        self.prefixes = tuple(f".{name}.tmp-" for name in self.names)
        self.folder = os.path.realpath(out.parent)

    def __contains__(self, path: str) -> bool:
        name = os.path.basename(path)
        if name in self.names:
            return os.path.realpath(path) == self.names[name]
        if self.prefixes and name.startswith(self.prefixes):
            return os.path.realpath(os.path.dirname(path)) == self.folder
        return False


class ScanCancelled(Exception):
    """The scan was asked to stop (a cancelled GUI batch over a huge archive)."""


#: ``(path, relpath, reason, is_folder)`` of what the scan met but cannot flag.
ScanIssue = tuple[str, str, str, bool]


def scan(root: str | PathLike[str], output: str | PathLike[str] | None = None,
         follow_symlinks: bool = True,
         cancel: Callable[[], bool] | None = None,
         issues: list[ScanIssue] | None = None) -> list[tuple[str, str]]:
    """``(absolute path, '/'-separated relpath)`` of every regular file under ``root``, sorted.

    Uses the indexer's symlink-loop-safe walk; skips the report being written (and its
    manifest, lock and temporary files) when it lies inside ``root``. What cannot be flagged
    is appended to ``issues``: folders that cannot be listed (relpath ending in ``/``),
    dangling links and special files (FIFOs, sockets, devices: only ``stat``-ed, never
    opened). ``cancel()`` is polled every 500 files (:class:`ScanCancelled`).
    """
    from pneumoview.core.indexer import iter_files

    root_s = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root_s):
        raise PneumoViewError("not a folder (or not found)", root_s)
    own = _OwnOutputs(None if output is None else os.path.abspath(os.fspath(output)))
    found: list[ScanIssue] = []

    def on_issue(path: str, reason: str, is_folder: bool) -> None:
        if is_folder and os.path.abspath(path) == root_s:
            raise PneumoViewError(f"{reason}; nothing to flag", root_s)
        ap = os.path.abspath(path)
        if ap in own:
            return
        rel = os.path.relpath(ap, root_s).replace(os.sep, "/") + ("/" if is_folder else "")
        found.append((ap, rel, reason, is_folder))

    files = []
    for i, p in enumerate(iter_files(root_s, follow_symlinks=follow_symlinks,
                                     on_issue=on_issue)):
        if cancel is not None and i % 500 == 499 and cancel():
            raise ScanCancelled
        ap = os.path.abspath(p)
        if ap in own:
            continue
        rel = os.path.relpath(ap, root_s).replace(os.sep, "/")
        files.append((ap, rel))
    files.sort(key=lambda t: t[1])
    if issues is not None:
        issues.extend(sorted(found, key=lambda t: t[1]))
    return files


# --------------------------------------------------------------------------------------------
# The run


class _Stats:
    """Counts of the whole report (``counts``) and of this run's rows (``run_counts``)."""

    def __init__(self, total: int, kept: list[dict[str, str]]) -> None:
        self.total = total
        self.done = len(kept)
        self.start_done = len(kept)
        self.t0 = time.monotonic()
        self.counts = {SCORED: 0, NOT_SCORED: 0, SKIPPED: 0, ERROR: 0}
        self.run_counts = dict(self.counts)
        self.flagged = self.run_flagged = 0
        for row in kept:
            self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
            self.flagged += row.get("flagged") == "true"

    def add(self, row: dict[str, Any]) -> None:
        self.done += 1
        for counts in (self.counts, self.run_counts):
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        if row.get("flagged"):
            self.flagged += 1
            self.run_flagged += 1

    def progress(self, phase: str = "flagging") -> BatchProgress:
        elapsed = time.monotonic() - self.t0
        n = self.done - self.start_done
        rate = n / elapsed if elapsed > 0 else 0.0
        remaining = self.total - self.done
        eta = remaining / rate if rate > 0 else None
        return BatchProgress(self.done, self.total, self.counts[SCORED], self.flagged,
                             self.counts[NOT_SCORED], self.counts[SKIPPED],
                             self.counts[ERROR], elapsed, rate, eta, phase)


class _BusyEstimate:
    """Time-averaged number of busy decode workers (an exponential moving average)."""

    def __init__(self, initial: float) -> None:
        self.value = initial
        self._last_t = time.monotonic()
        self._last_busy_s = 0.0

    def update(self, busy_seconds: float) -> float:
        now = time.monotonic()
        dt = now - self._last_t
        if dt > 0.05:
            sample = (busy_seconds - self._last_busy_s) / dt
            self.value = 0.5 * self.value + 0.5 * sample
            self._last_t, self._last_busy_s = now, busy_seconds
        return self.value


def _base_row(path: str, rel: str, st: os.stat_result | None, threshold: float,
              info: Any) -> dict[str, Any]:
    return {
        "path": path, "relpath": rel,
        "file_size": None if st is None else st.st_size,
        "mtime_ns": None if st is None else st.st_mtime_ns,
        "status": ERROR, "probability": None, "flagged": None, "threshold": threshold,
        "message": "", "patient_id": "", "study_instance_uid": "", "series_instance_uid": "",
        "sop_instance_uid": "", "view_position": "", "model_sha256": info.weights_sha256,
        "study_date": "", "modality": "", "frame": None, "model_label": info.label,
        "elapsed_ms": None, "model_id": info.model_id,
        "gate": GATE_NOT_RUN, "atypicality": None, "atypicality_percentile": None,
    }


_FACT_KEYS = ("patient_id", "study_instance_uid", "series_instance_uid", "sop_instance_uid",
              "view_position", "study_date", "modality", "frame")


def run_batch(options: BatchOptions, *,
              on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
              on_progress: Callable[[BatchProgress], None] | None = None,
              cancel: Callable[[], bool] | None = None,
              engine: Engine | None = None,
              progress_interval_s: float = 0.25) -> BatchSummary:
    """Flag every file under ``options.root``; see the module docstring.

    ``on_rows`` receives each group of finished rows (typed values, :data:`report.COLUMNS`
    keys); ``on_progress`` a :class:`BatchProgress` at most every ``progress_interval_s``;
    ``cancel()`` is polled and, when true, the run stops, keeps what it has and marks the
    report cancelled. ``engine`` may be a loaded :class:`~pneumoview.core.inference.Engine`
    owned by the calling thread (one is made otherwise). Fatal problems (no model, output not
    writable, disk full, a report that cannot be resumed) raise :class:`PneumoViewError`;
    per-file problems are rows.
    """
    t_start = time.monotonic()
    output = None if options.output is None else os.path.abspath(os.fspath(options.output))

    # 1. the output: a regular file (or a new name); refuse to clobber a report by accident
    if output is not None:
        rep.check_output_target(output)
        if os.path.lexists(output) and not options.resume and not options.overwrite:
            raise PneumoViewError("the report already exists; pass --resume to continue it or "
                                  "--overwrite to replace it", output)
        parent = os.path.dirname(output) or "."
        if not os.path.isdir(parent):
            raise PneumoViewError("the report's folder does not exist", parent)

    # 2. the model (fatal if missing) - before anything is written
    if engine is None:
        from pneumoview.core.inference import Engine

        engine = Engine(options.model_dir, options.device, with_cam=False,
                        gate_mode=options.gate_mode)
    info = engine.info if engine.loaded else engine.load()
    assert info is not None
    threshold = float(info.threshold if options.threshold is None else options.threshold)
    if not 0.0 <= threshold <= 1.0:
        raise PneumoViewError(f"--threshold must be in [0, 1], got {threshold:g}")

    # one run at a time per report (the lock goes when this process ends, however it ends)
    with contextlib.ExitStack() as stack:
        if output is not None:
            stack.enter_context(rep.ReportLock(output))
        return _run_locked(options, output, engine, info, threshold, t_start,
                           on_rows=on_rows, on_progress=on_progress,
                           cancel=cancel or (lambda: False),
                           progress_interval_s=progress_interval_s)


def _run_locked(options: BatchOptions, output: str | None, engine: Engine, info: Any,
                threshold: float, t_start: float, *,
                on_rows: Callable[[list[dict[str, Any]]], None] | None,
                on_progress: Callable[[BatchProgress], None] | None,
                cancel: Callable[[], bool],
                progress_interval_s: float) -> BatchSummary:
    """Steps 3-5 of :func:`run_batch`, holding the report's lock."""
    from pneumoview.core.procpool import ProcessPool, TaskResult, default_workers

    root = os.path.abspath(os.fspath(options.root))
    batch_size = max(1, int(options.batch_size))

    def emit_progress(stats: _Stats, phase: str) -> None:
        if on_progress is not None:
            on_progress(stats.progress(phase))

    # 3. scan, shard, stat
    issues: list[ScanIssue] = []
    try:
        files = scan(root, output, options.follow_symlinks, cancel, issues=issues)
    except ScanCancelled:
        return BatchSummary(
            root=root, output=None, manifest=None, total=0, done=0, resumed=0,
            counts={SCORED: 0, NOT_SCORED: 0, SKIPPED: 0, ERROR: 0}, flagged=0,
            cancelled=True, finished=False, elapsed_s=time.monotonic() - t_start, rate=0.0,
            model_label=info.label, model_sha256=info.weights_sha256, threshold=threshold,
            workers=0, restarts=0)
    if options.shard is not None:
        k, n = options.shard
        files = [f for f in files if rep.shard_of(f[1], n) == k]
        issues = [f for f in issues if rep.shard_of(f[1], n) == k]
    stats_by_rel: dict[str, os.stat_result | None] = {}
    for path, rel in files:
        try:
            stats_by_rel[rel] = os.stat(path)
        except OSError:
            stats_by_rel[rel] = None

    # 4. resume: keep rows of unchanged files (error rows are retried unless told not to);
    # the writer rewrites the kept rows atomically before appending (which also repairs a
    # half-written last line)
    kept: dict[str, dict[str, str]] = {}
    retried = 0
    if output is not None and options.resume:
        previous = rep.load_for_resume(output, model_sha256=info.weights_sha256,
                                       threshold=threshold, shard=options.shard,
                                       model_id=info.model_id,
                                       gate=effective_gate(options.gate_mode,
                                                           engine.input_gate is not None))
        for rel, row in previous.items():
            st = stats_by_rel.get(rel)
            if st is None:  # gone, unreadable, or a scan issue (its row is made again)
                continue
            if row["file_size"] == str(st.st_size) and row["mtime_ns"] == str(st.st_mtime_ns):
                if row["status"] == ERROR and options.retry_errors:
                    retried += 1
                    continue
                kept[rel] = row
    shard_k, shard_n = options.shard or (0, 1)
    total = len(files) + len(issues)
    manifest_base = {
        "root": rep.escape_path(root), "shard_index": shard_k, "shard_count": shard_n,
        "files": total,
        "model_sha256": info.weights_sha256, "model_id": info.model_id,
        "report_format": rep.REPORT_FORMAT, "model_label": info.label,
        "model_name": info.name, "model_version": info.version, "threshold": threshold,
        "pneumoview_version": _version(),
        "gate": effective_gate(options.gate_mode, engine.input_gate is not None),
    }
    writer = None
    manifest = None
    if output is not None:
        writer = rep.ReportWriter(output, (kept[r] for _, r in files if r in kept))
        manifest = str(rep.write_manifest(output, {**manifest_base, "finished": False,
                                                   "cancelled": False}))

    kept_rows = [kept[r] for _, r in files if r in kept]
    stats = _Stats(total=total, kept=kept_rows)
    if on_rows is not None and kept:
        on_rows([rep.parse_row(r) for r in kept_rows])
    emit_progress(stats, "flagging")

    # 5. the pipeline
    todo: list[tuple[str, str]] = [f for f in files if f[1] not in kept]
    direct_rows: list[dict[str, Any]] = []
    for path, rel, reason, is_folder in issues:
        row = _base_row(path, rel, None, threshold, info)
        if is_folder:
            row.update(status=ERROR, message=f"{reason}: the files in it are not in the report")
        else:
            row.update(status=SKIPPED, message=f"{reason}; not read")
        direct_rows.append(row)
    tasks: list[tuple[Any, Any]] = []
    max_bytes = int(options.max_image_mb) * 2**20
    has_gate = engine.input_gate is not None
    gating = has_gate and options.gate_mode is GateMode.CONTENT  # the rules need statistics
    for path, rel in todo:
        st = stats_by_rel[rel]
        row = _base_row(path, rel, st, threshold, info)
        if st is None:
            row.update(status=ERROR, message="the file vanished or cannot be read (stat "
                                             "failed) during the scan")
            direct_rows.append(row)
        elif not stat.S_ISREG(st.st_mode):
            row.update(status=SKIPPED, message="not a regular file (device, pipe or socket)")
            direct_rows.append(row)
        else:
            tasks.append((row, {"path": path, "file_size": st.st_size,
                                "input_size": info.input_size, "max_bytes": max_bytes,
                                "quiet": options.quiet, "gate_statistics": gating}))

    stage = {"decode": 0.0, "input": 0.0, "model": 0.0, "model_wall": 0.0}
    pending: list[_Ready] = []
    last_progress = 0.0
    cancelled = False
    n_workers = max(1, int(options.workers or default_workers()))
    busy_est = _BusyEstimate(initial=float(n_workers))

    def write(rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if writer is not None:
            writer.write_rows(rows)
        for r in rows:
            stats.add(r)
        if on_rows is not None:
            on_rows(rows)

    def flush_pending(pool: ProcessPool | None) -> None:
        if not pending:
            return
        from pneumoview.core import threads

        ready, refused = _apply_rules(pending, engine, options.gate_mode)
        pending.clear()
        rows = refused
        if ready:
            # whole busy workers only: a worker busy 70 % of the time leaves its core to
            # torch for part of each batch; rounding up would leave a core idle for the rest
            others = 0 if pool is None else int(busy_est.update(pool.busy_seconds))
            w0, c0 = time.perf_counter(), time.process_time()
            with threads.busy(min(others, n_workers)):
                logits, verdicts = engine.gated_logits([r.input for r in ready],
                                                       [r.shape for r in ready],
                                                       [r.statistics for r in ready])
            stage["model"] += time.process_time() - c0
            stage["model_wall"] += time.perf_counter() - w0
            probs = engine.calibrated(logits)
            for r, p, v in zip(ready, probs, verdicts, strict=True):
                rows.append(_scored_row(r.row, float(p), v, threshold, options.gate_mode,
                                        has_gate))
        write(rows)

    try:
        write(direct_rows)
        if tasks and not cancel():
            pool = ProcessPool(options.decode_target, n_workers, timeout_s=options.timeout_s,
                               memory_limit_bytes=_memory_limit_bytes(options, n_workers),
                               max_ahead=2 * batch_size + n_workers, nice=options.nice)
            try:
                with pool:
                    results: Iterator[TaskResult | None] = pool.imap_unordered(
                        tasks, poll_s=0.1, ticks=True)
                    for res in results:
                        if cancel():
                            cancelled = True
                            break
                        if res is None:  # nothing arrived for a moment: don't hold a batch
                            flush_pending(pool)
                        else:
                            row = res.key
                            if not res.ok:
                                row.update(status=ERROR, message=res.message)
                                write([row])
                            else:
                                value = res.value
                                for key in _FACT_KEYS:
                                    if key in value:
                                        row[key] = value[key]
                                stage["decode"] += value.get("cpu_decode_s", 0.0)
                                stage["input"] += value.get("cpu_input_s", 0.0)
                                row["elapsed_ms"] = value.get("wall_ms")
                                if value["status"] == SCORED:
                                    row["status"] = SCORED
                                    pending.append(_Ready(row, value["input"],
                                                          value["shape"],
                                                          value.get("gate_statistics")))
                                    if len(pending) >= batch_size:
                                        flush_pending(pool)
                                else:
                                    row.update(status=value["status"],
                                               message=value.get("message", ""))
                                    write([row])
                        now = time.monotonic()
                        if now - last_progress >= progress_interval_s:
                            last_progress = now
                            emit_progress(stats, "flagging")
                    results.close()
                    flush_pending(pool)
            finally:
                pool.close(cancel=True)
                restarts = pool.restarts
        else:
            restarts = 0
            cancelled = cancel() and stats.done < stats.total
    except BaseException:
        # what was written stays valid; say so in the manifest when we still can
        if manifest is not None:
            try:
                rep.write_manifest(output, {**manifest_base, "finished": False,
                                            "cancelled": False, "rows": stats.done})
            except PneumoViewError:
                pass
        if writer is not None:
            try:
                writer.close()
            except PneumoViewError:
                pass
        raise
    if writer is not None:
        writer.close()
    finished = not cancelled and stats.done == stats.total
    if manifest is not None:
        rep.write_manifest(output, {**manifest_base, "finished": finished,
                                    "cancelled": cancelled, "rows": stats.done})
    emit_progress(stats, "finished" if finished else "cancelled")
    elapsed = time.monotonic() - t_start
    processed = stats.done - stats.start_done
    run_s = time.monotonic() - stats.t0
    return BatchSummary(
        root=root, output=output, manifest=manifest, total=stats.total, done=stats.done,
        resumed=stats.start_done, counts=dict(stats.counts), flagged=stats.flagged,
        cancelled=cancelled, finished=finished, elapsed_s=elapsed,
        rate=processed / run_s if run_s > 0 else 0.0, model_label=info.label,
        model_sha256=info.weights_sha256, threshold=threshold, workers=n_workers,
        restarts=restarts, stage_cpu_s=stage, run_counts=dict(stats.run_counts),
        run_flagged=stats.run_flagged, retried=retried,
        unlisted_folders=sum(1 for issue in issues if issue[3]), gate=manifest_base["gate"],
        gate_note=gate_note(options.gate_mode, has_gate))


@dataclass
class _Ready:
    """A decoded file waiting for the model: its row, model input, decoded (height, width)
    and the input's content statistics (None when the content gate's rules do not run)."""

    row: dict[str, Any]
    input: np.ndarray
    shape: tuple[int, int]
    statistics: dict[str, float] | None


def _apply_rules(pending: list[_Ready], engine: Engine,
                 mode: GateMode) -> tuple[list[_Ready], list[dict[str, Any]]]:
    """Split waiting files into those the model runs on and the rows the content gate's rules
    refuse before any forward pass (too small, extreme aspect, no content)."""
    gate = engine.input_gate
    if gate is None or mode is not GateMode.CONTENT:
        return list(pending), []
    ready, refused = [], []
    for r in pending:
        verdict = None if r.statistics is None else \
            gate.pre_check_statistics(r.shape, r.statistics)
        if verdict is None:
            ready.append(r)
        else:
            r.row.update(status=NOT_SCORED, message=verdict.reason,
                         **gate_fields(verdict, mode, True))
            refused.append(r.row)
    return ready, refused


def _scored_row(row: dict[str, Any], p: float, verdict: GateVerdict | None,
                threshold: float, mode: GateMode, has_gate: bool) -> dict[str, Any]:
    """A row after the model: scored, refused by the content gate, or an error (non-finite)."""
    row.update(gate_fields(verdict, mode, has_gate))
    if refuses(verdict, mode):
        assert verdict is not None
        row.update(status=NOT_SCORED, message=verdict.reason)
    elif math.isfinite(p):
        row.update(probability=p, flagged=bool(p >= threshold))
    else:
        from pneumoview.core.inference import NON_FINITE

        row.update(status=ERROR, probability=None, flagged=None, message=NON_FINITE)
    return row


def _memory_limit_bytes(options: BatchOptions, workers: int) -> int | None:
    mb = options.memory_limit_mb
    if mb is not None and mb < 0:
        mb = default_memory_limit_mb(workers)
    return int(mb) * 2**20 if mb else None


def _version() -> str:
    from pneumoview import __version__

    return __version__
