"""The one thread rule: cores minus other busy workers, at least one, capped by the env."""

from __future__ import annotations

import threading

import pytest

from pneumoview.core import threads


def test_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV_CAP, raising=False)
    monkeypatch.setattr(threads, "cpu_count", lambda: 8)
    assert threads.torch_threads(0) == 8
    assert threads.torch_threads(3) == 5
    assert threads.torch_threads(20) == 1
    monkeypatch.setenv(threads.ENV_CAP, "2")
    assert threads.torch_threads(0) == 2 and threads.torch_threads(7) == 1


def test_busy_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV_CAP, raising=False)
    monkeypatch.setattr(threads, "cpu_count", lambda: 4)
    base = threads.busy_workers()
    with threads.busy(2):
        assert threads.busy_workers() == base + 2
        assert threads.torch_threads() == max(1, 4 - base - 2)
        with threads.busy():
            assert threads.busy_workers() == base + 3
    assert threads.busy_workers() == base


def test_busy_is_thread_safe() -> None:
    base = threads.busy_workers()
    seen: list[int] = []

    def work() -> None:
        for _ in range(200):
            with threads.busy():
                seen.append(threads.busy_workers())

    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert threads.busy_workers() == base and max(seen) <= base + 4


def test_apply_sets_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv(threads.ENV_CAP, "1")
    before = torch.get_num_threads()
    try:
        assert threads.apply_torch_threads(0) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_interactive_runs_come_first() -> None:
    import time

    assert not threads.interactive_active()
    assert threads.wait_for_interactive(timeout=0.01)
    release = threading.Event()
    entered = threading.Event()

    def viewer() -> None:
        with threads.interactive():
            entered.set()
            release.wait(5)

    t = threading.Thread(target=viewer)
    t.start()
    try:
        entered.wait(5)
        assert threads.interactive_active()
        t0 = time.perf_counter()
        assert not threads.wait_for_interactive(timeout=0.2)  # still busy: gave up after 0.2 s
        assert time.perf_counter() - t0 >= 0.19
        threading.Timer(0.2, release.set).start()
        assert threads.wait_for_interactive(timeout=5)  # released when the viewer finished
    finally:
        release.set()
        t.join()
    assert not threads.interactive_active()


def test_batch_engine_waits_for_viewer_engine(tmp_path) -> None:
    import time

    import numpy as np

    from pneumoview.core.inference import Engine
    from tests.support.model_fixture import make_random_model_dir

    model_dir = make_random_model_dir(tmp_path / "m")
    batch = Engine(model_dir, device="cpu", with_cam=False)
    assert not batch.interactive and Engine(model_dir, device="cpu").interactive
    batch.load()
    x = [np.zeros((224, 224), np.float32)]
    batch.logits(x)  # warm
    release = threading.Event()
    entered = threading.Event()

    def viewer() -> None:
        with threads.interactive():
            entered.set()
            release.wait(5)

    t = threading.Thread(target=viewer)
    t.start()
    try:
        entered.wait(5)
        threading.Timer(0.5, release.set).start()
        t0 = time.perf_counter()
        batch.logits(x)
        assert time.perf_counter() - t0 >= 0.45  # held back until the viewer's run ended
    finally:
        release.set()
        t.join()


def test_release_queued_just_before_the_worker_is_deleted_is_dropped(qtbot) -> None:
    """A model failure answered just before the client deletes the worker used to emit
    busyChanged from a deleted QObject on the next event-loop turn ("Signal source has been
    deleted", an error in the Qt event loop that failed an unrelated GUI test under load)."""
    import shiboken6

    from pneumoview.qt.ai.worker import InferenceWorker

    worker = InferenceWorker(model_dir="/nonexistent", device="cpu")
    worker._on_failed("no model")  # queues the release of its pending unit
    shiboken6.delete(worker)
    qtbot.wait(50)  # the queued release runs here (or is dropped with its context)
