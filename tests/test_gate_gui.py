"""The AI panel with the content gate: "Not scored: <reason>", Score anyway, the objection kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.ai_controller import loaded_controller
from tests.support.dicom_factory import make_dataset, save
from tests.support.gate_support import UPSIDE_DOWN, make_gated_model_dir, structured_image

pytestmark = [pytest.mark.gui]


@pytest.fixture()
def controller(qtbot, tmp_path: Path):
    with loaded_controller(qtbot, make_gated_model_dir(tmp_path / "gated", refuse=True)) as ctl:
        yield ctl


def test_gate_refusal_shows_the_reason_and_score_anyway_keeps_it(qtbot, controller,
                                                                 tmp_path: Path) -> None:
    from pneumoview.core.dicomio import decode

    path = save(make_dataset(structured_image(320, 4), BodyPartExamined="CHEST"),
                tmp_path / "film.dcm")
    decoded = decode(path)
    controller.on_image_shown(decoded)
    qtbot.waitUntil(lambda: controller.pending() == 0 and controller.panel.prediction
                    is not None, timeout=60_000)
    panel = controller.panel
    assert panel.state.text() == f"Not scored: {UPSIDE_DOWN}"
    assert not panel.score_anyway.isHidden() and not controller.overlay.visible
    assert panel.percent.text() == "-"
    shot = os.environ.get("PNEUMOVIEW_TEST_SCREENSHOTS")
    if shot:
        panel.grab().save(str(Path(shot) / "gate_not_scored.png"))
    panel.score_anyway.click()
    qtbot.waitUntil(lambda: controller.pending() == 0 and controller.panel.prediction
                    is not None and controller.panel.prediction.scored, timeout=60_000)
    assert panel.prediction.reason == f"scored anyway despite: {UPSIDE_DOWN}"
    assert UPSIDE_DOWN in panel.state.text() and panel.score_anyway.isHidden()
    if shot:
        panel.grab().save(str(Path(shot) / "gate_scored_anyway.png"))
