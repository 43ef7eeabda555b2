"""``--screenshot`` and the start path: the saved window matches ``pneumoview render``; no torch."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from PIL import Image  # noqa: E402
from PySide6.QtCore import QPoint  # noqa: E402

from pneumoview.commands.render import render_image  # noqa: E402
from pneumoview.core.demo import prepare_demo  # noqa: E402
from pneumoview.qt import app as viewer_app  # noqa: E402
from tests.support.dicom_factory import sample_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
needs_rg1 = pytest.mark.skipif(sample_file("RG1_UNCR.dcm") is None,
                               reason="pydicom-data's RG1 files are not installed")


@pytest.fixture(autouse=True)
def _own_settings(monkeypatch, tmp_path):
    """Each test starts from default settings: windows save theirs on closing."""
    monkeypatch.setenv("PNEUMOVIEW_CONFIG_DIR", str(tmp_path / "config"))


def _args(**kw: object) -> argparse.Namespace:
    base = dict(path=None, demo=False, screenshot=None, model=None, device=None)
    base.update(kw)
    return argparse.Namespace(**base)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


@needs_rg1
@pytest.mark.parametrize("series", ["series1_uncompressed.dcm", "series3_monochrome2.dcm"])
def test_screenshot_image_area_matches_render(qtbot, tmp_path, series):
    demo = prepare_demo(tmp_path / "demo")
    path = demo / series
    out = tmp_path / "shot.png"
    # No model: this compares display pixels, and a flagged image's CAM overlay (shown by
    # default) would tint them. The AI screenshot path is tested in test_ai_gui_window.py.
    window = viewer_app.create_window(_args(path=str(path), screenshot=str(out),
                                            model=str(tmp_path / "no-model")))
    qtbot.addWidget(window)
    try:
        assert viewer_app.take_screenshot(window, str(out), timeout=60) == 0
        rect = window.view.image_rect_in_widget()
        top_left = window.view.mapTo(window, QPoint(round(rect.left()), round(rect.top())))
        width, height = round(rect.width()), round(rect.height())
    finally:
        window.close()
    shot = np.asarray(Image.open(out).convert("L"))
    assert shot.shape[:2] == (window.height(), window.width())
    render_image(path, tmp_path / "render.png")
    rendered = Image.open(tmp_path / "render.png").convert("L").resize((width, height),
                                                                       Image.Resampling.BOX)
    # the central part: the corner text boxes sit over the image's corners
    ys = slice(int(0.15 * height), int(0.85 * height))
    xs = slice(int(0.1 * width), int(0.9 * width))
    crop = shot[top_left.y():top_left.y() + height, top_left.x():top_left.x() + width][ys, xs]
    expected = np.asarray(rendered)[ys, xs]
    assert crop.shape == expected.shape
    assert _correlation(crop, expected) > 0.99
    assert abs(float(crop.mean()) - float(expected.mean())) < 6  # same levels, not just shape


START_SCRIPT = r"""
import json, sys, threading, time

imports = []  # (module, thread name, seconds) of the first request for torch or openvino


class Watch:
    def find_spec(self, name, path=None, target=None):
        if name in ("torch", "openvino") and name not in [i[0] for i in imports]:
            imports.append((name, threading.current_thread().name, time.perf_counter()))
        return None


sys.meta_path.insert(0, Watch())
t0 = time.perf_counter()
from pneumoview.qt import app as viewer_app
import argparse
args = argparse.Namespace(path=None, demo=False, screenshot=None, model=None, device=None)
window = viewer_app.create_window(args)
viewer_app.application().processEvents()
shown = time.perf_counter()
before = [f"{module} ({name})" for module, name, t in imports if t <= shown]
print(json.dumps({"torch_before_shown": before, "visible": window.isVisible(),
                  "welcome": window.stack.currentWidget() is window.welcome,
                  "seconds": shown - t0}))
window.close()
"""


def test_first_window_does_not_import_torch():
    """torch and openvino may load later (in a worker thread, for the AI panel), never on the
    way to the first window: any import of either requested before the window was shown fails
    the test."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", START_SCRIPT], capture_output=True, text=True,
                          timeout=120, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["torch_before_shown"] == [], facts
    assert facts["visible"] and facts["welcome"]


@needs_rg1
def test_cli_screenshot_end_to_end(tmp_path):
    out = tmp_path / "cli.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-m", "pneumoview", "--demo", "--screenshot", str(out)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    image = np.asarray(Image.open(out).convert("L"))
    assert image.shape == (viewer_app.SCREENSHOT_SIZE[1], viewer_app.SCREENSHOT_SIZE[0])
    assert image.std() > 20  # a radiograph, panels and text: not a blank window
