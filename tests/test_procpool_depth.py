"""A pool that sends each worker its next task early (``depth=2``) loses nothing when a worker
dies or hangs: the task it was running gets the error, the one waiting behind it runs on the
restarted worker; and the warm-up runs before the first task."""

from __future__ import annotations

import os
from collections import deque
from typing import Any

import pytest

from pneumoview.core.procpool import ProcessPool

FAULTY = "test_batch_faults:faulty_decode"
_WARMED: list[int] = []


def warm() -> None:
    _WARMED.append(os.getpid())


def report_warm(payload: dict[str, Any]) -> dict[str, Any]:
    return {"warmed": os.getpid() in _WARMED, "n": payload["n"]}


def _items(names: list[str]) -> list[tuple[str, dict[str, Any]]]:
    return [(n, {"path": f"/nonexistent/{n}", "file_size": 1}) for n in names]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_crash_costs_its_own_task_only_and_the_queued_one_runs(workers: int) -> None:
    names = ["a.dcm", "crash.dcm", "b.dcm", "c.dcm", "crash2.dcm", "d.dcm", "e.dcm"]
    with ProcessPool(FAULTY, workers, timeout_s=30, depth=2) as pool:
        got = [r for r in pool.imap_unordered(_items(names))]
        restarts = pool.restarts
    keys = [r.key for r in got]
    assert sorted(keys) == sorted(names)  # every task answered exactly once
    assert restarts == 2
    by = {r.key: r for r in got}
    for bad in ("crash.dcm", "crash2.dcm"):
        assert not by[bad].ok and "SIGSEGV" in by[bad].message
    for good in ("a.dcm", "b.dcm", "c.dcm", "d.dcm", "e.dcm"):
        assert by[good].ok and "file not found" in by[good].value["message"]


def test_a_hang_times_out_alone_and_the_queued_task_runs_elsewhere() -> None:
    names = ["a.dcm", "hang.dcm", "b.dcm", "c.dcm"]
    with ProcessPool(FAULTY, 1, timeout_s=2, depth=2) as pool:
        got = {r.key: r for r in pool.imap_unordered(_items(names))}
        assert pool.restarts == 1
    assert set(got) == set(names)
    assert not got["hang.dcm"].ok and "longer than 2 s" in got["hang.dcm"].message
    assert all(got[k].ok for k in ("a.dcm", "b.dcm", "c.dcm"))


def test_the_warm_up_runs_in_each_worker_before_its_first_task() -> None:
    items = [(i, {"n": i}) for i in range(6)]
    with ProcessPool("test_procpool_depth:report_warm", 2, depth=2,
                     warm="test_procpool_depth:warm") as pool:
        got = list(pool.imap_unordered(items))
    assert sorted(r.value["n"] for r in got) == list(range(6))
    assert all(r.ok and r.value["warmed"] for r in got)


def test_a_failing_warm_up_only_costs_the_head_start() -> None:
    with ProcessPool(FAULTY, 1, depth=2, warm="no_such_module_here:warm") as pool:
        got = list(pool.imap_unordered(_items(["a.dcm", "b.dcm"])))
    assert sorted(r.key for r in got) == ["a.dcm", "b.dcm"] and all(r.ok for r in got)


class _Conn:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, msg: Any) -> None:
        self.sent.append(msg)


class _FakeWorker:
    """What ``_dispatch`` reads and writes of a worker, without a process."""

    def __init__(self) -> None:
        self.ready = True
        self.task: Any = None
        self.queued: deque[Any] = deque()
        self.started = 0.0
        self.conn = _Conn()

    @property
    def in_flight(self) -> int:
        return (self.task is not None) + len(self.queued)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_dispatch_fills_every_worker_once_before_any_twice(depth: int) -> None:
    from pneumoview.core.procpool import _Feed

    pool = ProcessPool(FAULTY, 3, depth=depth, max_ahead=100)
    workers = [_FakeWorker() for _ in range(3)]
    feed = _Feed(iter([(k, {"k": k}) for k in range(4)]))
    import queue

    pool._dispatch(workers, feed, queue.Queue())  # type: ignore[arg-type]
    sent = [len(w.conn.sent) for w in workers]
    assert sent == ([1, 1, 1] if depth == 1 else [2, 1, 1])
    assert all(w.in_flight == len(w.conn.sent) for w in workers)
    assert workers[0].task[1] == 0 and workers[1].task[1] == 1 and workers[2].task[1] == 2
    if depth > 1:
        assert [t[1] for t in workers[0].queued] == [3]


def _leave_a_mark_at_exit() -> None:
    """Warm-up of the test below: an exit handler that writes a file (a worker's interpreter
    teardown would run it)."""
    import atexit

    mark = os.environ["PV_TEST_EXIT_MARK"] + f".{os.getpid()}"
    atexit.register(lambda: open(mark, "w").close())


def test_closing_asks_every_idle_worker_before_waiting_for_any(monkeypatch, tmp_path) -> None:
    """At the end of a run the workers are told to stop together and leave at once, without
    the interpreter's teardown (about 60 ms each with numpy and pydicom loaded, paid one after
    another before): the parent no longer waits for them in turn."""
    from pneumoview.core import procpool

    monkeypatch.setenv("PV_TEST_EXIT_MARK", str(tmp_path / "exited"))  # the workers inherit it
    events: list[str] = []
    ask, wait_for = procpool._Worker.ask_to_stop, procpool._Worker.await_stop
    monkeypatch.setattr(procpool._Worker, "ask_to_stop",
                        lambda self: (events.append("ask"), ask(self))[1])
    codes: list[int | None] = []

    def waiting(self, grace: float = 1.0) -> None:
        events.append("wait")
        self.proc.join(grace)
        codes.append(self.proc.exitcode)
        wait_for(self, grace)

    monkeypatch.setattr(procpool._Worker, "await_stop", waiting)
    pool = ProcessPool("test_procpool_depth:report_warm", 3, depth=2,
                       warm="test_procpool_depth:_leave_a_mark_at_exit")
    with pool:
        assert len(list(pool.imap_unordered([(i, {"n": i}) for i in range(6)]))) == 6
    assert events == ["ask"] * 3 + ["wait"] * 3
    assert codes == [0, 0, 0]
    assert list(tmp_path.iterdir()) == []  # no teardown ran: they left at once
