"""The viewer window, driven offscreen with pytest-qt on real radiographs (pydicom-data RG1)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from PySide6.QtCore import QEvent, QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent, QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from pneumoview.core import windowing  # noqa: E402
from pneumoview.core.demo import prepare_demo  # noqa: E402
from pneumoview.core.settings import Settings  # noqa: E402
from pneumoview.qt import studytree  # noqa: E402
from pneumoview.qt.mainwindow import MainWindow, ViewerOptions  # noqa: E402
from tests.support.dicom_factory import make_dataset, reencode, sample_file, save  # noqa: E402

RG1 = sample_file("RG1_UNCR.dcm")
needs_rg1 = pytest.mark.skipif(RG1 is None, reason="pydicom-data's RG1_UNCR.dcm is not installed")
TIMEOUT_MS = 60_000


@pytest.fixture(autouse=True)
def _own_settings(monkeypatch, tmp_path):
    """Each test starts from default settings: windows save theirs on closing."""
    monkeypatch.setenv("PNEUMOVIEW_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if RG1 is None:
        pytest.skip("pydicom-data's RG1 files are not installed")
    return prepare_demo(tmp_path_factory.mktemp("demo") / "demo")


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two patients (one with two studies), real pixels (RG1 reduced), a junk and a broken file."""
    if RG1 is None:
        pytest.skip("pydicom-data's RG1 files are not installed")
    root = tmp_path_factory.mktemp("studies")
    pixels = pydicom.dcmread(RG1).pixel_array[::8, ::8].copy()
    layout = [("Alpha^Ann", "P1", "1.2.3.1", "20200101", "Chest", [(1, 2), (2, 1)]),
              ("Alpha^Ann", "P1", "1.2.3.2", "20210101", "Chest follow-up", [(1, 1)]),
              ("Beta^Bob", "P2", "1.2.3.3", "20190505", "Thorax", [(1, 3)])]
    for name, pid, study, date, desc, series in layout:
        for number, count in series:
            series_uid = f"{study}.{number}"
            for i in range(count):
                ds = make_dataset(pixels, bits_stored=15, modality="CR", PatientName=name,
                                  PatientID=pid, StudyInstanceUID=study, StudyDate=date,
                                  StudyDescription=desc, SeriesInstanceUID=series_uid,
                                  SeriesNumber=number, InstanceNumber=i + 1,
                                  WindowCenter=12000 + 1000 * i, WindowWidth=20000)
                folder = root / pid / study / str(number)
                folder.mkdir(parents=True, exist_ok=True)
                save(ds, folder / f"im{i + 1}.dcm")
    (root / "notes.txt").write_text("not an image")
    return root


def make_broken(folder: Path) -> Path:
    """A valid header whose pixel data is cut short: indexes fine, fails to decode."""
    pixels = pydicom.dcmread(RG1).pixel_array[::8, ::8].copy()
    ds = make_dataset(pixels, modality="CR", PatientName="Broken^File", PatientID="P9",
                      SeriesNumber=1, InstanceNumber=1)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    return save(ds, folder / "broken.dcm")


@pytest.fixture
def window(qtbot):
    win = MainWindow(Settings(), ViewerOptions())
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


def wait_idle(qtbot, win: MainWindow) -> None:
    qtbot.waitUntil(lambda: win.runner.pending() == 0, timeout=TIMEOUT_MS)
    qtbot.wait(20)
    qtbot.waitUntil(lambda: win.runner.pending() == 0, timeout=TIMEOUT_MS)


def open_and_wait(qtbot, win: MainWindow, path: Path) -> None:
    win.open_path(str(path))
    wait_idle(qtbot, win)


def shown_path(win: MainWindow) -> str | None:
    return win.view.decoded.path if win.view.decoded is not None else None


def right_drag(qtbot, win: MainWindow, dx: float, dy: float, steps: int = 6) -> None:
    """A real right-button drag on the image: press, moves (above pyqtgraph's rate limit)."""
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
        qtbot.wait(25)
        end = start + QPointF(dx * i / steps, dy * i / steps)
        send(QEvent.Type.MouseMove, end, Qt.MouseButton.NoButton, right)
    qtbot.wait(25)
    send(QEvent.Type.MouseButtonRelease, end, right, Qt.MouseButton.NoButton)


