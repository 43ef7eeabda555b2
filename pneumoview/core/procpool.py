"""A small supervised pool of worker processes for work that may crash, hang or eat memory.

Decoding files nobody curated runs C codecs on hostile bytes: a segfault, an endless loop or a
multi-gigabyte allocation in a codec must cost one report row, not the run. Each worker here is
a separate process (``spawn`` context: no inherited locks or torch state) with

* its own pipe and its tasks run in the order sent, so the supervisor always knows which task a
  dead worker was running (the oldest unanswered one); a pool built with ``depth=2`` sends each
  worker its next task while it runs the current one, so no worker waits for the parent
  between files (a dead worker's unstarted tasks go to another worker, unharmed);
* a per-task wall-clock limit: past it the worker is killed, the task reported as failed and the
  worker restarted;
* a memory limit (``RLIMIT_AS`` on Linux, set before anything big is imported) so a runaway
  allocation fails inside the worker (``MemoryError``) instead of taking the machine down;
* death by a signal reported with the signal's name, then a restart.

Workers run ``target`` (``"package.module:function"``, imported inside the worker), which takes
one picklable payload and returns a picklable value. Only strings cross back for failures:
:class:`~pneumoview.core.errors.PneumoViewError` messages as they are, anything else as
``"TypeName: message"`` - never a pickled exception.

A supervisor thread in the parent feeds tasks, collects results into a queue and enforces the
limits, so the consumer (the batch engine's inference loop) can block on the model while workers
keep decoding. This module imports only the standard library at module level, so the worker
processes start with nothing but what their target needs.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from pneumoview.core import defaults
from pneumoview.core.errors import PneumoViewError

log = logging.getLogger(__name__)

#: Environment given to workers before they import numpy/pydicom: one thread each, because the
#: pool's parallelism is the number of workers (and torch's threads are counted separately).
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}

#: Signals a worker ignores: the parent handles them (see ``pneumoview flag``) and ends the
#: workers itself once the rows in flight are done.
PARENT_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

#: A worker that dies this many times in a row before it is ready means the pool cannot work
#: at all (broken install, a memory limit below what the imports need): a fatal error.
MAX_START_FAILURES = 3


#: Address-space limit per decode worker (MiB); the rule is :func:`defaults.memory_limit_mib`.
default_memory_limit_mb = defaults.memory_limit_mib


@dataclass(frozen=True)
class TaskResult:
    """The outcome of one task: ``ok`` with ``value``, or not ok with a one-line ``message``."""

    key: Any
    ok: bool
    value: Any = None
    message: str = ""


default_workers = defaults.decode_workers


def signal_name(exitcode: int | None) -> str:
    """``-11`` -> ``"SIGSEGV"``; a plain exit code -> ``"exit code N"``."""
    if exitcode is None:
        return "unknown cause"
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


# --------------------------------------------------------------------------------------------
# The worker process


def tune_malloc(mmap_threshold_mb: int = 256, trim_threshold_mb: int = 512) -> bool:
    """Keep large freed buffers in the heap for reuse (glibc only; False elsewhere).

    By default glibc hands every buffer over 32 MiB (and, adaptively, smaller ones) straight
    back to the OS, so each decoded image and each model batch pays thousands of page faults
    to get fresh zeroed pages: measured here, 9.6 -> 5.4 ms per 1024x1024 decode + model
    input, and 42 -> 36 CPU ms per image for a ResNet18 batch. Raising the thresholds keeps
    that memory for the next image (at most ``trim_threshold_mb`` of free heap is retained).
    Worth it in the decode workers and the headless ``flag`` process; the GUI leaves its own
    heap alone.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok_mmap = mallopt(m_mmap_threshold, int(mmap_threshold_mb) << 20)
    ok_trim = mallopt(m_trim_threshold, int(trim_threshold_mb) << 20)
    return bool(ok_mmap and ok_trim)


def _set_memory_limit(limit_bytes: int | None) -> None:
    if not limit_bytes or not sys.platform.startswith("linux"):
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    new = int(limit_bytes)
    if hard != resource.RLIM_INFINITY:
        new = min(new, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (new, hard))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PneumoViewError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "ran out of memory while decoding (over the per-file memory limit)"
    text = str(exc).replace("\n", " ").strip()
    return f"{type(exc).__name__}: {text}"[:500]


