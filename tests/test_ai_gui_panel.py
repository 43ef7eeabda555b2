"""AI GUI: the controller, panel, worker and overlay, driven without the main window."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.ai_support import chest_folder, pydicom_testdata
from tests.support.ai_controller import ai_settings, loaded_controller

# real chest radiographs from ../shared/data, or pydicom-data's RG1 chest where it is absent
pytestmark = [pytest.mark.gui, pytest.mark.shared_data]






@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list:
    from pneumoview.core.dicomio import decode

    folder = chest_folder(tmp_path_factory.mktemp("chest") / "demo", minimum=2)
    return [decode(f) for f in sorted(folder.glob("*.dcm"))]


@pytest.fixture()
def controller(qtbot, model_dir: Path):
    with loaded_controller(qtbot, model_dir) as ctl:
        yield ctl


def _settle(qtbot, ctl) -> None:
    qtbot.waitUntil(lambda: ctl.pending() == 0, timeout=60_000)
    qtbot.wait(20)


def test_selecting_fills_the_panel(qtbot, controller, images) -> None:
    decoded = images[0]
    controller.on_instance_changed(None)
    assert controller.panel.state.text() == "Loading image..."
    controller.on_image_shown(decoded)
    _settle(qtbot, controller)
    pred = controller.panel.prediction
    assert pred is not None and pred.path == decoded.path and pred.scored
    assert controller.panel.percent.text() == f"{pred.probability * 100:.1f} %"
    expected = "Flagged: possible pneumonia" if pred.flagged else "Not flagged"
    assert controller.panel.state.text().startswith(expected)
    assert controller.panel.model_label.text() == controller.info.label
    assert controller.panel.device_label.text() == controller.worker.device
    assert controller.worker.device in ("openvino f32 on cpu", "openvino bf16 on cpu",
                                        "torch f32 on cpu")
    assert controller.panel.time_label.text().endswith("ms)")
    assert controller.panel.notice.text() == "Not for diagnostic use"
    # the CAM arrived for this image and is on the image's own grid
    assert controller.overlay.key == (decoded.path, 0)
    assert controller.overlay.cam.shape == decoded.shape


def test_rapid_switching_shows_the_last(qtbot, controller, images) -> None:
    seen: list[str] = []
    controller.worker.predicted.connect(lambda r: seen.append(r.path))
    sequence = [images[i % len(images)] for i in range(9)]
    for decoded in sequence:
        controller.on_instance_changed(None)
        controller.on_image_shown(decoded)
        qtbot.wait(5)
    _settle(qtbot, controller)
    last = sequence[-1]
    assert controller.panel.prediction is not None
    assert controller.panel.prediction.path == last.path
    assert controller.current == (last.path, 0)
    assert controller.overlay.key in (None, (last.path, 0))
    # stale requests were dropped, not all run
    assert controller.worker.inferences < len(sequence) + 1


def test_threshold_relabels_without_inference(qtbot, controller, images) -> None:
    controller.on_image_shown(images[0])
    _settle(qtbot, controller)
    runs = controller.worker.inferences
    p = controller.panel.prediction.probability
    controller.panel.spin.setValue(max(0.0, p * 100 - 1))  # typed value below p: flagged
    assert controller.panel.state.text().startswith("Flagged")
    assert controller.threshold == pytest.approx(max(0.0, p - 0.01), abs=1e-3)
    controller.panel.slider.setValue(min(1000, int(p * 1000) + 10))  # above p: not flagged
    assert controller.panel.state.text().startswith("Not flagged")
    sha = controller.info.model_id  # thresholds are per model_id
    assert controller.settings.ai_thresholds[sha] == pytest.approx(controller.threshold)
    controller.panel.reset_button.click()
    assert controller.threshold == controller.info.threshold
    assert sha not in controller.settings.ai_thresholds
    qtbot.wait(50)
    assert controller.worker.inferences == runs


def test_overlay_toggles(qtbot, controller, images) -> None:
    controller.on_image_shown(images[0])
    _settle(qtbot, controller)
    pred = controller.panel.prediction
    # default: shown only for flagged images
    assert controller.overlay.visible == bool(pred.flagged)
    before = controller.overlay.visible
    controller.toggle_cam()
    assert controller.overlay.visible != before
    assert controller.panel.cam_check.isChecked() == controller.overlay.visible
    # the "where the model looked, not disease" note goes with a map on an unflagged image
    assert (not controller.panel.cam_note.isHidden()) == (controller.overlay.visible
                                                          and not pred.flagged)
    controller.panel.cam_check.setChecked(before)
    assert controller.overlay.visible == before
    controller.panel.opacity.setValue(25)
    assert controller.overlay.opacity == pytest.approx(0.25, abs=0.01)


def test_not_scored_and_score_anyway(qtbot, controller) -> None:
    from pneumoview.core.dicomio import decode

    decoded = decode(pydicom_testdata("RG3_UNCI.dcm"))
    controller.on_image_shown(decoded)
    _settle(qtbot, controller)
    assert controller.panel.state.text() == \
        "Not scored: not a chest image (BodyPartExamined EXTREMITY)"
    assert not controller.panel.score_anyway.isHidden()
    assert not controller.overlay.visible
    controller.panel.score_anyway.click()
    _settle(qtbot, controller)
    assert controller.panel.prediction.scored
    assert "EXTREMITY" in controller.panel.state.text()


def test_missing_model_keeps_working(qtbot, tmp_path: Path, images) -> None:
    from pneumoview.qt.ai.controller import AIController

    ctl = AIController(ai_settings(), model_dir=str(tmp_path / "no-model"), device="cpu")
    qtbot.addWidget(ctl.panel)
    try:
        ctl.start()
        qtbot.waitUntil(lambda: bool(ctl.error), timeout=60_000)
        assert "AI unavailable" in ctl.panel.model_label.text()
        assert ctl.status_label.text() == "AI unavailable"
        ctl.on_image_shown(images[0])
        qtbot.waitUntil(lambda: ctl.pending() == 0, timeout=60_000)
        assert ctl.panel.state.text().startswith("Not scored: AI unavailable")
    finally:
        ctl.shutdown()


def test_no_inference_thread_left(qtbot, model_dir: Path) -> None:
    from pneumoview.qt.ai.worker import InferenceWorker

    worker = InferenceWorker(str(model_dir), "cpu")
    worker.start()
    assert any(t.name == "pneumoview-inference" for t in threading.enumerate())
    worker.submit("/nonexistent.dcm", 0)
    deadline = time.monotonic() + 60
    while worker.pending() and time.monotonic() < deadline:
        qtbot.wait(20)
    assert worker.shutdown(timeout=30)
    assert not any(t.name == "pneumoview-inference" for t in threading.enumerate())


def test_cam_overlay_lut_has_alpha_ramp() -> None:
    from pneumoview.qt.ai.cam import cam_lut

    lut = cam_lut()
    assert lut.shape == (256, 4) and lut.dtype == np.uint8
    assert lut[0, 3] == 0 and lut[-1, 3] > 200 and np.all(np.diff(lut[:, 3].astype(int)) >= 0)


def test_metrics_from_training_metadata() -> None:
    from pneumoview.core.modelmetrics import format_metric, per_source_text, split_metrics

    metrics = {"test": {
        "all": {"n": 900, "sensitivity": 0.912, "specificity": 0.801,
                "ci95": {"sensitivity": [0.89, 0.93], "specificity": [0.77, 0.83]}},
        "kermany": {"n": 800, "sensitivity": 0.95, "specificity": 0.85},
        "nih": {"n": 100, "sensitivity": 0.6, "specificity": 0.7,
                "ci95": {"sensitivity": [0.45, 0.74]}},
    }, "validation": {"all": {"sensitivity": 0.5}}}
    m = split_metrics(metrics)
    assert format_metric(m["sensitivity"]) == "91.2 % (95 % CI 89.0-93.0)"
    assert format_metric(m["specificity"]) == "80.1 % (95 % CI 77.0-83.0)"
    text = per_source_text(metrics)
    assert text.splitlines() == [
        "kermany (n=800): sensitivity 95.0 %, specificity 85.0 %",
        "nih (n=100): sensitivity 60.0 % (95 % CI 45.0-74.0), specificity 70.0 %"]
    empty = split_metrics({})
    assert format_metric(empty["sensitivity"]) == "n/a" and per_source_text({}) == ""
    flat = split_metrics({"test": {"sensitivity": {"value": 0.9, "ci_low": 0.8,
                                                   "ci_high": 0.95}}})
    assert format_metric(flat["sensitivity"]) == "90.0 % (95 % CI 80.0-95.0)"


def test_loading_an_altered_model_keeps_the_old_one(qtbot, controller, model_dir: Path,
                                                     tmp_path: Path) -> None:
    bad = tmp_path / "altered"
    bad.mkdir()
    for f in model_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    weights = bytearray((bad / "model.safetensors").read_bytes())
    weights[-1] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(weights))
    label = controller.info.label
    controller.load_model(str(bad))
    qtbot.waitUntil(lambda: "altered" in controller.error, timeout=60_000)
    assert controller.info.label == label  # still scoring with the previous model
    assert controller.panel.model_label.text() == label


def test_asked_when_decoded_held_until_shown_and_never_asked_twice(qtbot, controller,
                                                                   images) -> None:
    """The request leaves when the image is decoded; its answers wait for the image to be on
    screen (no probability or map over the previous image), and showing it asks nothing more."""
    first, second = images[0], images[1]
    controller.on_instance_changed(None)
    controller.on_image_shown(first)
    _settle(qtbot, controller)
    asked: list[str] = []
    submit = controller.worker.submit

    def counting(path, *args, **kwargs):
        asked.append(path)
        return submit(path, *args, **kwargs)

    controller.worker.submit = counting
    controller.on_instance_changed(None)
    controller.screen.on_image_arriving(second)
    assert asked == [second.path]
    _settle(qtbot, controller)  # prediction and map have come, the image is not shown yet
    key = (second.path, 0)
    assert controller.screen.results.cams.get(key) is not None
    assert controller.panel.prediction is None or controller.panel.prediction.path != second.path
    assert controller.overlay.key != key or not controller.overlay.item.isVisible()
    controller.on_image_shown(second)
    assert asked == [second.path]  # answered from what came early
    pred = controller.panel.prediction
    assert pred is not None and pred.path == second.path
    assert controller.overlay.key == key


def test_shown_while_the_early_map_is_still_coming_is_not_asked_again(qtbot, controller,
                                                                     images) -> None:
    decoded = images[1]
    controller.on_instance_changed(None)
    asked: list[str] = []
    submit = controller.worker.submit
    controller.worker.submit = lambda path, *a, **k: (asked.append(path), submit(path, *a, **k))
    controller.screen.on_image_arriving(decoded)
    controller.on_image_shown(decoded)  # at once: the request is in flight
    assert asked == [decoded.path]
    _settle(qtbot, controller)
    assert asked == [decoded.path]
    assert controller.panel.prediction is not None
    assert controller.panel.prediction.path == decoded.path
    assert controller.overlay.key == (decoded.path, 0)