def test_welcome_then_demo(qtbot, window, demo):
    assert window.stack.currentWidget() is window.welcome
    open_and_wait(qtbot, window, demo)
    assert window.stack.currentWidget() is window.viewer_page
    assert window.tree.instance_count() == 3
    assert window.view.decoded is not None


def test_tree_groups_patients_studies_series(qtbot, window, small_folder):
    open_and_wait(qtbot, window, small_folder)
    tree = window.tree
    patients = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
    assert [p.text(studytree.NAME) for p in patients] == ["Alpha Ann", "Beta Bob"]
    assert [p.text(studytree.ID) for p in patients] == ["P1", "P2"]
    alpha_studies = [patients[0].child(i) for i in range(patients[0].childCount())]
    assert [s.text(studytree.DATE) for s in alpha_studies] == ["2020-01-01", "2021-01-01"]
    first_study_series = [alpha_studies[0].child(i) for i in range(alpha_studies[0].childCount())]
    assert [s.text(studytree.NAME) for s in first_study_series] == ["Series 1", "Series 2"]
    assert [s.childCount() for s in first_study_series] == [2, 1]
    assert patients[1].child(0).child(0).childCount() == 3
    assert tree.instance_count() == 7
    images = [it.text(studytree.NAME) for it in tree.iter_instance_items()]
    assert images[:3] == ["Image 1", "Image 2", "Image 1"]
    # Only the image on screen has been analysed (automatically, with the bundled model);
    # every other row's AI cell stays empty until its image is read or flagged.
    shown = shown_path(window)
    for it in tree.iter_instance_items():
        text = it.text(studytree.AI_COLUMN)
        if it.data(studytree.NAME, studytree.INSTANCE_ROLE).path == shown:
            assert text == "" or text.endswith(("%", "flagged", "not scored")), text
        else:
            assert text == "", text
    assert tree.headerItem().text(studytree.AI_COLUMN) == "AI"


def test_selected_image_has_the_files_window(qtbot, window, demo):
    open_and_wait(qtbot, window, demo)
    for item in window.tree.iter_instance_items():
        inst = item.data(studytree.NAME, studytree.INSTANCE_ROLE)
        window.tree.select_instance(inst.path)
        wait_idle(qtbot, window)
        assert shown_path(window) == inst.path
        ds = pydicom.dcmread(inst.path, stop_before_pixels=True)
        expected = windowing.Window("f", float(ds.WindowCenter), float(ds.WindowWidth))
        assert window.view.window.center == pytest.approx(expected.center)
        assert window.view.window.width == pytest.approx(expected.width)
        assert tuple(window.view.image_item.levels) == pytest.approx(expected.levels)
        lut = window.view.image_item.lut
        monochrome1 = ds.PhotometricInterpretation == "MONOCHROME1"
        assert window.view.effective_invert is monochrome1
        assert int(lut[0]) == (255 if monochrome1 else 0)


def test_right_drag_changes_width_and_centre(qtbot, window, demo):
    open_and_wait(qtbot, window, demo)
    before = window.view.window
    right_drag(qtbot, window, 120, 0)
    after_x = window.view.window
    assert after_x.width > before.width * 1.2
    assert after_x.center == pytest.approx(before.center)
    right_drag(qtbot, window, 0, 120)
    after_y = window.view.window
    assert after_y.center > after_x.center + 0.2 * after_x.width
    assert after_y.width == pytest.approx(after_x.width)
    right_drag(qtbot, window, -150, -60)
    assert window.view.window.width < after_y.width
    assert window.view.window.center < after_y.center
    assert tuple(window.view.image_item.levels) == pytest.approx(window.view.window.levels)


def test_presets_invert_reset_keys(qtbot, window, demo):
    open_and_wait(qtbot, window, demo)
    view = window.view
    presets = view.presets
    assert [w.name for w in presets[:2]] == ["File window 1", "Full range"]
    qtbot.keyClick(window, Qt.Key.Key_2)
    assert view.window == presets[1]
    qtbot.keyClick(window, Qt.Key.Key_3)
    assert view.window == presets[2]
    assert tuple(view.image_item.levels) == pytest.approx(presets[2].levels)
    checked = [a for a in window.preset_menu.actions() if a.isChecked()]
    assert len(checked) == 1 and checked[0].text().startswith(presets[2].name)
    inverted_before = view.effective_invert
    qtbot.keyClick(window, Qt.Key.Key_I)
    assert view.effective_invert is not inverted_before
    assert int(view.image_item.lut[0]) == (255 if view.effective_invert else 0)
    qtbot.keyClick(window, Qt.Key.Key_R)
    assert view.window == presets[0] and view.effective_invert is inverted_before
    qtbot.keyClick(window, Qt.Key.Key_9)  # no ninth preset: a note, nothing breaks
    assert view.window == presets[0]