def _worker_main(conn: Connection, target: str, memory_limit: int | None,
                 env: dict[str, str], nice: int = 0, warm: str | None = None) -> None:
    """Worker entry point: limits first, then import the target (and run ``warm``, which
    imports what the first task would), then serve tasks."""
    os.environ.update(env)
    if nice > 0 and hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(nice)  # below the GUI's own threads: the viewer comes first
    # Ctrl+C, a hang-up or a polite kill sent to the whole process group belong to the parent:
    # it finishes the rows in flight and then stops the workers itself
    for name in PARENT_SIGNALS:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    _set_memory_limit(memory_limit)
    tune_malloc()
    try:
        module_name, _, func_name = target.partition(":")
        func: Callable[[Any], Any] = getattr(importlib.import_module(module_name), func_name)
    except BaseException as exc:  # reported as text, then exit
        with contextlib.suppress(Exception):
            conn.send(("failed", _describe(exc)))
        return
    _warm_up(warm)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            _exit_now()
        task_id, payload = msg
        try:
            reply = (task_id, True, func(payload), "")
        except BaseException as exc:  # every failure becomes a message
            reply = (task_id, False, None, _describe(exc))
        try:
            conn.send(reply)
        except (BrokenPipeError, EOFError, OSError):
            return
        except Exception as exc:  # an unpicklable value
            conn.send((task_id, False, None, f"worker could not send its result ({exc})"))


