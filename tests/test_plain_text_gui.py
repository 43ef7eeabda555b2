"""Strings from files and models are shown as plain text everywhere in the GUI (issue 13.3).

Before: header text and model metadata went into QLabels and tooltips in Qt's AutoText mode,
so a PatientName could paint "AI: NOT FLAGGED" or an image over the radiograph, and a model name
"ALL CLEAR" in the AI panel. Here every such string carries markup; no label that shows it may
render it as rich text, and no tooltip may hold it unescaped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from hostile_support import run_bounded  # noqa: E402

from tests.support.dicom_factory import make_dataset, save  # noqa: E402

MARK = "<b>PWNED</b>"
TAG = "<b>PWNED"  # in file and folder names (no "/"), and what every check looks for
IMG = '<img src="/nonexistent/pneumoview-mark.png">'
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.model_fixture import make_random_model_dir

    d = make_random_model_dir(tmp_path_factory.mktemp("hm") / f"model{TAG}", input_size=64)
    meta = json.loads((d / "metadata.json").read_text())
    meta.update(name=f"{MARK} ALL CLEAR", version=f"{IMG}1")
    meta["metrics"] = {"test": {
        "all": {"sensitivity": 0.9, "specificity": 0.8},
        f"{MARK}source": {"n": 10, "sensitivity": 0.9, "specificity": 0.8}}}
    (d / "metadata.json").write_text(json.dumps(meta))
    return d


@pytest.fixture
def hostile_folder(tmp_path: Path) -> Path:
    root = tmp_path / f"dir{TAG}"
    root.mkdir()
    rng = np.random.default_rng(0)
    arr = (rng.random((96, 96)) * 4000).astype(np.uint16)
    save(make_dataset(arr, PatientName=f"{MARK}^AI: NOT FLAGGED", PatientID=f"{IMG}",
                      StudyDescription=f"{IMG} ALL CLEAR", SeriesDescription=MARK,
                      ViewPosition="PA", Modality="DX", BitsStored=12),
         root / f"scan{TAG}.dcm")
    return root


def _all_tooltips(window) -> list[tuple[str, str]]:
    from PySide6.QtWidgets import QTreeWidget, QWidget

    tips = [(type(w).__name__, w.toolTip()) for w in window.findChildren(QWidget)]
    for tree in window.findChildren(QTreeWidget):
        stack = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
        while stack:
            item = stack.pop()
            tips += [("tree item", item.toolTip(c)) for c in range(tree.columnCount())]
            stack += [item.child(i) for i in range(item.childCount())]
    return tips


def _assert_nothing_renders_markup(window) -> int:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import Qt as GuiQt
    from PySide6.QtWidgets import QLabel

    seen = 0
    for label in window.findChildren(QLabel):
        text = label.text()
        if TAG in text or IMG in text:
            seen += 1
            assert label.textFormat() == Qt.TextFormat.PlainText, (label.objectName(), text)
    for where, tip in _all_tooltips(window):
        if GuiQt.mightBeRichText(tip):
            assert TAG not in tip and IMG not in tip, (where, tip)
    return seen


def test_hostile_header_and_model_text_never_render_as_markup(qtbot, hostile_model,
                                                              hostile_folder):
    from pneumoview.core.settings import Settings
    from pneumoview.qt.mainwindow import MainWindow, ViewerOptions

    win = MainWindow(Settings(), ViewerOptions(model=str(hostile_model), device="cpu"))
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    try:
        with qtbot.waitSignal(win.imageShown, timeout=TIMEOUT_MS):
            win.open_path(str(hostile_folder))
        qtbot.waitUntil(lambda: win.ai.info is not None, timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: win.ai.panel.prediction is not None, timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: win.runner.pending() == 0 and win.ai.pending() == 0,
                        timeout=TIMEOUT_MS)
        win.report_error(f"{MARK} an error naming {IMG}")
        win.grab()  # lay everything out, as a paint would
        # the corner text, the AI panel's model and per-source labels, the status label
        assert _assert_nothing_renders_markup(win) >= 3
        corner = win.view._corners["tl"]
        assert MARK in corner.text()  # shown, as characters
        assert MARK in win.ai.panel.model_label.text()
        assert MARK in win.ai.panel.per_source.text()
    finally:
        win.close()


def test_recent_folder_with_ampersand_is_shown_literally(qtbot, tmp_path):
    from pneumoview.core.settings import Settings
    from pneumoview.qt.mainwindow import MainWindow

    settings = Settings(recent_folders=["/data/R&D studies", "/data/bad\udcff"] * 60_000)
    win = MainWindow(settings)
    qtbot.addWidget(win)
    try:
        texts = [a.text() for a in win.opener.recent_menu.actions()]
        assert len(texts) <= 10  # a huge list in memory is cut to the bound too
        assert texts[0] == "/data/R&&D studies" and texts[1] == "/data/bad\\xff"
    finally:
        win.shutdown()


def test_patient_name_pointing_at_dev_zero_cannot_exhaust_the_viewer(tmp_path):
    """The 66 KB file of issue 13.2: an <img> in PatientName made Qt read /dev/zero into
    memory when the corner text was laid out. Run in a child with an address-space limit, so
    the old behaviour fails the test instead of taking the machine down."""
    path = tmp_path / "zero.dcm"
    arr = np.zeros((128, 128), np.uint16)
    save(make_dataset(arr, PatientName='<img src="/dev/zero">',
                      StudyDescription='<img src="file:///dev/zero">'), path)
    out = run_bounded(f"""
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from pneumoview.core import dicomio
        from pneumoview.qt.radiographview import RadiographView, prepare
        view = RadiographView()
        view.resize(800, 600)
        view.show()
        view.set_image(prepare(dicomio.decode({str(path)!r})))
        app.processEvents()
        view.grab()
        text = view._corners["tl"].text()
        assert "/dev/zero" in text, text
        print("SURVIVED")
    """, mem_mib=3072, timeout_s=120)
    assert out.returncode == 0 and "SURVIVED" in out.stdout, (out.returncode,
                                                             out.stderr[-3000:])
