"""An :class:`~pneumoview.qt.ai.controller.AIController` with its model loaded, for the panel's
tests: started, waited for, and shut down afterwards with its worker thread gone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def ai_settings(**extra: object) -> SimpleNamespace:
    """The AI fields of Settings (the controller only touches these)."""
    return SimpleNamespace(ai_thresholds={}, ai_device="auto", ai_model_dir="", cam_opacity=60,
                           **extra)


@contextmanager
def loaded_controller(qtbot: Any, model_dir: Path | str, **settings: object) -> Iterator[Any]:
    """``settings``: more Settings fields (``site_profiles=...``) beside the AI's own."""
    from pneumoview.qt.ai.controller import AIController

    ctl = AIController(ai_settings(**settings), model_dir=str(model_dir), device="cpu")
    qtbot.addWidget(ctl.panel)
    try:
        ctl.start()
        qtbot.waitUntil(lambda: ctl.info is not None or bool(ctl.error), timeout=120_000)
        assert ctl.info is not None, ctl.error
        yield ctl
    finally:
        ctl.shutdown()
    assert not ctl.worker.thread_alive()
