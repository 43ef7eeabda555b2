"""A batch run as its named phases: :class:`BatchRun`, and :func:`run_batch`, its entry point.

The phases, in order: :meth:`~BatchRun.check_output` (refuse to clobber a report by accident),
:meth:`~BatchRun.load_engine` (the model, before anything is written), then, holding the
report's lock, :meth:`~BatchRun.scan`, :meth:`~BatchRun.resume` (rows of unchanged files are
kept), :meth:`~BatchRun.plan` (rows decided without reading a file, decode tasks for the
rest), :meth:`~BatchRun.pipeline` (decode workers feed the one hot model) and
:meth:`~BatchRun.finish` (manifest, summary).
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pneumoview.core import defaults
from pneumoview.core import report as rep
from pneumoview.core.batch.decode import DECODE_TARGET, WARM_TARGET
from pneumoview.core.batch.gating import Ready, apply_rules, scored_row
from pneumoview.core.batch.options import BatchOptions, BatchProgress, BatchSummary
from pneumoview.core.batch.scan import ScanCancelled, ScanIssue, scan
from pneumoview.core.errors import PneumoViewError, ReportExistsError
from pneumoview.core.gatepolicy import GateMode, effective_gate, gate_note
from pneumoview.core.reportrow import ReportRow, Status

if TYPE_CHECKING:  # pragma: no cover
    from pneumoview.core.inference import Engine
    from pneumoview.core.procpool import ProcessPool, TaskResult

#: Header facts a decode task returns that go into the row as they are.
_FACT_KEYS = ("patient_id", "study_instance_uid", "series_instance_uid", "sop_instance_uid",
              "view_position", "study_date", "modality", "frame",
              "patient_age", "birth_date")  # the last two choose the operating point only

RowsCallback = Callable[[list[dict[str, Any]]], None]
ProgressCallback = Callable[[BatchProgress], None]


def _zero_counts() -> dict[str, int]:
    return {s.value: 0 for s in Status}


class _Stats:
    """Counts of the whole report (``counts``) and of this run's rows (``run_counts``)."""

    def __init__(self, total: int, kept: list[dict[str, str]]) -> None:
        self.total = total
        self.done = len(kept)
        self.start_done = len(kept)
        self.t0 = time.monotonic()
        self.counts = _zero_counts()
        self.run_counts = dict(self.counts)
        self.flagged = self.run_flagged = 0
        for row in kept:
            self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
            self.flagged += row.get("flagged") == "true"

    def add(self, row: dict[str, Any]) -> None:
        self.done += 1
        status = str(row["status"])
        for counts in (self.counts, self.run_counts):
            counts[status] = counts.get(status, 0) + 1
        if row.get("flagged"):
            self.flagged += 1
            self.run_flagged += 1

    def progress(self, phase: str = "flagging") -> BatchProgress:
        elapsed = time.monotonic() - self.t0
        n = self.done - self.start_done
        rate = n / elapsed if elapsed > 0 else 0.0
        remaining = self.total - self.done
        eta = remaining / rate if rate > 0 else None
        c = self.counts
        return BatchProgress(self.done, self.total, c[Status.SCORED.value], self.flagged,
                             c[Status.NOT_SCORED.value], c[Status.SKIPPED.value],
                             c[Status.ERROR.value], elapsed, rate, eta, phase)


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


