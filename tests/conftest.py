"""Shared test setup: offscreen Qt, per-session user folders, and no thread left behind."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PNEUMOVIEW_TORCH_THREADS", "1")

THREAD_GRACE_S = 3.0


@pytest.fixture(scope="session", autouse=True)
def _user_dirs(tmp_path_factory: pytest.TempPathFactory):
    """Settings, caches and data go to temporary folders, never the user's real ones."""
    mp = pytest.MonkeyPatch()
    for var, name in (("PNEUMOVIEW_CONFIG_DIR", "config"), ("PNEUMOVIEW_CACHE_DIR", "cache"),
                      ("PNEUMOVIEW_DATA_DIR", "data")):
        mp.setenv(var, str(tmp_path_factory.mktemp(name)))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _fresh_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Each test starts from default settings: one test's saved preferences (a 1 MiB image
    limit, a threshold) must not leak into the windows of later tests."""
    monkeypatch.setenv("PNEUMOVIEW_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))


def _python_threads() -> set[threading.Thread]:
    # _DummyThread: a foreign (e.g. Qt pool) thread that once ran Python; Python 3.11 never
    # forgets them, so they say nothing about what is running now (Qt pools are checked below).
    return {t for t in threading.enumerate()
            if t.is_alive() and not isinstance(t, threading._DummyThread)}


@pytest.fixture(autouse=True)
def _no_thread_left_running():
    """Fail a test that leaves a Python thread or a busy Qt thread pool behind."""
    before = _python_threads()
    yield
    deadline = time.monotonic() + THREAD_GRACE_S
    extra = _python_threads() - before
    while extra and time.monotonic() < deadline:
        time.sleep(0.02)
        extra = _python_threads() - before
    problems = [f"thread {t.name!r} still running" for t in extra]
    if "PySide6.QtCore" in sys.modules:
        from PySide6.QtCore import QThreadPool

        pool = QThreadPool.globalInstance()
        if not pool.waitForDone(int(THREAD_GRACE_S * 1000)):
            problems.append(f"{pool.activeThreadCount()} QThreadPool thread(s) still busy")
    if problems:
        pytest.fail("test left work running: " + "; ".join(problems))
