"""AI panel messages that must not vanish: no made-up threshold while the model loads, a refused
model stays named in the panel, and Export Image / Load Model errors reach the Log panel."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ai_controller import ai_settings

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

TIMEOUT_MS = 120_000


def test_threshold_reads_loading_until_the_model_gives_it(qtbot) -> None:
    from pneumoview.core.model import read_model_info
    from pneumoview.qt.ai.controller import AIController

    try:
        real = float(read_model_info(None).threshold)  # the bundled model's: 79.1 %
    except Exception as exc:  # no bundled model in this checkout
        pytest.skip(f"needs the bundled model ({exc})")
    ctl = AIController(ai_settings(), model_dir=None, device="cpu")
    qtbot.addWidget(ctl.panel)
    panel = ctl.panel
    try:
        assert panel.spin.text() == "loading..." and "50" not in panel.spin.text()
        assert not panel.slider.isEnabled() and not panel.reset_button.isEnabled()
        assert panel.metrics_note.text() == "" and panel.bar.threshold is None
        ctl.start()
        qtbot.waitUntil(lambda: ctl.info is not None or bool(ctl.error), timeout=TIMEOUT_MS)
        assert ctl.info is not None, ctl.error
        assert panel.spin.text() == f"{real * 100:.1f} %"
        assert panel.slider.isEnabled() and panel.spin.isEnabled()
        assert f"{real:.1%}" in panel.metrics_note.text()
        panel.spin.setValue(0.0)  # a real 0 % reads as 0 %, not as the placeholder
        assert panel.spin.text() == "0.0 %" and ctl.threshold == 0.0
    finally:
        ctl.shutdown()


def test_missing_model_says_so_in_the_threshold_box(qtbot, tmp_path: Path) -> None:
    from pneumoview.qt.ai.controller import AIController

    ctl = AIController(ai_settings(), model_dir=str(tmp_path / "none"), device="cpu")
    qtbot.addWidget(ctl.panel)
    try:
        ctl.start()
        qtbot.waitUntil(lambda: bool(ctl.error), timeout=TIMEOUT_MS)
        assert ctl.panel.spin.text() == "n/a" and not ctl.panel.spin.isEnabled()
        assert "AI unavailable" in ctl.panel.model_label.text()
    finally:
        ctl.shutdown()


@pytest.fixture
def window(qtbot, model_dir: Path):
    from pneumoview.core.settings import Settings
    from pneumoview.qt.mainwindow import MainWindow, ViewerOptions

    win = MainWindow(Settings(), ViewerOptions(model=str(model_dir), device="cpu"))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(lambda: win.ai.info is not None or bool(win.ai.error), timeout=TIMEOUT_MS)
    assert win.ai.info is not None, win.ai.error
    yield win
    win.close()


def test_refused_model_stays_in_the_panel_and_the_log(qtbot, window, model_dir: Path,
                                                      tmp_path: Path) -> None:
    ai = window.ai
    label = ai.info.label
    assert ai.panel.model_error.isHidden()
    ai.load_model(str(tmp_path / "not-a-model"))
    qtbot.waitUntil(lambda: "not-a-model" in ai.error, timeout=TIMEOUT_MS)
    shown = ai.panel.model_error
    assert not shown.isHidden()
    assert "refused" in shown.text() and "not-a-model" in shown.text() and label in shown.text()
    qtbot.wait(1000)  # long after any status bar message has been replaced, it is still there
    window.statusBar().showMessage("something else")
    assert not shown.isHidden() and "not-a-model" in shown.text()
    log = window.log_panel.toPlainText()
    assert "Load Model refused" in log and "not-a-model" in log
    assert log.count("not-a-model") == 1  # reported once, not by the worker and again here
    ai.load_model(str(model_dir))  # a model that loads clears it
    qtbot.waitUntil(lambda: ai.pending() == 0 and shown.isHidden(), timeout=TIMEOUT_MS)


def test_export_failure_goes_to_the_log(qtbot, window, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoview.qt import export_image

    window.ai.current = ("some.dcm", 0)
    monkeypatch.setattr(export_image, "ask_export_options",
                        lambda *_a, **_k: (tmp_path / "gone" / "x.png", False, None))
    window.ai.export_image()
    qtbot.waitUntil(lambda: window.runner.pending() == 0, timeout=TIMEOUT_MS)
    log = window.log_panel.toPlainText()
    assert "Export Image failed" in log and "cannot write the PNG" in log
    assert "Export Image failed" in window.statusBar().currentMessage()
