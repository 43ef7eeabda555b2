"""Nothing cut at 1280 x 800: the first rows of the tag browser and the study tree show their
whole text, the tag values are on screen, and the welcome text is not cut mid-sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QLabel, QStyle, QTreeWidget  # noqa: E402

from pneumoview.core.settings import Settings  # noqa: E402
from pneumoview.qt.mainwindow import MainWindow, ViewerOptions  # noqa: E402

TIMEOUT_MS = 120_000
FIRST_ROWS = 8


MODEL_SEED = 2  # the model_dir fixture's weights (tests/conftest.py)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pneumoview.core.demo import prepare_demo
    from pneumoview.core.errors import PneumoViewError

    try:
        return prepare_demo(tmp_path_factory.mktemp("layout") / "demo")
    except PneumoViewError as exc:
        pytest.skip(str(exc))


def _window(qtbot, model_dir: Path, size: tuple[int, int]) -> MainWindow:
    win = MainWindow(Settings(), ViewerOptions(model=str(model_dir), device="cpu"))
    qtbot.addWidget(win)
    win.resize(*size)
    win.show()
    qtbot.waitExposed(win)
    return win


def _plain(tooltip: str) -> str:
    """What a (rich, escaped) tooltip reads as."""
    from PySide6.QtGui import QTextDocument

    doc = QTextDocument()
    doc.setHtml(tooltip)
    return doc.toPlainText()


def _welcome_text(win: MainWindow) -> QLabel:
    return next(label for label in win.welcome.findChildren(QLabel)
                if "PneumoView" in label.text())


def _rows(tree: QTreeWidget, n: int) -> list:
    """The first ``n`` rows in display order (expanded children included)."""
    out, item = [], tree.topLevelItem(0)
    while item is not None and len(out) < n:
        out.append(item)
        item = tree.itemBelow(item)
    return out


def _elided(tree: QTreeWidget, n: int) -> list[str]:
    """Cells of the first ``n`` rows whose text does not fit its column (Qt would elide)."""
    margin = 2 * (tree.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None,
                                           tree) + 1)
    fm = tree.fontMetrics()
    bad = []
    for item in _rows(tree, n):
        for column in range(tree.columnCount()):
            text = item.text(column)
            if not text or tree.isColumnHidden(column):
                continue
            room = tree.visualItemRect(item).height() and \
                tree.visualRect(tree.indexFromItem(item, column)).width() - margin
            if fm.horizontalAdvance(text) > room:
                bad.append(f"{tree.headerItem().text(column)}: {text!r} "
                           f"({fm.horizontalAdvance(text)} px > {room} px)")
    return bad


def _wait_idle(qtbot, win: MainWindow) -> None:
    for _ in range(2):
        qtbot.waitUntil(lambda: win.runner.pending() == 0 and win.ai.pending() == 0,
                        timeout=TIMEOUT_MS)
        qtbot.wait(300)  # the columns are fitted after a burst of changes


def test_first_rows_are_not_cut_at_1280x800(qtbot, model_dir: Path, demo: Path,
                                            tmp_path: Path) -> None:
    win = _window(qtbot, model_dir, (1280, 800))
    try:
        text = _welcome_text(win)
        assert text.height() >= text.heightForWidth(text.width()), "welcome text cut"
        win.open_path(str(demo))
        _wait_idle(qtbot, win)
        assert win.ai.panel.prediction is not None  # the AI column holds its text too
        win.docks.details.raise_()
        win.details.setCurrentWidget(win.tags)
        _wait_idle(qtbot, win)
        assert _elided(win.tree, FIRST_ROWS) == []
        assert _elided(win.tags.tree, FIRST_ROWS) == []
        # the values are on screen, not pushed out of the panel by the other columns
        tags = win.tags.tree
        shown = tags.viewport().width() - tags.header().sectionViewportPosition(3)
        assert shown >= 110, f"only {shown} px of the Value column on screen"
        from pneumoview.qt.studytree import AI_COLUMN, DESCRIPTION

        header = win.tree.header()  # Name, AI, Description, ...: a row says what it is
        assert (header.visualIndex(AI_COLUMN), header.visualIndex(DESCRIPTION)) == (1, 2)
        win.grab().save(str(tmp_path / "layout-1280.png"))
    finally:
        win.close()


def test_cells_have_their_text_as_tooltip_and_user_widths_stay(qtbot, model_dir: Path,
                                                               demo: Path) -> None:
    win = _window(qtbot, model_dir, (1920, 1080))
    try:
        win.open_path(str(demo))
        _wait_idle(qtbot, win)
        series = win.tree.topLevelItem(0).child(0).child(0)
        assert _plain(series.toolTip(0)).startswith("Series 1: Chest CR")
        assert _plain(series.toolTip(2)) == series.text(2)
        tag_row = win.tags.tree.topLevelItem(2)
        assert _plain(tag_row.toolTip(3)) == tag_row.text(3)
        assert "(0002,0002)" in _plain(tag_row.toolTip(1))
        wide = win.tags.tree.viewport().width() >= 560
        assert win.tags.tree.isColumnHidden(0) is not wide  # the Tag column when there is room
        # a column the user sized is left as it is when rows change
        fitter = win.tree.columns
        fitter.user_sized.add(0)
        win.tree.setColumnWidth(0, 61)
        fitter.fit()
        assert win.tree.columnWidth(0) == 61
    finally:
        win.close()


def test_welcome_text_is_whole_in_a_narrow_window(qtbot, model_dir: Path) -> None:
    win = _window(qtbot, model_dir, (900, 600))
    try:
        qtbot.wait(50)
        text = _welcome_text(win)
        assert text.height() >= text.heightForWidth(text.width())
        assert text.wordWrap() and text.alignment() & Qt.AlignmentFlag.AlignLeft
    finally:
        win.close()
