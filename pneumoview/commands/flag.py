"""``pneumoview flag FOLDER --output REPORT.csv``: score and flag every file in a folder.

Headless (no Qt import): the same batch engine as the GUI's File -> Batch Flag Folder. Progress
goes to stderr; the report is written row by row. Exit status: 0 when the run finished (per-file
errors are rows, not failures), 1 for a fatal error (no model, report not writable, disk full,
a report that cannot be resumed, another run writing the same report), 2 for a usage error,
130 / 143 / 129 when stopped by SIGINT (Ctrl+C) / SIGTERM / SIGHUP: the rows in flight are
finished, the partial report is kept and marked cancelled; finish it with --resume.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from typing import Any, TextIO

from pneumoview.commands import dicom_results
from pneumoview.commands.advice import flag_advice
from pneumoview.commands.argtypes import positive_seconds
from pneumoview.commands.console import say
from pneumoview.commands.engineargs import add_engine_arguments
from pneumoview.core import defaults, runoptions
from pneumoview.core.errors import PneumoViewError

#: The signals that stop a run cleanly (finish the rows in flight, mark the report cancelled),
#: and the exit status each gives (128 + the signal number, as a shell reports it).
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="folder to scan recursively (every file gets a row)")
    parser.add_argument("-o", "--output", required=True, metavar="REPORT.csv",
                        help="report CSV to write (a manifest REPORT.csv.manifest.json is "
                             "written beside it)")
    parser.add_argument("--model", metavar="DIR", help="model folder (default: the bundled one)")
    parser.add_argument("--threshold", type=float, metavar="T",
                        help="flag when probability >= T (default: the model's threshold)")
    parser.add_argument("--profile", metavar="PROFILE.json",
                        help="a site profile (pneumoview calibrate): its calibrated probability "
                             "and threshold replace the model's; --threshold still overrides")
    parser.add_argument("--device", metavar="D",
                        help=f"{defaults.DEVICE} (default), cpu, cuda, cuda:N or mps")
    add_engine_arguments(parser)
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help=f"images per model batch (default {defaults.BATCH_SIZE})")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="decode worker processes (default: cores - 1, at least 1)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted report: keep rows of unchanged files, "
                             "score the rest; files of `error` rows are tried once more")
    parser.add_argument("--no-retry-errors", action="store_true",
                        help="with --resume, keep `error` rows as they are")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing report instead of refusing")
    parser.add_argument("--shard", metavar="K/N",
                        help="process only shard K of N (0-based; a stable hash of the "
                             "relative path); join shards with merge-reports")
    parser.add_argument("--timeout", type=positive_seconds, metavar="S",
                        help="per-file decode time limit in seconds "
                             f"(default {defaults.DECODE_TIMEOUT_S:g})")
    parser.add_argument("--max-image-mib", type=int, metavar="MIB",
                        help="size guard: refuse (an error row) an image whose decoded pixels "
                             f"need more than this (default {defaults.MAX_IMAGE_MIB})")
    parser.add_argument("--memory-limit", type=int, default=-1, metavar="MB",
                        help="per-worker memory limit in MiB (Linux; 0 = none; default: "
                             f"RAM / (workers + 1), at most {defaults.MEMORY_LIMIT_MAX_MIB})")
    parser.add_argument("--no-gate", action="store_true",
                        help="research runs: keep the tag gate only; the model's content gate "
                             "(rotated, not a chest film, no content, atypical) does not stop a "
                             "score (the report's gate column says 'off', its manifest "
                             "'gate: tags'; atypicality is still reported)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar and no decoder warnings")
    dicom_results.add_argument(parser)


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """``[#####-----] done/total files  img/s  ETA`` on stderr; plain lines when not a tty."""

    def __init__(self, stream: TextIO, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_line = 0.0

    def __call__(self, p: Any) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        final = p.phase in ("finished", "cancelled")
        if not self.tty and not final and now - self._last_line < 10:
            return
        self._last_line = now
        frac = p.done / p.total if p.total else 1.0
        width = 24
        filled = int(round(frac * width))
        bar = "#" * filled + "-" * (width - filled)
        text = (f"[{bar}] {p.done}/{p.total} files  {p.rate:.1f} img/s  "
                f"ETA {_fmt_eta(p.eta_s)}  flagged {p.flagged}  errors {p.errors}")
        try:
            if self.tty:
                self.stream.write("\r" + text + ("\n" if final else ""))
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed (a pipe whose reader left): run on
            self.enabled = False


class _StopSignals:
    """SIGINT, SIGTERM and SIGHUP ask the run to stop (a second one aborts at once)."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        for name in STOP_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None:
                try:
                    self._old[signum] = signal.signal(signum, self._handle)
                except (ValueError, OSError):  # not the main thread, or not on this platform
                    pass
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        name = signal.Signals(signum).name
        with contextlib.suppress(OSError, ValueError):
            self.err.write(f"\n{name}: finishing the rows in flight (again to abort)\n")

    @property
    def stopped(self) -> bool:
        return self.received is not None

    def exit_status(self) -> int:
        return 128 + (self.received or signal.SIGINT)


def _check_usage(args: argparse.Namespace) -> str | None:
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        return "--threshold must be between 0 and 1"
    if any(v is not None and v < 1 for v in (args.batch_size, args.workers)):
        return "--batch-size and --workers must be at least 1"
    if getattr(args, "max_image_mib", None) is not None and args.max_image_mib < 1:
        return "--max-image-mib must be at least 1"
    if args.no_retry_errors and not args.resume:
        return "--no-retry-errors goes with --resume"
    return dicom_results.check(args)


def summary_line(summary: Any) -> str:
    """The whole report's counts, then (after a resume) this run's."""
    c = summary.counts
    folders = (f" ({summary.unlisted_folders} folders that cannot be listed)"
               if summary.unlisted_folders else "")
    text = (f"{summary.done}/{summary.total} files: {c.get('scored', 0)} scored "
            f"({summary.flagged} flagged; {summary.policy or f'threshold {summary.threshold:g}'}), "
            f"{c.get('not_scored', 0)} not scored, {c.get('skipped', 0)} skipped, "
            f"{c.get('error', 0)} errors{folders}")
    if summary.resumed:
        r = summary.run_counts
        ran = summary.done - summary.resumed
        retried = f", {summary.retried} error rows retried" if summary.retried else ""
        text += (f"; this run: {ran} files ({r.get('scored', 0)} scored, "
                 f"{summary.run_flagged} flagged, {r.get('error', 0)} errors{retried}), "
                 f"{summary.resumed} kept from the report")
    engine = f" ({summary.engine})" if summary.engine else ""
    if getattr(summary, "gate_note", ""):
        text += f"; {summary.gate_note}"
    return f"{text}; model {summary.model_label}{engine}; report {summary.output}"


def run(args: argparse.Namespace) -> int:
    from pneumoview.core import report as rep
    from pneumoview.core.batch import BatchOptions, run_batch, silence_warnings
    from pneumoview.core.gatepolicy import GateMode

    err = sys.stderr
    try:
        shard = rep.parse_shard(args.shard) if args.shard else None
    except PneumoViewError as exc:
        say(f"pneumoview flag: error: {exc}", err)
        return 2
    problem = _check_usage(args)
    if problem:
        print(f"pneumoview flag: error: {problem}", file=err)
        return 2
    # headless: the command line, then the defaults (never the viewer's settings)
    chosen = runoptions.resolve(args)
    options = BatchOptions(
        root=args.folder, output=args.output, model_dir=chosen.model_dir, device=chosen.device,
        engine=chosen.engine, precision=chosen.precision,
        threshold=args.threshold, batch_size=chosen.batch_size, workers=chosen.workers,
        resume=args.resume, overwrite=args.overwrite, shard=shard, timeout_s=chosen.timeout_s,
        max_image_mib=chosen.max_image_mib,
        memory_limit_mb=args.memory_limit if args.memory_limit != 0 else None,
        retry_errors=not args.no_retry_errors, quiet=args.quiet, profile=args.profile,
        gate_mode=GateMode.TAGS_ONLY if args.no_gate else GateMode.CONTENT)
    if args.quiet:
        silence_warnings()

    from pneumoview.core.procpool import tune_malloc

    tune_malloc()  # this process only runs the batch: reuse model buffers (fewer page faults)
    bar = ProgressBar(err, enabled=not args.quiet)
    with _StopSignals(err) as stop:
        try:
            summary = run_batch(options, on_progress=bar, cancel=lambda: stop.stopped)
        except PneumoViewError as exc:
            say(f"pneumoview flag: error: {exc}{flag_advice(exc)}", err)
            return 1
        except KeyboardInterrupt:
            print("pneumoview flag: aborted; finish the report with --resume", file=err)
            return stop.exit_status()
    say(summary_line(summary), err)
    if summary.cancelled:
        print("pneumoview flag: cancelled; the partial report is kept - finish it with "
              "--resume", file=err)
        return stop.exit_status()
    with _StopSignals(err) as stop:
        status = dicom_results.write(args, chosen, err, cancel=lambda: stop.stopped)
    return stop.exit_status() if stop.stopped else status
