"""Background jobs: results arrive in the GUI thread, pending work is counted, stale jobs drop."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QThread

from pneumoview.core.errors import PneumoViewError
from pneumoview.qt.workers import Job, WorkRunner


def test_result_error_and_order_in_the_gui_thread(qtbot):
    runner = WorkRunner()
    events: list[tuple[str, object, bool]] = []
    main = QThread.currentThread()

    def record(name):
        return lambda *a: events.append((name, a[0] if a else None,
                                         QThread.currentThread() is main))

    ok = Job(lambda x: x * 2, 21)
    bad = Job(lambda: (_ for _ in ()).throw(PneumoViewError("broken", "f.dcm")))
    for job, tag in ((ok, "ok"), (bad, "bad")):
        for sig in ("started", "result", "error", "finished"):
            getattr(job.signals, sig).connect(record(f"{tag}.{sig}"))
        runner.submit(job, lane="a")
    assert runner.pending() == 2
    qtbot.waitUntil(lambda: runner.pending() == 0, timeout=5000)
    names = [e[0] for e in events]
    assert names == ["ok.started", "ok.result", "ok.finished",
                     "bad.started", "bad.error", "bad.finished"]
    assert events[1][1] == 42
    assert isinstance(events[4][1], PneumoViewError)
    assert all(e[2] for e in events)
    assert runner.shutdown(2)


def test_latest_only_drops_queued_jobs_and_cancels_the_running_one(qtbot):
    runner = WorkRunner()
    gate = threading.Event()
    seen: list[int] = []

    def slow(i: int, job_ref: list) -> int:
        if i == 0:
            gate.wait(5)
            return -1 if job_ref[0].is_cancelled() else 0
        return i

    jobs = []
    for i in range(4):
        ref: list = []
        job = Job(slow, i, ref)
        ref.append(job)
        job.signals.result.connect(seen.append)
        jobs.append(runner.submit(job, lane="decode", latest_only=True))
        time.sleep(0.05)
    gate.set()
    qtbot.waitUntil(lambda: runner.pending() == 0, timeout=5000)
    assert jobs[1].dropped and jobs[2].dropped and not jobs[3].dropped
    assert seen == [-1, 3]  # the running one saw its cancel flag; only the latest ran after
    assert runner.shutdown(2)
    assert not runner.threads()


def test_begin_end_tokens_and_shutdown_joins(qtbot):
    runner = WorkRunner()
    token = runner.begin("model load")
    assert runner.pending() == 1
    runner.end(token)
    runner.end(token)  # twice is harmless
    assert runner.pending() == 0
    stop = threading.Event()
    job = Job(lambda: stop.wait(10))
    job.bind()
    runner.submit(job, lane="long")
    stop.set()
    assert runner.shutdown(5)
    assert not any(t.is_alive() for t in runner.threads())
    late = runner.submit(Job(lambda: 1))
    assert late.dropped  # nothing runs after shutdown
