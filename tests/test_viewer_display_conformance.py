"""The viewer shows what ``render`` writes (issue 14): palette and deep colour as RGB, the file's
overlay planes as a toggled layer, and the same default window for an 8-bit image without VOI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from pneumoview.commands import render  # noqa: E402
from pneumoview.core import dicomio  # noqa: E402
from pneumoview.core.settings import Settings  # noqa: E402
from pneumoview.qt.mainwindow import MainWindow, ViewerOptions  # noqa: E402
from pneumoview.qt.radiographview import RadiographView, prepare  # noqa: E402
from tests.support.dicom_factory import sample_file  # noqa: E402
from tests.support.display_probes import without_voi  # noqa: E402

TIMEOUT_MS = 60_000


def _file(name: str) -> Path:
    path = sample_file(name)
    if path is None:
        pytest.skip(f"pydicom(-data) test file {name} is not installed")
    return Path(path)


@pytest.fixture
def view(qtbot):
    v = RadiographView()
    qtbot.addWidget(v)
    v.resize(500, 400)
    v.show()
    return v


@pytest.mark.parametrize("name", ["OBXXXX1A_expb.dcm", "gdcm-US-ALOKA-16.dcm",
                                  "SC_rgb_32bit.dcm"])
def test_colour_shows_as_the_rgb_render_writes(view, name: str) -> None:
    decoded = dicomio.decode(_file(name))
    view.set_image(decoded)
    shown = view.image_item.image
    assert shown.ndim == 3 and shown.shape[-1] == 3 and view.window is None
    np.testing.assert_array_equal(shown, render.render_array(decoded, None))


def test_8bit_default_window_is_the_one_render_uses(view, tmp_path: Path) -> None:
    decoded = dicomio.decode(without_voi("vlut_04.dcm", tmp_path / "novoi.dcm"))
    view.set_image(decoded)
    assert view.window == render.choose_window(decoded)
    assert view.window.name == "Identity" and "Identity" in [w.name for w in view.presets]
    assert prepare(decoded).default == view.window


def test_graphics_overlay_layer_shown_and_toggled(view) -> None:
    path = _file("MR-SIEMENS-DICOM-WithOverlays.dcm")
    view.set_image(dicomio.decode(path))
    mask = pydicom.dcmread(path).overlay_array(0x6000) > 0
    assert view.overlay_item.isVisible()
    layer = view.overlay_item.image
    np.testing.assert_array_equal(layer[..., 3] > 0, mask)
    assert view.overlay_item.zValue() > 10  # above the AI heat map
    view.set_show_overlays(graphics=False)
    assert not view.overlay_item.isVisible()
    view.set_show_overlays(graphics=True)
    assert view.overlay_item.isVisible()


def test_roi_overlay_is_off_until_asked(view, tmp_path: Path) -> None:
    from pydicom.pixels import pack_bits

    ds = pydicom.dcmread(_file("examples_overlay.dcm"))
    region = np.zeros((300, 484), dtype=np.uint8)
    region[100:200, 150:300] = 1
    ds[0x60000040].value = "R"
    ds[0x60003000].value = pack_bits(region)
    path = tmp_path / "roi.dcm"
    ds.save_as(path)
    view.set_image(dicomio.decode(path))
    assert not view.overlay_item.isVisible()
    view.set_show_overlays(roi=True)
    assert view.overlay_item.isVisible()
    drawn = view.overlay_item.image[..., 3] > 0
    assert drawn[100, 150:300].all() and not drawn[101:199, 151:299].any()  # the outline


def test_menu_toggle_hides_overlays_on_the_next_image(qtbot, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PNEUMOVIEW_CONFIG_DIR", str(tmp_path / "config"))
    win = MainWindow(Settings(), ViewerOptions())
    qtbot.addWidget(win)
    win.show()
    try:
        assert win.acts.overlays.isChecked() and not win.acts.roi_overlays.isChecked()
        win.acts.overlays.trigger()
        win.open_path(str(_file("examples_overlay.dcm")))
        qtbot.waitUntil(lambda: win.view.decoded is not None, timeout=TIMEOUT_MS)
        assert win.view.decoded.overlays and not win.view.overlay_item.isVisible()
        win.acts.overlays.trigger()
        assert win.view.overlay_item.isVisible()
    finally:
        win.close()