def _exit_now() -> None:
    """Leave at once when told to stop: the worker holds nothing to save (it writes no files,
    its results are sent), and the interpreter's teardown (about 60 ms with numpy and pydicom
    loaded) would only keep the parent waiting at the end of every run."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _warm_up(warm: str | None) -> None:
    """Run the ``"module:function"`` warm-up; a failure only costs the head start (the first
    task meets the same problem and reports it for its file)."""
    if not warm:
        return
    module_name, _, func_name = warm.partition(":")
    try:
        getattr(importlib.import_module(module_name), func_name)()
    except Exception as exc:
        log.debug("worker warm-up %s failed: %s", warm, _describe(exc))


# --------------------------------------------------------------------------------------------
# The supervisor side


class _Worker:
    """One process, its pipe, and the task it is running (if any)."""

    def __init__(self, ctx: Any, target: str, memory_limit: int | None, nice: int = 0,
                 warm: str | None = None) -> None:
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self.conn: Connection = parent_conn
        self.proc = ctx.Process(target=_worker_main, name="pneumoview-decode",
                                args=(child_conn, target, memory_limit, dict(WORKER_ENV),
                                      nice, warm),
                                daemon=True)
        self.proc.start()
        child_conn.close()
        self.ready = False
        self.task: tuple[int, Any, Any] | None = None  # (task id, key, payload) it runs
        self.queued: deque[tuple[int, Any, Any]] = deque()  # sent after it, not yet started
        self.started = 0.0

    @property
    def in_flight(self) -> int:
        return (self.task is not None) + len(self.queued)

    def finish_task(self) -> None:
        """The running task answered: the next one sent starts now."""
        self.task = self.queued.popleft() if self.queued else None
        self.started = time.monotonic()

    def take_unstarted(self) -> list[tuple[Any, Any]]:
        """The ``(key, payload)`` of tasks sent but not started (to run elsewhere)."""
        items = [(key, payload) for _, key, payload in self.queued]
        self.queued.clear()
        return items

    def usable(self) -> bool:
        """Its pipe is open and the process has not exited (it may still be starting)."""
        try:
            return not self.conn.closed and self.proc.exitcode is None
        except ValueError:  # the process object was closed
            return False

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.join(5)
        with contextlib.suppress(Exception):
            self.conn.close()

    def ask_to_stop(self) -> None:
        """Send the stop message (the worker exits after the task it runs)."""
        with contextlib.suppress(Exception):
            self.conn.send(None)

    def await_stop(self, grace: float = 1.0) -> None:
        """Wait up to ``grace`` seconds for an asked worker to exit, then kill it."""
        self.proc.join(grace)
        if self.proc.is_alive():
            self.kill()
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(Exception):
            self.proc.close()


_DONE = object()


@dataclass
class _Feed:
    """The task stream of one :meth:`ProcessPool.imap_unordered` call, as its supervisor
    loop sees it: tasks to re-send after a restart come first."""

    items: Iterator[tuple[Any, Any]]
    next_id: int = 0
    exhausted: bool = False
    retry: list[tuple[Any, Any]] = field(default_factory=list)
    start_failures: int = 0  # worker deaths in a row before one was ready

    def next_task(self) -> tuple[Any, Any] | None:
        if self.retry:
            return self.retry.pop()
        if self.exhausted:
            return None
        try:
            return next(self.items)
        except StopIteration:
            self.exhausted = True
            return None


class ProcessPool:
    """Supervised worker processes running ``target`` on payloads; see the module docstring.

    Use as a context manager; :meth:`imap_unordered` runs one stream of tasks at a time.
    ``nice`` lowers the workers' CPU priority (the GUI passes a positive value so that the
    viewer's own decoding is served first).
    """

    def __init__(self, target: str, workers: int | None = None, *,
                 timeout_s: float = defaults.DECODE_TIMEOUT_S,
                 memory_limit_bytes: int | None = None, max_ahead: int | None = None,
                 start_timeout_s: float = defaults.WORKER_START_TIMEOUT_S, nice: int = 0,
                 depth: int = 1, warm: str | None = None) -> None:
        import multiprocessing

        self.target = target
        self.n_workers = max(1, int(workers or default_workers()))
        self.timeout_s = float(timeout_s)
        self.memory_limit = memory_limit_bytes
        self.max_ahead = max(1, int(max_ahead or 4 * self.n_workers))
        self.start_timeout_s = float(start_timeout_s)
        self.nice = int(nice)
        self.depth = max(1, int(depth))  # tasks sent to a worker ahead of its answers
        self.warm = warm  # "module:function" each worker runs once before it is ready
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.restarts = 0
        self._busy_done_s = 0.0

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> ProcessPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start workers up to the pool's size, replacing any that died or were killed.

        A stream that ended early (the consumer stopped reading) may leave a killed worker
        that the supervisor did not replace; the next stream must not find it.
        """
        with self._lock:
            self._workers = [w for w in self._workers if w.usable()]
            while len(self._workers) < self.n_workers:
                self._workers.append(self._spawn())

    def _spawn(self) -> _Worker:
        w = _Worker(self._ctx, self.target, self.memory_limit, self.nice, self.warm)
        w.started = time.monotonic()
        return w

    def close(self, cancel: bool = False) -> None:
        """Stop the supervisor and every worker (killed at once when ``cancel``)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)
        with self._lock:
            workers, self._workers = self._workers, []
        idle = [w for w in workers if not cancel and w.task is None]
        for w in idle:  # all asked first: they exit side by side, not one after another
            w.ask_to_stop()
        for w in workers:
            if w in idle:
                w.await_stop()
            else:
                w.kill()
        self._closed = True

    @property
    def busy_seconds(self) -> float:
        """Worker-seconds spent on tasks so far (finished ones plus those in flight)."""
        now = time.monotonic()
        running = sum(now - w.started for w in list(self._workers) if w.task is not None)
        return self._busy_done_s + running

    @property
    def busy(self) -> int:
        """How many workers are running a task right now (for the torch thread rule)."""
        return sum(1 for w in list(self._workers) if w.task is not None)

    # -- running ----------------------------------------------------------------------------
    def imap_unordered(self, items: Iterable[tuple[Any, Any]], poll_s: float = 0.25,
                       ticks: bool = False) -> Generator[TaskResult | None, None, None]:
        """Run ``(key, payload)`` items; yield a :class:`TaskResult` per item as they finish.

        At most ``max_ahead`` finished results wait unread (back-pressure on a slow consumer).
        Raises :class:`PneumoViewError` if the workers cannot start at all. Closing the
        generator early stops dispatching; call :meth:`close` to end the workers. With
        ``ticks``, ``None`` is yielded whenever nothing arrived for ``poll_s`` (so the consumer
        can flush a partial batch or check for cancellation).
        """
        if self._closed:
            raise RuntimeError("pool is closed")
        self.start()
        out: queue.Queue[Any] = queue.Queue()
        self._stop.clear()
        self._thread = threading.Thread(target=self._supervise, args=(iter(items), out),
                                        name="pneumoview-pool-supervisor", daemon=True)
        self._thread.start()
        try:
            while True:
                try:
                    item = out.get(timeout=poll_s)
                except queue.Empty:
                    if not self._thread.is_alive() and out.empty():
                        raise RuntimeError("pool supervisor ended unexpectedly") from None
                    if ticks:
                        yield None
                    continue
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            self._thread.join(30)

    def _supervise(self, items: Iterator[tuple[Any, Any]], out: queue.Queue[Any]) -> None:
        try:
            self._loop(items, out)
            out.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            out.put(exc if isinstance(exc, PneumoViewError)
                    else PneumoViewError(f"the decode worker pool failed: {_describe(exc)}"))

    def _loop(self, items: Iterator[tuple[Any, Any]], out: queue.Queue[Any]) -> None:
        """Dispatch tasks, then handle each worker's message, death or deadline, until the
        items are done (or the pool is stopped)."""
        feed = _Feed(items)
        while not self._stop.is_set():
            with self._lock:
                workers = list(self._workers)
            self._dispatch(workers, feed, out)
            if feed.exhausted and not feed.retry and all(w.task is None for w in workers):
                return
            ready = self._wait(workers)
            for w in workers:
                if w.conn in ready and self._on_message(w, feed, out):
                    continue
                if self._on_death_or_deadline(w, ready, feed, out):
                    self._restart(w)

    def _dispatch(self, workers: list[_Worker], feed: _Feed, out: queue.Queue[Any]) -> None:
        """Fill each ready worker up to ``depth`` tasks while the consumer keeps up."""
        for depth in range(1, self.depth + 1):  # every worker gets a task before any a second
            for w in workers:
                if not w.ready or w.in_flight >= depth:
                    continue
                if out.qsize() >= self.max_ahead:
                    return
                task = feed.next_task()
                if task is None:
                    return
                self._send(w, task, feed)

    def _send(self, w: _Worker, task: tuple[Any, Any], feed: _Feed) -> None:
        key, payload = task
        feed.next_id += 1
        try:
            w.conn.send((feed.next_id, payload))
        except (BrokenPipeError, EOFError, OSError):
            feed.retry.append((key, payload))  # the death is handled by the caller
            return
        if w.task is None:
            w.task = (feed.next_id, key, payload)
            w.started = time.monotonic()
        else:
            w.queued.append((feed.next_id, key, payload))

    def _wait(self, workers: list[_Worker]) -> set[Any]:
        """Wait for a result, a death or the next deadline (at most 0.2 s)."""
        now = time.monotonic()
        deadline = 0.2
        for w in workers:
            limit = self.timeout_s if w.ready else self.start_timeout_s
            deadline = min(deadline, max(0.0, w.started + limit - now))
        waitables: list[Any] = [w.conn for w in workers] + [w.proc.sentinel for w in workers]
        return set(wait(waitables, timeout=deadline)) if waitables else set()

    def _on_message(self, w: _Worker, feed: _Feed, out: queue.Queue[Any]) -> bool:
        """Handle what ``w`` sent; True when that settles the worker for this round."""
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            msg = None
        if msg is None:
            w.proc.join(1)  # the pipe closed: the process is dying
            return False
        if msg[0] == "ready":
            w.ready = True
            feed.start_failures = 0
            return True
        if msg[0] == "failed":
            raise PneumoViewError(f"decode workers cannot start: {msg[1]}")
        if w.task is not None and msg[0] == w.task[0]:
            _, key, _ = w.task
            self._busy_done_s += time.monotonic() - w.started
            w.finish_task()
            _, ok, value, message = msg
            out.put(TaskResult(key, ok, value, message))
            return True
        return False

    def _on_death_or_deadline(self, w: _Worker, ready: set[Any], feed: _Feed,
                              out: queue.Queue[Any]) -> bool:
        """A dead worker or one past its deadline: its task gets an error result; True when
        the worker must be restarted."""
        if not w.proc.is_alive() or (w.conn in ready and w.proc.exitcode is not None):
            self._on_death(w, feed, out)
            feed.retry.extend(w.take_unstarted())
            return True
        if w.task is not None and time.monotonic() - w.started > self.timeout_s:
            feed.retry.extend(w.take_unstarted())
            _, key, _ = w.task
            out.put(TaskResult(
                key, False, None,
                f"decoding took longer than {self.timeout_s:g} s and was stopped "
                "(a hung codec or an extreme file); it was skipped"))
            return True
        if not w.ready and time.monotonic() - w.started > self.start_timeout_s:
            raise PneumoViewError(
                f"a decode worker did not start within {self.start_timeout_s:g} s")
        return False

    def _on_death(self, w: _Worker, feed: _Feed, out: queue.Queue[Any]) -> None:
        w.proc.join(1)
        code = w.proc.exitcode
        if w.task is not None:
            _, key, _ = w.task
            out.put(TaskResult(
                key, False, None,
                f"the decoder crashed ({signal_name(code)}) on this file; it was "
                "skipped (a corrupt file or a codec bug)"))
        elif not w.ready:
            feed.start_failures += 1
            if feed.start_failures >= MAX_START_FAILURES:
                raise PneumoViewError(
                    f"decode workers cannot start (they exited with "
                    f"{signal_name(code)}); check the installation and the memory "
                    "limit")

    def _restart(self, w: _Worker) -> None:
        if w.task is not None:
            self._busy_done_s += time.monotonic() - w.started
        w.task = None
        w.queued.clear()  # already handed back to the feed
        w.kill()
        self.restarts += 1
        if self._stop.is_set():
            return
        with self._lock:
            if w in self._workers:
                self._workers[self._workers.index(w)] = self._spawn()
        log.warning("decode worker restarted (exit: %s)", signal_name(w.proc.exitcode))
