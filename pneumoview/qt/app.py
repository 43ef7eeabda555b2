"""Start the viewer: the QApplication, the main window, ``--demo`` and ``--screenshot``.

Nothing here imports torch: the first window must appear quickly (the AI panel loads the model
later, in the background).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from pneumoview.core.settings import load_settings
from pneumoview.qt.mainwindow import MainWindow, ViewerOptions

log = logging.getLogger("pneumoview.viewer")

SCREENSHOT_SIZE = (1400, 900)
SCREENSHOT_TIMEOUT_S = 180.0


class PneumoViewApp(QApplication):
    """The application object; carries ``--model`` / ``--device`` for the AI panel."""

    model_dir: str | None = None
    device: str | None = None


def application(argv: list[str] | None = None) -> QApplication:
    """The running QApplication, or a new :class:`PneumoViewApp`."""
    app = QApplication.instance()
    if app is None:
        app = PneumoViewApp(argv or sys.argv[:1])
        app.setApplicationName("PneumoView")
        app.setOrganizationName("PneumoView")
    return app  # type: ignore[return-value]


def create_window(args: argparse.Namespace) -> MainWindow:
    """The main window for parsed ``view`` arguments (shown, with PATH or the demo opening)."""
    app = application()
    app.model_dir = getattr(args, "model", None)  # type: ignore[attr-defined]
    app.device = getattr(args, "device", None)  # type: ignore[attr-defined]
    screenshot = bool(getattr(args, "screenshot", None))
    options = ViewerOptions(model=getattr(args, "model", None),
                            device=getattr(args, "device", None), screenshot_mode=screenshot,
                            engine=getattr(args, "engine", None),
                            precision=getattr(args, "precision", None))
    window = MainWindow(load_settings(), options)
    if screenshot:
        window.resize(*SCREENSHOT_SIZE)
    window.show()
    if getattr(args, "demo", False):
        window.open_demo()
    else:
        paths = getattr(args, "path", None) or []
        paths = [paths] if isinstance(paths, str) else list(paths)
        if len(paths) == 1:
            window.open_path(paths[0])
        elif paths:
            window.open_side_by_side(paths)
    return window


def wait_until_idle(window: MainWindow, timeout: float = SCREENSHOT_TIMEOUT_S,
                    settle: float = 0.15) -> bool:
    """Process events until no work is pending for ``settle`` seconds; False on timeout.

    "Pending" is :meth:`WorkRunner.pending`: indexing, decoding and anything later features
    submit or register there (the AI panel's model load and scoring); and the tag table's
    scheduled fill.
    """
    app = application()
    deadline = time.monotonic() + timeout
    idle_since: float | None = None
    while time.monotonic() < deadline:
        app.processEvents()
        now = time.monotonic()
        if window.runner.pending() == 0 and not window.tags.fill_pending():
            idle_since = idle_since or now
            if now - idle_since >= settle:
                app.processEvents()
                return True
        else:
            idle_since = None
        time.sleep(0.01)
    return False


def take_screenshot(window: MainWindow, out: str, timeout: float = SCREENSHOT_TIMEOUT_S) -> int:
    """Wait for all pending work, save ``window.grab()`` as PNG; 0 on success."""
    idle = wait_until_idle(window, timeout)
    if not idle:
        print(f"pneumoview: work still pending after {timeout:.0f} s; saving the screenshot "
              "as it is", file=sys.stderr)
    window.hide_stray_tab_bars()
    application().processEvents()
    ok = window.grab().save(out, "PNG")
    if not ok:
        print(f"pneumoview: {out}: cannot write the PNG", file=sys.stderr)
    return 0 if ok and idle else 1


def _report_unexpected(kind: type[BaseException], value: BaseException, tb: object) -> None:
    """A bug in a slot: one line in the log panel, the traceback on stderr only."""
    import traceback

    traceback.print_exception(kind, value, tb)  # type: ignore[arg-type]
    log.error("unexpected error (a bug, please report it): %s: %s", kind.__name__, value)


def run_viewer(args: argparse.Namespace) -> int:
    """``pneumoview [view]``: show the window and run until it closes."""
    sys.excepthook = _report_unexpected
    app = application()
    window = create_window(args)
    try:
        if getattr(args, "screenshot", None):
            return take_screenshot(window, args.screenshot)
        QTimer.singleShot(0, window.hide_stray_tab_bars)
        return int(app.exec())
    finally:
        window.close()
        window.shutdown()
