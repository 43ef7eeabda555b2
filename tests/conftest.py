"""Shared test setup: offscreen Qt, per-session user folders, the shared data, no thread left.

The real data sets (``../shared/data``) are found only through :mod:`shared_data`
(``PNEUMOVIEW_TEST_DATA`` = another folder, or ``none`` to hide it); the ``shared_data`` marker
and fixture below are how a test says it uses them.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import shared_data as _shared

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PNEUMOVIEW_TORCH_THREADS", "1")

THREAD_GRACE_S = 3.0
SHARED_MARKER = "shared_data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{SHARED_MARKER}(*parts): uses the real data in ../shared/data "
        f"({_shared.ENV_VAR} overrides it; 'none' hides it). With parts (e.g. \"dicom\") "
        "the test skips with a reason when they are missing; without, it runs either way.")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fixture implies the marker; a marker naming missing data skips with the reason."""
    for item in items:
        if SHARED_MARKER in getattr(item, "fixturenames", ()) \
                and item.get_closest_marker(SHARED_MARKER) is None:
            item.add_marker(SHARED_MARKER)
        for mark in item.iter_markers(SHARED_MARKER):
            if mark.args and _shared.shared_path(*mark.args) is None:
                item.add_marker(pytest.mark.skip(reason=_shared.absent_reason(*mark.args)))
                break


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _shared.lookups.clear()  # what this test looks up, fixtures included (checked below)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):  # a hook wrapper
    """A test that looked the shared data up must say so with the marker: ``.ci/run`` runs
    the marked tests again with the data hidden, and an unmarked one would escape that."""
    result = yield
    if _shared.lookups and item.get_closest_marker(SHARED_MARKER) is None:
        pytest.fail(f"{item.nodeid} looks for the shared data ({_shared.lookups[0]}) but has "
                    f"no @pytest.mark.{SHARED_MARKER} marker", pytrace=False)
    return result


@pytest.fixture(scope="session")
def shared_data() -> Path | None:
    """The real data folder (``../shared/data`` or ``PNEUMOVIEW_TEST_DATA``), or None when
    absent or hidden. Using it marks the test ``shared_data``."""
    return _shared.shared_data_dir()


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


# ---- viewer windows (issue 15, Qt half: owned by the 15b helper) -------------------------------
@pytest.fixture(scope="module")
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight model directory in the real format, made once per test module.

    A module picks its weights and input size with the module constants ``MODEL_SEED``
    (default 0) and ``MODEL_INPUT_SIZE`` (default 224); each module gets its own directory, so
    a module that edits its model's files cannot disturb another.
    """
    from tests.support.model_fixture import make_random_model_dir

    seed = int(getattr(request.module, "MODEL_SEED", 0))
    input_size = int(getattr(request.module, "MODEL_INPUT_SIZE", 224))
    return make_random_model_dir(tmp_path_factory.mktemp("model") / "m", seed=seed,
                                 input_size=input_size)


@pytest.fixture
def make_viewer_window(request: pytest.FixtureRequest):  # a factory fixture
    """A factory of main windows, in the style of napari's ``make_napari_viewer``.

    ``make_viewer_window(model=..., device="cpu", settings=None, show=True,
    screenshot_mode=False)`` returns a :class:`~pneumoview.qt.mainwindow.MainWindow` (shown and
    exposed unless ``show=False``). Every window made is closed at teardown, and the test fails
    if one leaves a background job running.
    """
    qtbot = request.getfixturevalue("qtbot")
    windows = []

    def make(*, model: str | os.PathLike[str] | None = None, device: str | None = "cpu",
             settings=None, show: bool = True, screenshot_mode: bool = False):
        from pneumoview.core.settings import Settings
        from pneumoview.qt.mainwindow import MainWindow, ViewerOptions

        options = ViewerOptions(model=None if model is None else str(model), device=device,
                                screenshot_mode=screenshot_mode)
        win = MainWindow(settings if settings is not None else Settings(), options)
        qtbot.addWidget(win)
        windows.append(win)
        if show:
            win.show()
            qtbot.waitExposed(win)
        return win

    yield make
    left = []
    for win in windows:
        win.close()
        left += [t.name for t in win.runner.threads()] if hasattr(win.runner, "threads") else []
    if left:
        pytest.fail(f"a viewer window left background work running: {left}")
