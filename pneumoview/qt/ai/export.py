"""File > Export Image for the AI: the caption (the result as shown, the model, whether the map
is on) and the export itself, the dialog here and the rendering and saving in the background
(a full-resolution export of a large radiograph takes seconds)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QAction

from pneumoview.core.aistate import AIState
from pneumoview.qt.ai.cam import CamOverlay
from pneumoview.qt.ai.onscreen import OnScreenFollower
from pneumoview.qt.host import Host


class ImageExport:
    """Exports the image on ``screen``'s view; :attr:`host` (set when attached) gives the
    dialog's parent, the background runner and the message sink."""

    def __init__(self, state: AIState, screen: OnScreenFollower, overlay: CamOverlay,
                 report_error: Callable[[str], None]) -> None:
        self.state = state
        self.screen = screen
        self.overlay = overlay
        self.report_error = report_error
        self.host: Host | None = None

    def make_action(self, host: Host) -> QAction:
        """File > Export Image... (Ctrl+E)."""
        self.host = host
        act = QAction("&Export Image...", host)
        act.setShortcut("Ctrl+E")
        act.triggered.connect(self.export_image)
        return act

    def caption(self) -> list[str]:
        from pneumoview.qt.export_image import caption_lines

        error, info = self.state.error, self.state.info
        status = error and f"AI unavailable ({error})"
        return caption_lines(self.screen.current_prediction(), None,  # already read by the policy
                             info.label if info is not None else "",
                             cam_shown=self.overlay.visible, status=status)

    def export_image(self) -> None:
        """Ask where and how, then render and save in the ``export`` lane."""
        view, current, host = self.screen.view, self.screen.current, self.host
        if view is None or current is None or host is None:
            return
        from pneumoview.qt.export_image import ask_export_options, export_job
        from pneumoview.qt.workers import Job

        stem = os.path.splitext(os.path.basename(current[0]))[0] or "image"
        choice = ask_export_options(host, view, f"{stem}_pneumoview.png")
        if choice is None:
            return
        out, include_patient, long_side = choice
        work = export_job(view, out, self.caption(), include_patient, long_side)
        job = Job(_export, work, name="export image")
        job.signals.result.connect(lambda path: host.report(f"Exported {path}"))
        job.signals.error.connect(lambda exc: self.report_error(
            f"Export Image failed: {getattr(exc, 'reason', exc)}"))
        host.runner.submit(job, lane="export")


def _export(work: Any) -> Any:
    """Run an export; a file that cannot be written is an expected error, not a bug."""
    from pneumoview.core.errors import PneumoViewError

    try:
        return work()
    except OSError as exc:
        raise PneumoViewError(str(exc)) from exc