def test_next_previous_image_and_series(qtbot, window, small_folder):
    open_and_wait(qtbot, window, small_folder)
    order = [inst.path for inst in window.tree.instances()]
    assert shown_path(window) == order[0]
    qtbot.keyClick(window, Qt.Key.Key_Down)
    wait_idle(qtbot, window)
    assert shown_path(window) == order[1]
    qtbot.keyClick(window, Qt.Key.Key_Right)
    wait_idle(qtbot, window)
    assert shown_path(window) == order[2]
    qtbot.keyClick(window, Qt.Key.Key_Up)
    wait_idle(qtbot, window)
    assert shown_path(window) == order[1]
    qtbot.keyClick(window, Qt.Key.Key_PageDown)  # series 2 of study 1
    wait_idle(qtbot, window)
    assert shown_path(window) == order[2]
    qtbot.keyClick(window, Qt.Key.Key_PageDown)  # the follow-up study's series
    wait_idle(qtbot, window)
    assert shown_path(window) == order[3]
    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    wait_idle(qtbot, window)
    assert shown_path(window) == order[2]
    # the second image of series 1 declares another window: the view follows the file
    window.tree.select_instance(order[1])
    wait_idle(qtbot, window)
    assert window.view.window.center == pytest.approx(13000)


def test_stale_decode_results_are_dropped(qtbot, window, small_folder):
    open_and_wait(qtbot, window, small_folder)
    instances = window.tree.instances()
    seen = []
    window.imageShown.connect(lambda d: seen.append(d.path))
    for inst in instances[1:6]:
        window.show_instance(inst)
    wait_idle(qtbot, window)
    assert shown_path(window) == instances[5].path
    assert seen and seen[-1] == instances[5].path
    assert window.view.window.center == pytest.approx(13000)  # Beta, image 2


def test_broken_file_reports_and_app_carries_on(qtbot, window, small_folder, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for src in sorted(small_folder.rglob("*.dcm"))[:2]:
        (folder / src.name).write_bytes(src.read_bytes())
    broken = make_broken(folder)
    open_and_wait(qtbot, window, folder)
    assert window.tree.select_instance(str(broken))
    wait_idle(qtbot, window)
    assert window.view.decoded is None
    assert "broken.dcm" in window.view._message.text()
    assert window.view._message.isVisible()
    assert "broken.dcm" in window.statusBar().currentMessage()
    assert "broken.dcm" in window.log_panel.toPlainText()
    assert "Traceback" not in window.log_panel.toPlainText()
    good = next(i for i in window.tree.instances() if i.path != str(broken))
    window.tree.select_instance(good.path)
    wait_idle(qtbot, window)
    assert shown_path(window) == good.path
    assert not window.view._message.isVisible()


def test_codec_crash_on_a_compressed_file_leaves_the_viewer_running(qtbot, window, tmp_path):
    """A compressed file is decoded in a worker process; its codec segfaulting (for real: the
    test decoder kills itself with SIGSEGV on ``crash*`` files) is an error, not the end."""
    from pydicom.uid import RLELossless

    from pneumoview.core.decoderprocess import IsolatedDecoder

    window.decoder.close()
    window.decoder = IsolatedDecoder(timeout_s=60, target="test_isolated:faulty_payload")
    pixels = pydicom.dcmread(RG1).pixel_array[::8, ::8].copy() if RG1 else \
        np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    folder = tmp_path / "codec"
    folder.mkdir()
    crash = save(reencode(make_dataset(pixels, modality="CR", PatientID="P1", InstanceNumber=1),
                          RLELossless), folder / "crash.dcm")
    good = save(reencode(make_dataset(pixels, modality="CR", PatientID="P1", InstanceNumber=2),
                         RLELossless), folder / "good.dcm")
    open_and_wait(qtbot, window, folder)
    assert window.tree.select_instance(str(crash))
    wait_idle(qtbot, window)
    assert window.view.decoded is None
    assert "crash.dcm" in window.view._message.text() and "SIGSEGV" in window.view._message.text()
    assert "SIGSEGV" in window.log_panel.toPlainText()
    window.tree.select_instance(str(good))
    wait_idle(qtbot, window)
    assert shown_path(window) == str(good)
    assert window.decoder.isolated >= 2  # both went through the worker (crash one maybe twice)


def test_missing_path_and_empty_folder(qtbot, window, tmp_path):
    window.open_path(str(tmp_path / "gone"))
    assert "not found" in window.statusBar().currentMessage()
    empty = tmp_path / "empty"
    empty.mkdir()
    open_and_wait(qtbot, window, empty)
    assert "No DICOM images" in window.view._message.text()


def test_drop_folder_opens_it(qtbot, window, demo):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(demo))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    wait_idle(qtbot, window)
    assert window.tree.instance_count() == 3
    assert window.settings.recent_folders[0] == str(demo)
    assert window.opener.recent_menu.actions()[0].text() == str(demo)


