"""Stress: hundreds of rapid selections and window/level changes while a batch runs.

One main window with the fixture model: a batch flags one folder in the background (decode worker
process + inference thread) while the test hammers the viewer with 300 selections in random order,
programmatic W/L changes and real right-button drags. Then: the app is alive, the image shown is
the one selected last with that file's own pixels and window, the AI result on screen belongs to
that image and equals the engine's, the batch (cancelled if still running, so the test's time is
bounded) has at most one row per file and all of them if it finished, memory stayed bounded (the
decoded-frame cache obeys its byte limit), and closing leaves no thread or process behind.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytestmark = [pytest.mark.gui, pytest.mark.slow]

from PySide6.QtCore import QEvent, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from tests.support.dicom_factory import make_dataset, sample_file, save  # noqa: E402

N_IMAGES = 16
N_BATCH = 240
N_SELECTIONS = 300
TIMEOUT_MS = 180_000
RSS_GROWTH_LIMIT_MB = 400


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _pixels() -> np.ndarray:
    path = sample_file("RG1_UNCI.dcm")
    if path:
        import pydicom

        return pydicom.dcmread(path).pixel_array[::10, ::10][:192, :184].copy()
    y, x = np.mgrid[0:192, 0:184]
    return (2000 + 1500 * np.sin(x / 9.0) * np.cos(y / 7.0)).astype(np.uint16)


MODEL_SEED = 21  # the model_dir fixture's weights (tests/conftest.py)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A viewing folder (each image distinct: pixels and window) and a batch folder."""
    base = _pixels()
    view = tmp_path_factory.mktemp("stress-view")
    for i in range(N_IMAGES):
        arr = np.roll(base, 7 * i, axis=1).astype(np.uint16)
        arr[0, 0] = i  # a marker: every file's pixels differ
        ds = make_dataset(arr, bits_stored=15, modality="CR", BodyPartExamined="CHEST",
                          ViewPosition="PA", PatientName=f"Stress^{i:02d}",
                          PatientID=f"S{i:02d}", InstanceNumber=i + 1, SeriesNumber=1,
                          WindowCenter=9000 + 100 * i, WindowWidth=12000 + 10 * i)
        save(ds, view / f"im{i:02d}.dcm")
    batch = tmp_path_factory.mktemp("stress-batch")
    for i in range(N_BATCH):
        arr = np.roll(base, -5 * i, axis=0)[::3, ::3].astype(np.uint16)
        save(make_dataset(arr, bits_stored=15, modality="DX", PatientID=f"B{i}"),
             batch / f"b{i:02d}.dcm")
    (batch / "notes.txt").write_text("not an image")
    return view, batch


def _right_drag(qtbot, win, dx: float, dy: float, steps: int = 3) -> None:
    vp = win.view.graphics.viewport()
    start = QPointF(vp.width() / 2, vp.height() / 2)

    def send(kind: QEvent.Type, pos: QPointF, button: Qt.MouseButton,
             buttons: Qt.MouseButton) -> None:
        glob = QPointF(vp.mapToGlobal(pos.toPoint()))
        QApplication.sendEvent(vp, QMouseEvent(kind, pos, glob, button, buttons,
                                               Qt.KeyboardModifier.NoModifier))

    right = Qt.MouseButton.RightButton
    send(QEvent.Type.MouseButtonPress, start, right, right)
    end = start
    for i in range(1, steps + 1):
        qtbot.wait(20)
        end = start + QPointF(dx * i / steps, dy * i / steps)
        send(QEvent.Type.MouseMove, end, Qt.MouseButton.NoButton, right)
    send(QEvent.Type.MouseButtonRelease, end, right, Qt.MouseButton.NoButton)


