"""The reading tools in the main window: menus, generated shortcut list, no key on two
actions, About, annotations kept across sessions, series thumbnails, cine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pneumoview.core.reading.annotations import Annotation, Kind
from pneumoview.core.settings import Settings
from pneumoview.qt.helpdialogs import (
    AboutDialog,
    ShortcutsDialog,
    shortcut_conflicts,
    shortcut_rows,
)
from pneumoview.qt.mainwindow import MainWindow, ViewerOptions
from tests.support.dicom_factory import make_dataset, save

pytestmark = pytest.mark.gui
TIMEOUT_MS = 60_000


@pytest.fixture(autouse=True)
def _own_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("PNEUMOVIEW_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("PNEUMOVIEW_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def folder(tmp_path) -> Path:
    """One study: a two-image series with Pixel Spacing and a three-frame series."""
    root = tmp_path / "scan"
    root.mkdir()
    yy, xx = np.mgrid[0:120, 0:160]
    for i in range(2):
        ds = make_dataset((xx * 20 + yy * 5 + i * 100).astype(np.uint16), modality="CR",
                          StudyInstanceUID="1.2.9", SeriesInstanceUID="1.2.9.1", SeriesNumber=1,
                          InstanceNumber=i + 1, PixelSpacing=[0.5, 0.5],
                          PatientOrientation=["L", "F"])
        save(ds, root / f"a{i}.dcm")
    frames = np.stack([(xx + 50 * f).astype(np.uint16) for f in range(3)])
    save(make_dataset(frames, modality="XA", StudyInstanceUID="1.2.9",
                      SeriesInstanceUID="1.2.9.2", SeriesNumber=2, InstanceNumber=1,
                      CineRate=20), root / "cine.dcm")
    return root


def _window(qtbot) -> MainWindow:
    win = MainWindow(Settings(), ViewerOptions())
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    return win


def _idle(qtbot, win) -> None:
    for _ in range(2):
        qtbot.waitUntil(lambda: win.runner.pending() == 0, timeout=TIMEOUT_MS)
        qtbot.wait(20)


def test_menus_shortcuts_and_about(qtbot) -> None:
    win = _window(qtbot)
    titles = [a.text() for a in win.menuBar().actions()]
    assert titles[-2:] == ["&Tools", "&Help"]
    assert shortcut_conflicts(win) == {}  # no key does two things
    rows = shortcut_rows(win)
    assert ("Tools", "Distance", "L") in rows
    assert ("View", "Fit to Window", "F") in rows
    assert ("Go", "Play / Pause Frames", "Space") in rows
    assert any(r[1] == "Keyboard Shortcuts" for r in rows)
    dialog = ShortcutsDialog(win)
    assert dialog.table.rowCount() == len(rows)
    about = AboutDialog(win, win._model_lines).text.toPlainText()
    assert "PneumoView" in about and "pydicom" in about and "Model:" in about
    win.close()


def test_annotations_come_back_in_the_next_session(qtbot, folder) -> None:
    win = _window(qtbot)
    win.open_path(str(folder))
    _idle(qtbot, win)
    path = win.view.decoded.path
    win.reading.layer.add(Annotation(Kind.DISTANCE, ((10.0, 10.0), (10.0, 110.0))))
    assert win.reading.panel.rows()[0][2] == "50.0 mm"
    _idle(qtbot, win)
    win.close()
    again = _window(qtbot)
    again.open_path(str(folder))
    _idle(qtbot, again)
    assert again.view.decoded.path == path
    [a] = again.reading.layer.annotations
    assert a.points == ((10.0, 10.0), (10.0, 110.0))
    assert again.reading.markers.text()["left"] == "R"
    assert not any(p.suffix == ".json" for p in folder.rglob("*"))  # nothing in the scan
    again.close()


def test_series_thumbnails_and_cine(qtbot, folder) -> None:
    win = _window(qtbot)
    win.open_path(str(folder))
    _idle(qtbot, win)
    win.reading.series_dock.raise_()
    qtbot.waitUntil(lambda: win.reading.series.count() == 2, timeout=TIMEOUT_MS)
    _idle(qtbot, win)
    strip = win.reading.series
    icons = [strip.item(i).icon() for i in range(strip.count())]
    assert all(not icon.isNull() for icon in icons)
    image = icons[0].pixmap(96, 96).toImage()
    assert image.pixelColor(image.width() - 2, image.height() // 2).lightness() > \
        image.pixelColor(1, image.height() // 2).lightness()  # the ramp, not a blank square
    cine_path = str(folder / "cine.dcm")
    win.open_in_viewer(cine_path)
    _idle(qtbot, win)
    assert win.view.decoded.path == cine_path and win.frame_bar.isVisible()
    assert win.frame_bar.cine.fps_box.value() == 20  # the file's Cine Rate
    win.acts.next_frame.trigger()
    _idle(qtbot, win)
    assert win.view.decoded.frame == 1
    win.acts.play.trigger()
    assert win.frame_bar.cine.playing and win.frame_bar.play_button.text() == "Pause"
    qtbot.waitUntil(lambda: win.view.decoded.frame == 0, timeout=TIMEOUT_MS)  # played on
    win.acts.play.trigger()
    assert not win.frame_bar.cine.playing
    win.close()
