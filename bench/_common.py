"""Shared benchmark plumbing: load check and robust timing (medians of repeated runs)."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable


def check_load(refuse_above: float | None = None) -> float:
    """Warn (or refuse, when asked) if the machine is busy: timings would be noise."""
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    if load > 0.5 * cores:
        msg = (f"warning: 1-minute load average is {load:.2f} on {cores} cores; figures are "
               "noisy (ratios within this run stay comparable)")
        if refuse_above is not None and load > refuse_above:
            sys.exit(msg.replace("warning", "refusing") + "; pass --force to run anyway")
        print(msg, file=sys.stderr)
    return load


def median_time(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