def test_rapid_selection_and_window_level_while_a_batch_runs(qtbot, model_dir, folders,
                                                             tmp_path, monkeypatch) -> None:
    from pneumoview.core import dicomio
    from pneumoview.core.inference import Engine
    from pneumoview.core.settings import Settings
    from pneumoview.qt import mainwindow
    from pneumoview.qt.mainwindow import MainWindow, ViewerOptions

    view_dir, batch_dir = folders
    t_start = time.monotonic()
    win = MainWindow(Settings(), ViewerOptions(model=str(model_dir), device="cpu"))
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    rng = random.Random(8)
    try:
        win.open_path(str(view_dir))
        qtbot.waitUntil(lambda: len(win.tree.instances()) == N_IMAGES, timeout=TIMEOUT_MS)
        instances = sorted(win.tree.instances(), key=lambda inst: inst.path)
        with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS):
            win.show_instance(instances[0])
        one_image = mainwindow.prepared_nbytes(win.frames[(instances[0].path, 0)])
        # a byte limit that holds two of these frames: the count limit (3) must not decide
        byte_limit = int(2.5 * one_image)
        win.frames.max_bytes = byte_limit

        qtbot.waitUntil(lambda: win.ai.info is not None, timeout=TIMEOUT_MS)  # torch loaded
        ctl = win.batch
        if getattr(ctl, "model_dir", None) is None:
            ctl.model_dir = str(model_dir)
        ctl.device = "cpu"
        assert ctl.start(str(batch_dir), workers=1, batch_size=4,
                         out_dir=str(tmp_path / "reports")) is not None
        qtbot.waitUntil(lambda: len(ctl.panel.model.rows) >= 1, timeout=TIMEOUT_MS)
        rss0 = _rss_mb()
        shown: list[str] = []
        win.imageShown.connect(lambda d: shown.append(d.path))
        failed: list[str] = []
        win.imageFailed.connect(lambda p, m: failed.append(f"{p}: {m}"))
        max_cache = 0
        t_storm = time.monotonic()
        assert ctl.running, "the batch must still be running when the storm starts"
        batch_rows_during = []
        for i in range(N_SELECTIONS):
            win.show_instance(rng.choice(instances))
            if i % 7 == 0 and win.view.decoded is not None:
                win.view.set_levels(rng.uniform(2000, 14000), rng.uniform(500, 20000))
            if i % 40 == 0 and win.view.decoded is not None:
                _right_drag(qtbot, win, rng.uniform(-80, 80), rng.uniform(-80, 80))
            if i % 5 == 0:
                qtbot.wait(3)
            else:
                QApplication.processEvents()
            max_cache = max(max_cache, win.cache_bytes())
            if i % 50 == 0:
                batch_rows_during.append(len(ctl.panel.model.rows) if ctl.running else "done")
        storm_s = time.monotonic() - t_storm
        # the last selection: a file not touched by any drag since it was last shown
        last = instances[-1] if win.current_instance is not instances[-1] else instances[-2]
        win.show_instance(last)
        qtbot.waitUntil(lambda: win.view.decoded is not None
                        and win.view.decoded.path == last.path, timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: win.ai.current_prediction() is not None
                        and win.ai.current_prediction().path == last.path, timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: win.runner.pending() == 0 or not ctl.running,
                        timeout=TIMEOUT_MS)

        # the right result on the right image
        assert not failed, failed[:3]
        decoded = win.view.decoded
        assert decoded.path == last.path and shown[-1] == last.path
        assert np.array_equal(decoded.values, dicomio.decode(last.path).values)
        i_last = int(Path(last.path).stem[2:])
        assert win.view.window.center == pytest.approx(9000 + 100 * i_last)
        assert win.view.window.width == pytest.approx(12000 + 10 * i_last)
        pred = win.ai.current_prediction()
        engine = Engine(model_dir, device="cpu", with_cam=False)
        engine.load()
        assert pred.probability == pytest.approx(
            engine.score(dicomio.decode(last.path)).probability, abs=1e-4)

        # the batch: still running after the storm -> cancel (its partial report is kept);
        # either way each file has at most one row, and all of them when it finished
        if ctl.running:
            ctl.cancel()
        qtbot.waitUntil(lambda: not ctl.running, timeout=TIMEOUT_MS)
        summary = ctl.summary
        assert summary is not None and (summary.finished or summary.cancelled)
        names = [Path(r["path"]).name for r in ctl.panel.model.rows]
        files = sorted(p.name for p in batch_dir.iterdir())
        assert len(names) == len(set(names)) and set(names) <= set(files)
        assert len(names) == summary.done
        if summary.finished:
            assert sorted(names) == files

        # memory bounded: the cache obeyed its byte limit, the process did not grow much
        assert max_cache <= byte_limit, (max_cache, byte_limit)
        growth = _rss_mb() - rss0
        assert growth < RSS_GROWTH_LIMIT_MB, f"RSS grew by {growth:.0f} MB"
        print(f"\n{N_SELECTIONS} selections in {storm_s:.1f} s while the batch ran "
              f"(rows during: {batch_rows_during}); {len(shown)} images shown; cache max "
              f"{max_cache / 2**20:.1f} MiB (limit {byte_limit / 2**20:.1f}); RSS growth "
              f"{growth:.0f} MB; total {time.monotonic() - t_start:.1f} s")
    finally:
        win.close()
    # nothing left running
    assert win.runner.threads() == []
    for child in multiprocessing.active_children():
        child.join(10)
    assert multiprocessing.active_children() == []
