"""Background work for the GUI: jobs on plain Python threads, results delivered as Qt signals.

Why Python threads and not ``QThreadPool``: a pool keeps idle threads alive and, on Python 3.11,
every foreign thread that touches Python leaves a ``_DummyThread`` behind, so "no thread left
running" could not be checked. Here a lane's thread exists only while it has work and is joined
on :meth:`WorkRunner.shutdown`.

* :class:`Job` wraps a callable; its :class:`JobSignals` (``started``, ``progress``, ``partial``,
  ``result``, ``error``, ``finished``) are emitted from the worker thread and delivered queued to
  the receivers in the GUI thread, in that order. ``finished`` is always the last signal.
* :class:`WorkRunner` runs jobs in named *lanes* (one thread each, FIFO); ``latest_only`` drops
  queued jobs that have not started (a newer selection makes them stale). It counts pending work
  (:meth:`pending`, ``busyChanged``) so ``--screenshot`` and tests can wait until everything is
  done; work that does not run through a lane can still be counted with :meth:`begin` /
  :meth:`end` (the AI panel registers its jobs this way or through :meth:`submit`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from pneumoview.core.errors import PneumoViewError

log = logging.getLogger(__name__)


class JobSignals(QObject):
    """Signals of one job; ``error`` carries the exception (a PneumoViewError when expected)."""

    started = Signal()
    progress = Signal(object)
    partial = Signal(object)
    result = Signal(object)
    error = Signal(object)
    finished = Signal()


class Job:
    """A callable to run off the GUI thread, with a cancel flag the callable may poll.

    ``fn`` is called as ``fn(*args, **kwargs)``; for progress, partial results or cancellation
    pass ``job.signals.progress.emit``, ``job.signals.partial.emit`` or ``job.is_cancelled`` into
    the arguments after creating the job (see :meth:`bind`).
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str = "job",
                 tag: Any = None, **kwargs: Any) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.name = name
        self.tag = tag  # what the job is for (e.g. (path, frame)); receivers compare it
        self.signals = JobSignals()
        self._cancel = threading.Event()
        self.dropped = False  # removed from its queue before it started

    def bind(self, **kwargs: Any) -> Job:
        """Add keyword arguments (typically callbacks built from this job's signals)."""
        self.kwargs.update(kwargs)
        return self

    def cancel(self) -> None:
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self) -> None:
        """Run in the calling (worker) thread; never raises."""
        self.signals.started.emit()
        try:
            value = self.fn(*self.args, **self.kwargs)
        except PneumoViewError as exc:
            self.signals.error.emit(exc)
        except Exception as exc:  # a bug: report it, never kill the GUI
            log.exception("unexpected error in background job %s", self.name)
            self.signals.error.emit(exc)
        else:
            self.signals.result.emit(value)
        finally:
            self.signals.finished.emit()


class _Lane:
    """One FIFO queue served by at most one thread, started on demand, ending when idle."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: deque[Job] = deque()
        self.thread: threading.Thread | None = None
        self.current: Job | None = None


class WorkRunner(QObject):
    """Runs jobs in lanes and counts pending work (submitted and not yet finished)."""

    busyChanged = Signal(int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}
        self._pending = 0
        self._tokens: set[int] = set()
        self._next_token = 0
        self._closed = False
        self._started: list[threading.Thread] = []
        self._live: dict[int, Job] = {}

    # -- pending-work counter (GUI thread) -------------------------------------------------
    def pending(self) -> int:
        """Jobs submitted and not finished, plus open :meth:`begin` tokens."""
        return self._pending

    def _change(self, delta: int) -> None:
        self._pending = max(0, self._pending + delta)
        self.busyChanged.emit(self._pending)

    def begin(self, name: str = "work") -> int:
        """Count outside work as pending until :meth:`end` is called with the token."""
        self._next_token += 1
        self._tokens.add(self._next_token)
        self._change(+1)
        return self._next_token

    def end(self, token: int) -> None:
        if token in self._tokens:
            self._tokens.discard(token)
            self._change(-1)

    def _job_finished(self, job: Job) -> None:
        self._live.pop(id(job), None)
        self._change(-1)

    # -- running jobs ----------------------------------------------------------------------
    def submit(self, job: Job, lane: str = "default", latest_only: bool = False) -> Job:
        """Queue ``job`` in ``lane``; with ``latest_only`` queued (not started) jobs are dropped.

        Must be called from the GUI thread. Dropped jobs get ``finished`` (with ``job.dropped``
        set) so that whoever waits on them is released.
        """
        if self._closed:
            job.dropped = True
            return job
        # The runner owns the job until its queued ``finished`` arrives: were the JobSignals
        # object collected earlier, Qt would silently drop the queued result.
        self._live[id(job)] = job
        job.signals.finished.connect(lambda j=job: self._job_finished(j))
        self._change(+1)
        dropped: list[Job] = []
        with self._lock:
            ln = self._lanes.setdefault(lane, _Lane(lane))
            if latest_only:
                dropped = list(ln.queue)
                ln.queue.clear()
                if ln.current is not None:
                    ln.current.cancel()
            ln.queue.append(job)
            if ln.thread is None:
                ln.thread = threading.Thread(target=self._serve, args=(ln,),
                                             name=f"pneumoview-{lane}", daemon=True)
                ln.thread.start()
                self._started = [t for t in self._started if t.is_alive()] + [ln.thread]
        for old in dropped:
            old.dropped = True
            old.cancel()
            old.signals.finished.emit()  # same thread: delivered now
        return job

    def _serve(self, ln: _Lane) -> None:
        while True:
            with self._lock:
                if not ln.queue:
                    ln.thread = None
                    ln.current = None
                    return
                job = ln.queue.popleft()
                ln.current = job
            job.run()

    def cancel_lane(self, lane: str) -> None:
        """Cancel the running job of ``lane`` and drop its queue (GUI thread)."""
        with self._lock:
            ln = self._lanes.get(lane)
            if ln is None:
                return
            dropped = list(ln.queue)
            ln.queue.clear()
            if ln.current is not None:
                ln.current.cancel()
        for old in dropped:
            old.dropped = True
            old.cancel()
            old.signals.finished.emit()

    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return [t for t in self._started if t.is_alive()]

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Cancel everything and join the lane threads; True when all ended in ``timeout``."""
        self._closed = True
        for name in list(self._lanes):
            self.cancel_lane(name)
        ok = True
        for thread in self.threads():
            thread.join(timeout)
            ok = ok and not thread.is_alive()
        if not ok:
            log.warning("a background job did not stop in %.0f s (slow disk or network?)",
                        timeout)
        return ok