class BatchRun:
    """One run of :func:`run_batch`; each public method is one phase, called in order by
    :meth:`run`. State passes between phases as attributes, not closures."""

    def __init__(self, options: BatchOptions, *, on_rows: RowsCallback | None = None,
                 on_progress: ProgressCallback | None = None,
                 cancel: Callable[[], bool] | None = None, engine: Engine | None = None,
                 progress_interval_s: float = 0.25) -> None:
        self.options = options
        self.on_rows = on_rows
        self.on_progress = on_progress
        self.cancel = cancel or (lambda: False)
        self.engine = engine
        self.progress_interval_s = progress_interval_s
        self.t_start = time.monotonic()
        self.output = None if options.output is None else os.path.abspath(
            os.fspath(options.output))
        self.root = os.path.abspath(os.fspath(options.root))
        self.batch_size = max(1, int(options.batch_size))
        self.info: Any = None
        self.threshold = 0.0
        self.policy: Any = None  # the run's ScoringPolicy (load_engine)
        self.files: list[tuple[str, str]] = []
        self.issues: list[ScanIssue] = []
        self.stats_by_rel: dict[str, os.stat_result | None] = {}
        self.kept: dict[str, dict[str, str]] = {}
        self.retried = 0
        self.manifest_base: dict[str, Any] = {}
        self.writer: rep.ReportWriter | None = None
        self.manifest: str | None = None
        self.stats = _Stats(0, [])
        self.direct_rows: list[dict[str, Any]] = []
        self.tasks: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.stage = {"decode": 0.0, "input": 0.0, "model": 0.0, "model_wall": 0.0}
        self.pending: list[Ready] = []
        self.cancelled = False
        self.restarts = 0
        self.n_workers = max(1, int(options.workers or defaults.decode_workers()))
        self.has_gate = False  # the model carries a content gate (known once loaded)
        self.gate = "tags"  # effective_gate: what this run's rows are gated by
        self._busy = _BusyEstimate(initial=float(self.n_workers))
        self._last_progress = 0.0
        self.pool: ProcessPool | None = None

    # ----------------------------------------------------------------------------------------
    # The phases

    def run(self) -> BatchSummary:
        self.check_output()
        with contextlib.ExitStack() as stack:
            # the decode workers start (and import their codecs) while the model loads
            self.pool = self._make_pool()
            stack.callback(self.pool.close, cancel=True)
            self.pool.start()
            self.load_engine()
            # one run at a time per report (the lock goes when this process ends, however
            # it ends)
            if self.output is not None:
                stack.enter_context(rep.ReportLock(self.output))
            if not self.scan():
                return self._cancelled_during_scan()
            self.resume()
            self.plan()
            try:
                self.pipeline()
            except BaseException:
                self._abandon()
                raise
            return self.finish()

    def check_output(self) -> None:
        """The output is a regular file (or a new name) in an existing folder; an existing
        report is only continued or replaced when asked."""
        output = self.output
        if output is None:
            return
        rep.check_output_target(output)
        if os.path.lexists(output) and not self.options.resume and not self.options.overwrite:
            raise ReportExistsError("the report already exists (neither resuming nor "
                                    "replacing it was asked)", output)
        parent = os.path.dirname(output) or "."
        if not os.path.isdir(parent):
            raise PneumoViewError("the report's folder does not exist", parent)

    def load_engine(self) -> None:
        """The model (fatal if missing), before anything is written, and the threshold."""
        if self.engine is None:
            from pneumoview.core.inference import Engine

            self.engine = Engine(self.options.model_dir, self.options.device, with_cam=False,
                                 engine=self.options.engine,
                                 precision=self.options.precision,
                                 gate_mode=self.options.gate_mode)
        engine = self.engine
        if engine.loaded:
            self.info = engine.info
        else:
            from pneumoview.core import threads

            # compiled for the thread count the pipeline starts with (its decode workers
            # busy): OpenVINO compiles a model per count, and the other would go unused
            with threads.busy(self.n_workers):
                self.info = engine.load()
        assert self.info is not None
        self.has_gate = engine.input_gate is not None
        self.gate = effective_gate(self.options.gate_mode, self.has_gate)
        from pneumoview.core.oppoints import ScoringPolicy
        from pneumoview.core.siteprofile import profile_for

        # --threshold > site profile > the model's population points > its one threshold
        self.policy = ScoringPolicy(self.info, self.options.threshold,
                                    profile_for(self.info, self.options.profile))
        self.threshold = self.policy.default_threshold

    def scan(self) -> bool:
        """The files (and what cannot be flagged) of this run's shard, each ``stat``-ed once.
        False when cancelled during the scan."""
        try:
            files = scan(self.root, self.output, self.options.follow_symlinks, self.cancel,
                         issues=self.issues)
        except ScanCancelled:
            return False
        if self.options.shard is not None:
            k, n = self.options.shard
            files = [f for f in files if rep.shard_of(f[1], n) == k]
            self.issues = [f for f in self.issues if rep.shard_of(f[1], n) == k]
        self.files = files
        for path, rel in files:
            try:
                self.stats_by_rel[rel] = os.stat(path)
            except OSError:
                self.stats_by_rel[rel] = None
        return True

    def resume(self) -> None:
        """Keep rows of unchanged files (error rows are retried unless told not to). The
        writer rewrites the kept rows atomically before appending (which also repairs a
        half-written last line)."""
        if self.output is None or not self.options.resume:
            return
        info = self.info
        previous = rep.load_for_resume(self.output, model_sha256=info.weights_sha256,
                                       threshold=self.threshold, shard=self.options.shard,
                                       model_id=info.model_id,
                                       policy=self.policy.manifest_fields(), gate=self.gate)
        for rel, row in previous.items():
            st = self.stats_by_rel.get(rel)
            if st is None:  # gone, unreadable, or a scan issue (its row is made again)
                continue
            if row["file_size"] == str(st.st_size) and row["mtime_ns"] == str(st.st_mtime_ns):
                if row["status"] == Status.ERROR and self.options.retry_errors:
                    self.retried += 1
                    continue
                self.kept[rel] = row

    def plan(self) -> None:
        """Open the report and manifest; rows decided without reading a file; the decode tasks
        of the rest."""
        info, kept = self.info, self.kept
        shard_k, shard_n = self.options.shard or (0, 1)
        total = len(self.files) + len(self.issues) + len(self.options.extra_rows)
        engine = self.engine
        assert engine is not None  # loaded by load_engine
        self.manifest_base = {
            "root": rep.escape_path(self.root), "shard_index": shard_k, "shard_count": shard_n,
            "files": total,
            "model_sha256": info.weights_sha256, "model_id": info.model_id,
            "report_format": rep.REPORT_FORMAT, "model_label": info.label,
            "model_name": info.name, "model_version": info.version,
            "threshold": self.threshold, "pneumoview_version": _version(),
            "engine": engine.engine_name, "precision": engine.precision,
            **self.policy.manifest_fields(), "gate": self.gate,
        }
        kept_rows = [kept[r] for _, r in self.files if r in kept]
        if self.output is not None:
            self.writer = rep.ReportWriter(self.output, iter(kept_rows))
            self.manifest = str(rep.write_manifest(self.output, {
                **self.manifest_base, "finished": False, "cancelled": False}))
        self.stats = _Stats(total=total, kept=kept_rows)
        if self.on_rows is not None and kept:
            self.on_rows([rep.parse_row(r) for r in kept_rows])
        self._emit_progress("flagging")
        self._plan_issues()
        self._plan_extra()
        self._plan_files()

    def pipeline(self) -> None:
        """Decode workers read the files while this process runs the model on full batches."""
        self._write(self.direct_rows)
        if not self.tasks or self.cancel():
            self.cancelled = self.cancel() and self.stats.done < self.stats.total
            return
        pool = self.pool if self.pool is not None else self._make_pool()
        try:
            with pool:
                self._drain(pool)
        finally:
            pool.close(cancel=True)
            self.restarts = pool.restarts

    def finish(self) -> BatchSummary:
        """Close the report, mark the manifest finished (or cancelled), summarise."""
        stats = self.stats
        if self.writer is not None:
            self.writer.close()
        finished = not self.cancelled and stats.done == stats.total
        if self.manifest is not None:
            assert self.output is not None
            rep.write_manifest(self.output, {**self.manifest_base, "finished": finished,
                                             "cancelled": self.cancelled, "rows": stats.done})
        self._emit_progress("finished" if finished else "cancelled")
        processed = stats.done - stats.start_done
        run_s = time.monotonic() - stats.t0
        return self._summary(
            output=self.output, manifest=self.manifest, total=stats.total, done=stats.done,
            resumed=stats.start_done, counts=dict(stats.counts), flagged=stats.flagged,
            cancelled=self.cancelled, finished=finished,
            rate=processed / run_s if run_s > 0 else 0.0, workers=self.n_workers,
            restarts=self.restarts, stage_cpu_s=self.stage,
            run_counts=dict(stats.run_counts), run_flagged=stats.run_flagged,
            retried=self.retried, unlisted_folders=sum(1 for i in self.issues if i[3]),
            gate=self.gate, gate_note=gate_note(self.options.gate_mode, self.has_gate))

    # ----------------------------------------------------------------------------------------
    # Planning

    def _base_row(self, path: str, rel: str, st: os.stat_result | None) -> dict[str, Any]:
        info = self.info
        return ReportRow(
            path=path, relpath=rel,
            file_size=None if st is None else st.st_size,
            mtime_ns=None if st is None else st.st_mtime_ns,
            threshold=self.threshold, model_sha256=info.weights_sha256,
            model_label=info.label, model_id=info.model_id).as_dict()

    def _plan_issues(self) -> None:
        for path, rel, reason, is_folder in self.issues:
            row = self._base_row(path, rel, None)
            if is_folder:
                row.update(status=Status.ERROR,
                           message=f"{reason}: the files in it are not in the report")
            else:
                row.update(status=Status.SKIPPED, message=f"{reason}; not read")
            self.direct_rows.append(row)

    def _plan_extra(self) -> None:
        for extra in self.options.extra_rows:
            row = self._base_row(str(extra["path"]), str(extra["relpath"]), None)
            row.update(status=Status.ERROR, message=str(extra.get("message", "")),
                       sop_instance_uid=str(extra.get("sop_instance_uid", "")))
            self.direct_rows.append(row)

    @property
    def _gating(self) -> bool:
        """Whether the content gate's rules run (the decode workers compute their input)."""
        return self.has_gate and self.options.gate_mode is GateMode.CONTENT

    def _plan_files(self) -> None:
        max_bytes = max(1, int(self.options.max_image_mib)) * defaults.MIB
        for path, rel in self.files:
            if rel in self.kept:
                continue
            st = self.stats_by_rel[rel]
            row = self._base_row(path, rel, st)
            if st is None:
                row.update(status=Status.ERROR, message="the file vanished or cannot be read "
                                                        "(stat failed) during the scan")
                self.direct_rows.append(row)
            elif not stat.S_ISREG(st.st_mode):
                row.update(status=Status.SKIPPED,
                           message="not a regular file (device, pipe or socket)")
                self.direct_rows.append(row)
            else:
                self.tasks.append((row, {"path": path, "file_size": st.st_size,
                                         "input_size": self.info.input_size,
                                         "input_contract": self.info.input_contract,
                                         "max_bytes": max_bytes,
                                         "quiet": self.options.quiet,
                                         "reduced_decode": self.options.reduced_decode,
                                         "gate_statistics": self._gating}))

    # ----------------------------------------------------------------------------------------
    # The pipeline

    def _drain(self, pool: ProcessPool) -> None:
        results = pool.imap_unordered(self.tasks, poll_s=0.1, ticks=True)
        for res in results:
            if self.cancel():
                self.cancelled = True
                break
            if res is None:  # nothing arrived for a moment: don't hold a batch
                self._flush_pending(pool)
            else:
                self._on_result(res, pool)
            now = time.monotonic()
            if now - self._last_progress >= self.progress_interval_s:
                self._last_progress = now
                self._emit_progress("flagging")
        results.close()
        self._flush_pending(pool)

    def _on_result(self, res: TaskResult, pool: ProcessPool) -> None:
        row = res.key
        if not res.ok:
            row.update(status=Status.ERROR, message=res.message)
            self._write([row])
            return
        value = res.value
        for key in _FACT_KEYS:
            if key in value:
                row[key] = value[key]
        self.stage["decode"] += value.get("cpu_decode_s", 0.0)
        self.stage["input"] += value.get("cpu_input_s", 0.0)
        row["elapsed_ms"] = value.get("wall_ms")
        if value["status"] == Status.SCORED:
            row["status"] = Status.SCORED
            self.pending.append(Ready(row, value["input"], value["shape"],
                                      value.get("gate_statistics")))
            if len(self.pending) >= self.batch_size:
                self._flush_pending(pool)
        else:
            row.update(status=Status(value["status"]), message=value.get("message", ""))
            self._write([row])

    def _flush_pending(self, pool: ProcessPool | None) -> None:
        if not self.pending:
            return
        from pneumoview.core import threads

        assert self.engine is not None
        ready, rows = apply_rules(self.pending, self.engine, self.options.gate_mode)
        self.pending.clear()
        if ready:
            # whole busy workers only: a worker busy 70 % of the time leaves its core to
            # torch for part of each batch; rounding up would leave a core idle for the rest
            others = 0 if pool is None else int(self._busy.update(pool.busy_seconds))
            w0, c0 = time.perf_counter(), time.process_time()
            with threads.busy(min(others, self.n_workers)):
                logits, verdicts = self.engine.gated_logits(
                    [r.input for r in ready], [r.shape for r in ready],
                    [r.statistics for r in ready])
            self.stage["model"] += time.process_time() - c0
            self.stage["model_wall"] += time.perf_counter() - w0
            for r, z, v in zip(ready, logits, verdicts, strict=True):
                rows.append(scored_row(r.row, float(z), v, self.policy,
                                       self.options.gate_mode, self.has_gate))
        self._write(rows)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.writer is not None:
            self.writer.write_rows(rows)
        for r in rows:
            self.stats.add(r)
        if self.on_rows is not None:
            self.on_rows(rows)

    # ----------------------------------------------------------------------------------------
    # Helpers

    def _emit_progress(self, phase: str) -> None:
        if self.on_progress is not None:
            self.on_progress(self.stats.progress(phase))

    def _abandon(self) -> None:
        """What was written stays valid; say so in the manifest when we still can."""
        if self.manifest is not None and self.output is not None:
            with contextlib.suppress(PneumoViewError):
                rep.write_manifest(self.output, {**self.manifest_base, "finished": False,
                                                 "cancelled": False, "rows": self.stats.done})
        if self.writer is not None:
            with contextlib.suppress(PneumoViewError):
                self.writer.close()

    def _cancelled_during_scan(self) -> BatchSummary:
        return self._summary(output=None, manifest=None, total=0, done=0, resumed=0,
                             counts=_zero_counts(), flagged=0, cancelled=True, finished=False,
                             rate=0.0, workers=0, restarts=0)

    def _summary(self, **kw: Any) -> BatchSummary:
        return BatchSummary(root=self.root, elapsed_s=time.monotonic() - self.t_start,
                            model_label=self.info.label, model_sha256=self.info.weights_sha256,
                            threshold=self.threshold, policy=self.policy.describe(),
                            engine=self.engine.engine_text if self.engine else "", **kw)

    def _make_pool(self) -> ProcessPool:
        """The decode workers (not started). Each holds its next file while it decodes the
        current one (``depth=2``), so none waits on this process between files."""
        from pneumoview.core.procpool import ProcessPool

        opts = self.options
        return ProcessPool(opts.decode_target, self.n_workers, timeout_s=opts.timeout_s,
                           memory_limit_bytes=self._memory_limit_bytes(),
                           max_ahead=4 * self.batch_size + 2 * self.n_workers, nice=opts.nice,
                           depth=2, warm=WARM_TARGET if opts.decode_target == DECODE_TARGET
                           else None)

    def _memory_limit_bytes(self) -> int | None:
        mib = self.options.memory_limit_mb
        if mib is not None and mib < 0:
            mib = defaults.memory_limit_mib(self.n_workers)
        return int(mib) * defaults.MIB if mib else None


