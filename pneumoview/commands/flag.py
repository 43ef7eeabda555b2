"""``pneumoview flag FOLDER --output REPORT.csv``: score and flag every file in a folder.

Headless (no Qt import): the same batch engine as the GUI's File -> Batch Flag Folder. Progress
goes to stderr; the report is written row by row. Exit status: 0 when the run finished (per-file
errors are rows, not failures), 1 for a fatal error (no model, report not writable, disk full,
a report that cannot be resumed), 2 for a usage error, 130 when interrupted (Ctrl+C; the partial
report is kept and marked cancelled; finish it with --resume).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any, TextIO

from pneumoview.core.errors import PneumoViewError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="folder to scan recursively (every file gets a row)")
    parser.add_argument("-o", "--output", required=True, metavar="REPORT.csv",
                        help="report CSV to write (a manifest REPORT.csv.manifest.json is "
                             "written beside it)")
    parser.add_argument("--model", metavar="DIR", help="model folder (default: the bundled one)")
    parser.add_argument("--threshold", type=float, metavar="T",
                        help="flag when probability >= T (default: the model's threshold)")
    parser.add_argument("--device", default="auto", metavar="D",
                        help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N",
                        help="images per model batch (default 32)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="decode worker processes (default: cores - 1, at least 1)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted report: keep rows of unchanged files, "
                             "score the rest")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing report instead of refusing")
    parser.add_argument("--shard", metavar="K/N",
                        help="process only shard K of N (0-based; a stable hash of the "
                             "relative path); join shards with merge-reports")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S",
                        help="per-file decode time limit in seconds (default 120)")
    parser.add_argument("--memory-limit", type=int, default=-1, metavar="MB",
                        help="per-worker memory limit in MiB (Linux; 0 = none; default: "
                             "RAM / (workers + 1), at most 6144)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


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
        if self.tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def run(args: argparse.Namespace) -> int:
    from pneumoview.core import report as rep
    from pneumoview.core.batch import BatchOptions, run_batch

    err = sys.stderr
    try:
        shard = rep.parse_shard(args.shard) if args.shard else None
    except PneumoViewError as exc:
        print(f"pneumoview flag: error: {exc}", file=err)
        return 2
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        print("pneumoview flag: error: --threshold must be between 0 and 1", file=err)
        return 2
    if args.batch_size < 1 or (args.workers is not None and args.workers < 1):
        print("pneumoview flag: error: --batch-size and --workers must be at least 1", file=err)
        return 2
    options = BatchOptions(
        root=args.folder, output=args.output, model_dir=args.model, device=args.device,
        threshold=args.threshold, batch_size=args.batch_size, workers=args.workers,
        resume=args.resume, overwrite=args.overwrite, shard=shard, timeout_s=args.timeout,
        memory_limit_mb=args.memory_limit if args.memory_limit != 0 else None)

    interrupted = {"flag": False}

    def on_sigint(signum: int, frame: Any) -> None:  # noqa: ARG001
        if interrupted["flag"]:
            raise KeyboardInterrupt
        interrupted["flag"] = True
        err.write("\ninterrupted: finishing the rows in flight (Ctrl+C again to abort)\n")

    from pneumoview.core.procpool import tune_malloc

    tune_malloc()  # this process only runs the batch: reuse model buffers (fewer page faults)
    old = signal.signal(signal.SIGINT, on_sigint)
    bar = ProgressBar(err, enabled=not args.quiet)
    try:
        summary = run_batch(options, on_progress=bar, cancel=lambda: interrupted["flag"])
    except PneumoViewError as exc:
        print(f"pneumoview flag: error: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        print("pneumoview flag: aborted; finish the report with --resume", file=err)
        return 130
    finally:
        signal.signal(signal.SIGINT, old)
    c = summary.counts
    print(f"{summary.done}/{summary.total} files: {c.get('scored', 0)} scored "
          f"({summary.flagged} flagged at threshold {summary.threshold:g}), "
          f"{c.get('not_scored', 0)} not scored, {c.get('skipped', 0)} skipped (not DICOM), "
          f"{c.get('error', 0)} errors; model {summary.model_label}; report {summary.output}",
          file=err)
    if summary.cancelled:
        print("pneumoview flag: cancelled; the partial report is kept - finish it with "
              "--resume", file=err)
        return 130
    return 0
