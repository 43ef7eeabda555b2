"""Panels and keys: every dock can come back from the View menu (and Reset Window Layout), and
the image navigation keys work wherever the focus is while the image is shown."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from PySide6.QtCore import QEvent, Qt  # noqa: E402
from PySide6.QtGui import QKeyEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from pneumoview.core.settings import Settings  # noqa: E402
from pneumoview.qt.mainwindow import MainWindow, ViewerOptions  # noqa: E402

TIMEOUT_MS = 120_000


MODEL_SEED = 5  # the model_dir fixture's weights (tests/conftest.py)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pneumoview.core.demo import prepare_demo
    from pneumoview.core.errors import PneumoViewError

    try:
        return prepare_demo(tmp_path_factory.mktemp("panels") / "demo")
    except PneumoViewError as exc:
        pytest.skip(str(exc))


def _window(qtbot, settings: Settings, model_dir: Path) -> MainWindow:
    win = MainWindow(settings, ViewerOptions(model=str(model_dir), device="cpu"))
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    qtbot.waitExposed(win)
    return win


def _view_action(win: MainWindow, title: str):
    matches = [a for a in win.view_menu.actions() if a.text().replace("&", "") == title]
    assert len(matches) == 1, [a.text() for a in win.view_menu.actions()]
    return matches[0]


def _wait_idle(qtbot, win: MainWindow) -> None:
    for _ in range(2):
        qtbot.waitUntil(lambda: win.runner.pending() == 0 and win.ai.pending() == 0,
                        timeout=TIMEOUT_MS)
        qtbot.wait(30)


def test_closed_ai_dock_comes_back_from_the_view_menu(qtbot, model_dir: Path) -> None:
    settings = Settings()
    win = _window(qtbot, settings, model_dir)
    try:
        for title in ("Studies", "Details", "Log", "AI", "Batch", "Reset Window Layout"):
            _view_action(win, title)
        ai = _view_action(win, "AI")
        assert ai.isChecked() and not win.ai.dock.isHidden()
        win.ai.dock.close()  # the dock's own close button
        assert win.ai.dock.isHidden() and not ai.isChecked()
        ai.trigger()
        assert not win.ai.dock.isHidden()
        win.ai.dock.close()
    finally:
        win.close()  # saves the layout with the AI dock closed
    assert settings.window_state

    again = _window(qtbot, settings, model_dir)
    try:
        assert again.ai.dock.isHidden()  # the saved layout is honoured...
        _view_action(again, "AI").trigger()  # ...and the menu still brings the dock back
        assert not again.ai.dock.isHidden()
        again.ai.dock.close()
        again.docks.tree.close()
        again.docks.log.setFloating(True)
        _view_action(again, "Reset Window Layout").trigger()
        qtbot.wait(50)
        for dock in (again.docks.tree, again.docks.details, again.docks.log, again.ai.dock):
            assert not dock.isHidden() and not dock.isFloating(), dock.windowTitle()
        assert again.docks.details in again.tabifiedDockWidgets(again.ai.dock)
        assert again.dockWidgetArea(again.ai.dock) == Qt.DockWidgetArea.RightDockWidgetArea
        assert again.dockWidgetArea(again.docks.tree) == Qt.DockWidgetArea.LeftDockWidgetArea
        assert again.batch.dock.isHidden()  # no batch running: the Batch dock stays closed
    finally:
        again.close()


def _press(widget, key: Qt.Key) -> None:
    """A key press delivered to ``widget`` itself."""
    QApplication.sendEvent(widget, QKeyEvent(QEvent.Type.KeyPress, key,
                                             Qt.KeyboardModifier.NoModifier))


def _deactivate(qtbot, win: MainWindow) -> QWidget:
    """Leave ``win`` without the active-window state while its panels keep the focus, as
    after a dialog closes with no window manager to hand activation back (Xvfb): window
    shortcuts then match nothing and the key press reaches the focused panel."""
    other = QWidget()
    qtbot.addWidget(other)
    other.show()
    other.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is other, timeout=5000)
    return other


def test_navigation_keys_work_from_every_panel_after_a_batch_starts(
        qtbot, model_dir: Path, demo: Path) -> None:
    win = _window(qtbot, Settings(), model_dir)
    try:
        win.open_path(str(demo))
        _wait_idle(qtbot, win)
        order = [inst.path for inst in win.tree.instances()]
        assert win.view.decoded.path == order[0]
        win.batch.start(str(demo), workers=1, batch_size=2)
        qtbot.waitUntil(lambda: not win.batch.running, timeout=TIMEOUT_MS)
        assert win.batch.panel.model.rows and not win.batch.dock.isHidden()

        table = win.batch.panel.table
        table.setFocus()
        table.selectRow(0)
        qtbot.keyClick(table, Qt.Key.Key_Down)
        _wait_idle(qtbot, win)
        assert win.view.decoded.path == order[1]
        other = _deactivate(qtbot, win)
        _press(table, Qt.Key.Key_Right)  # the table must not keep it
        _wait_idle(qtbot, win)
        assert win.view.decoded.path == order[2] and table.currentIndex().row() == 0
        _press(win.tags.tree, Qt.Key.Key_Up)
        _wait_idle(qtbot, win)
        assert win.view.decoded.path == order[1]
        _press(win.log_panel, Qt.Key.Key_PageUp)  # previous series
        _wait_idle(qtbot, win)
        assert win.view.decoded.path == order[0]
        _press(other, Qt.Key.Key_Down)  # another window's keys are its own
        _wait_idle(qtbot, win)
        assert win.view.decoded.path == order[0]
        win.activateWindow()

        # the threshold spin box keeps Up/Down for its value; the image stays
        spin = win.ai.panel.spin
        spin.setFocus()
        before = spin.value()
        qtbot.keyClick(spin, Qt.Key.Key_Up)
        _wait_idle(qtbot, win)
        assert spin.value() == pytest.approx(before + spin.singleStep())
        assert win.view.decoded.path == order[0]
        # a text field keeps Left/Right for its cursor
        search = win.tags.search
        search.setFocus()
        search.setText("abc")
        search.setCursorPosition(3)
        qtbot.keyClick(search, Qt.Key.Key_Left)
        assert search.cursorPosition() == 2 and win.view.decoded.path == order[0]
    finally:
        win.close()
    for child in multiprocessing.active_children():
        child.join(5)