def run_batch(options: BatchOptions, *, on_rows: RowsCallback | None = None,
              on_progress: ProgressCallback | None = None,
              cancel: Callable[[], bool] | None = None, engine: Engine | None = None,
              progress_interval_s: float = 0.25) -> BatchSummary:
    """Flag every file under ``options.root``; see :mod:`pneumoview.core.batch`.

    ``on_rows`` receives each group of finished rows (dicts keyed by :data:`report.COLUMNS`,
    typed values, ``status`` a :class:`~pneumoview.core.reportrow.Status`); ``on_progress`` a
    :class:`BatchProgress` at most every ``progress_interval_s``; ``cancel()`` is polled and,
    when true, the run stops, keeps what it has and marks the report cancelled. ``engine`` may
    be a loaded :class:`~pneumoview.core.inference.Engine` owned by the calling thread (one is
    made otherwise). Fatal problems (no model, output not writable, disk full, a report that
    cannot be resumed) raise :class:`PneumoViewError` (:class:`ReportExistsError` for a report
    neither resumed nor replaced); per-file problems are rows.
    """
    return BatchRun(options, on_rows=on_rows, on_progress=on_progress, cancel=cancel,
                    engine=engine, progress_interval_s=progress_interval_s).run()


def _version() -> str:
    from pneumoview import __version__

    return __version__