def test_patient_text_toggle(qtbot, window, demo):
    open_and_wait(qtbot, window, demo)
    name = str(window.view.decoded.header.PatientName).replace("^", " ")
    assert name in window.view.corner_text()["tl"]
    qtbot.keyClick(window, Qt.Key.Key_P)
    assert window.view.corner_text()["tl"] == ""
    assert window.settings.show_patient_overlay is False
    assert "W 30000" in window.view.corner_text()["bl"]


def test_fit_and_one_to_one(qtbot, window, demo):
    open_and_wait(qtbot, window, demo)
    window.view.one_to_one()
    assert window.view.zoom() == pytest.approx(1.0, rel=0.02)
    qtbot.keyClick(window, Qt.Key.Key_F)
    rect = window.view.image_rect_in_widget()
    view_size = window.view.size()
    assert rect.width() <= view_size.width() + 1 and rect.height() <= view_size.height() + 1
    assert max(rect.width() / view_size.width(), rect.height() / view_size.height()) > 0.98


def test_errors_never_leave_the_log(qtbot, window, caplog):
    with caplog.at_level(logging.WARNING, logger="pneumoview"):
        window.report_error("x.dcm: something failed")
    assert "x.dcm: something failed" in window.log_panel.toPlainText()
    assert window.statusBar().currentMessage() == "x.dcm: something failed"



def test_multiframe_slider_keeps_the_window(qtbot, window, tmp_path):
    base = pydicom.dcmread(RG1).pixel_array[::8, ::8].astype(np.uint16)
    frames = np.stack([base, base // 2, base // 4])
    ds = make_dataset(frames, bits_stored=15, modality="CR", WindowCenter=9000,
                      WindowWidth=16000)
    path = save(ds, tmp_path / "multi.dcm")
    open_and_wait(qtbot, window, path)
    assert window.frame_bar.isVisible()
    assert window.frame_bar.slider.maximum() == 2
    window.view.set_levels(7000, 9000)
    window.frame_bar.slider.setValue(2)
    wait_idle(qtbot, window)
    assert window.view.decoded.frame == 2
    assert float(window.view.decoded.values.max()) == pytest.approx(base.max() // 4, abs=1)
    assert (window.view.window.center, window.view.window.width) == (7000, 9000)
    assert "Frame 3/3" in window.view.corner_text()["tr"]


def test_colour_image_is_shown_as_rgb(qtbot, window, tmp_path):
    grey = (pydicom.dcmread(RG1).pixel_array[::8, ::8] >> 7).astype(np.uint8)
    rgb = np.stack([grey, grey // 2, 255 - grey], axis=-1)
    path = save(make_dataset(rgb, modality="XC"), tmp_path / "colour.dcm")
    open_and_wait(qtbot, window, path)
    shown = window.view.image_item.image
    assert shown.ndim == 3 and shown.shape[-1] == 3
    assert np.array_equal(shown, rgb)


def test_size_guard_from_settings(qtbot, tmp_path):
    settings = Settings(max_image_mib=1)
    win = MainWindow(settings, ViewerOptions())
    qtbot.addWidget(win)
    win.show()
    try:
        pixels = np.zeros((1100, 1100), np.uint16)
        path = save(make_dataset(pixels, modality="CR"), tmp_path / "big.dcm")
        open_and_wait(qtbot, win, path)
        assert win.view.decoded is None
        assert "too large" in win.view._message.text()
        assert "max image MiB" in win.log_panel.toPlainText()
    finally:
        win.close()
