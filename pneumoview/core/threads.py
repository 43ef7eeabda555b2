"""The one rule for how many threads torch may use, so the viewer stays quick while work runs.

torch's intra-op pool defaults to every core. When the batch engine's decode processes or the
GUI's decode thread are busy at the same time, an all-cores torch run starves them (and the GUI
feels frozen). The rule: the machine's cores minus the number of other busy workers, at least
one. Workers declare themselves with :func:`busy`; the engines call :func:`apply_torch_threads`
right before each model run. ``PNEUMOVIEW_TORCH_THREADS`` caps the result (tests set it to 1).

The viewer's requests come first: its engine runs inside :func:`interactive` and a background
engine (the batch engine in the same process) calls :func:`wait_for_interactive` before each
model run, so a reader's click is not queued behind a batch of 32 images.

This module never imports torch at import time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_busy = 0
ENV_CAP = "PNEUMOVIEW_TORCH_THREADS"


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_workers() -> int:
    """How many other workers have declared themselves busy right now."""
    with _lock:
        return _busy


@contextmanager
def busy(n: int = 1) -> Iterator[None]:
    """Declare ``n`` busy workers (e.g. decode processes) for the duration of the block."""
    global _busy
    n = max(0, int(n))
    with _lock:
        _busy += n
    try:
        yield
    finally:
        with _lock:
            _busy -= n


def _env_cap() -> int | None:
    raw = os.environ.get(ENV_CAP, "").strip()
    if not raw:
        return None
    try:
        return max(1, int(raw))
    except ValueError:
        return None


def torch_threads(other_busy: int | None = None) -> int:
    """``max(1, cores - other busy workers)``, capped by ``PNEUMOVIEW_TORCH_THREADS``."""
    others = busy_workers() if other_busy is None else max(0, int(other_busy))
    n = max(1, cpu_count() - others)
    cap = _env_cap()
    return min(n, cap) if cap is not None else n


def apply_torch_threads(other_busy: int | None = None) -> int:
    """Set torch's intra-op thread count by the rule (only when it changes); returns it."""
    import torch

    n = torch_threads(other_busy)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


_interactive = threading.Condition()
_interactive_runs = 0


@contextmanager
def interactive() -> Iterator[None]:
    """Mark a model run someone is waiting for (the viewer's); background runs hold back."""
    global _interactive_runs
    with _interactive:
        _interactive_runs += 1
    try:
        yield
    finally:
        with _interactive:
            _interactive_runs -= 1
            _interactive.notify_all()


def interactive_active() -> bool:
    with _interactive:
        return _interactive_runs > 0


def wait_for_interactive(timeout: float = 5.0) -> bool:
    """Block while an interactive run is active (at most ``timeout`` s); True if none is."""
    with _interactive:
        return _interactive.wait_for(lambda: _interactive_runs == 0, timeout=timeout)
