"""The engine: loading and refusing models, scoring, the gate, lossless twins, CAM shape."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from pneumoview.core.dicomio import decode
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.inference import Engine, Prediction, label_state
from tests.ai_support import chest_dicoms, pydicom_testdata, shared_dicom
from tests.support.dicom_factory import save, with_pixels


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("PNEUMOVIEW_TORCH_THREADS", "1")




@pytest.fixture(scope="module")
def engine(model_dir: Path) -> Engine:
    import torch

    torch.set_num_threads(1)
    eng = Engine(model_dir, device="cpu", engine="torch")  # grad-cam's plumbing needs torch
    eng.load()
    return eng


def _copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


# -- loading -------------------------------------------------------------------------------
def test_engine_import_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, pneumoview.core.inference, pneumoview.core.gate, "
            "pneumoview.core.cam, pneumoview.core.threads; "
            "import pneumoview.core.engines, pneumoview.core.engines.loader; "
            "print('torch' in sys.modules, 'pytorch_grad_cam' in sys.modules, "
            "'openvino' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False", "False"]


def test_load_reports_model(engine: Engine) -> None:
    assert engine.loaded and engine.info is not None
    assert engine.device == "cpu"
    assert engine.info.label.startswith("pneumoview-test-random 0.0-test (sha256 ")


def test_altered_weights_refused(model_dir: Path, tmp_path: Path) -> None:
    bad = _copy_model(model_dir, tmp_path / "altered")
    weights = bytearray((bad / "model.safetensors").read_bytes())
    weights[-100] ^= 0x01
    (bad / "model.safetensors").write_bytes(bytes(weights))
    eng = Engine(bad, device="cpu")
    with pytest.raises(PneumoViewError, match="altered or corrupt"):
        eng.load()
    assert not eng.loaded and eng.info is None


def test_wrong_input_contract_refused(model_dir: Path, tmp_path: Path) -> None:
    bad = _copy_model(model_dir, tmp_path / "contract")
    meta = json.loads((bad / "metadata.json").read_text())
    meta["input_contract"] = "pv-input-0"
    (bad / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PneumoViewError, match="input contract 'pv-input-0'"):
        Engine(bad, device="cpu").load()


def test_missing_model_refused(tmp_path: Path) -> None:
    with pytest.raises(PneumoViewError, match="not found"):
        Engine(tmp_path / "nowhere", device="cpu").load()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PneumoViewError, match="metadata.json"):
        Engine(empty, device="cpu").load()


def test_use_before_load_is_a_clear_error(model_dir: Path) -> None:
    eng = Engine(model_dir, device="cpu")
    with pytest.raises(PneumoViewError, match="no model is loaded"):
        eng.probabilities([np.zeros((224, 224), np.float32)])


# -- scoring -------------------------------------------------------------------------------
def test_label_state_and_relabel() -> None:
    assert label_state(0.5, 0.5) and not label_state(0.49, 0.5)
    p = Prediction(path="x", frame=0, status="scored", probability=0.3, logit=-0.8,
                   threshold=0.5, flagged=False, reason="", model_label="m", model_sha256="0")
    assert p.with_threshold(0.2).flagged is True and p.with_threshold(0.2).threshold == 0.2
    assert p.state_text == "Not flagged"
    assert p.with_threshold(0.3).state_text == "Flagged: possible pneumonia"


def test_probabilities_are_calibrated(engine: Engine, model_dir: Path) -> None:
    rng = np.random.default_rng(0)
    x = [rng.random((224, 224), dtype=np.float32) for _ in range(3)]
    logits = engine.logits(x)
    probs = engine.probabilities(x)
    assert probs.shape == (3,) and np.all((probs > 0) & (probs < 1))
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits / engine.info.temperature)))
    # batched and one-by-one agree
    single = np.array([engine.probabilities([xi])[0] for xi in x])
    np.testing.assert_allclose(probs, single, atol=1e-5)


def test_temperature_is_applied(model_dir: Path, tmp_path: Path) -> None:
    hot = _copy_model(model_dir, tmp_path / "hot")
    meta = json.loads((hot / "metadata.json").read_text())
    meta["temperature"] = 2.5
    (hot / "metadata.json").write_text(json.dumps(meta))
    eng = Engine(hot, device="cpu")
    eng.load()
    x = [np.linspace(0, 1, 224 * 224, dtype=np.float32).reshape(224, 224)]
    logit = eng.logits(x)[0]
    assert eng.probabilities(x)[0] == pytest.approx(1 / (1 + np.exp(-logit / 2.5)))


@pytest.mark.shared_data("dicom")
def test_score_shared_chest_files(engine: Engine) -> None:
    for path in chest_dicoms():
        pred = engine.score(decode(path))
        assert pred.status == "scored", (path.name, pred.reason)
        assert 0.0 < pred.probability < 1.0 and pred.reason == ""
        assert pred.flagged == (pred.probability >= engine.info.threshold)
        assert pred.model_label == engine.info.label
        assert pred.model_sha256 == engine.info.weights_sha256
        assert {"preprocess_ms", "forward_ms", "total_ms"} <= set(pred.timings)


def test_extremity_not_scored_unless_forced(engine: Engine) -> None:
    decoded = decode(pydicom_testdata("RG3_UNCI.dcm"))
    pred = engine.score(decoded)
    assert pred.status == "not_scored" and pred.probability is None and pred.flagged is None
    assert pred.reason == "not a chest image (BodyPartExamined EXTREMITY)"
    assert pred.state_text == "Not scored: not a chest image (BodyPartExamined EXTREMITY)"
    forced = engine.score(decoded, force=True)
    assert forced.status == "scored" and forced.probability is not None
    assert "EXTREMITY" in forced.reason


def test_threshold_argument(engine: Engine) -> None:
    decoded = decode(pydicom_testdata("RG1_UNCR.dcm"))
    pred = engine.score(decoded, threshold=0.0)
    assert pred.flagged is True and pred.threshold == 0.0
    assert engine.score(decoded, threshold=1.0).flagged is (pred.probability >= 1.0)


# -- lossless twins ------------------------------------------------------------------------
def _twins(src: Path, out: Path) -> dict[str, Path]:
    ds = pydicom.dcmread(src)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    pixels = ds.pixel_array
    assert pixels.dtype == np.uint8 and ds.PhotometricInterpretation == "MONOCHROME2"
    twins = {"original": src}
    twins["monochrome1"] = save(with_pixels(
        ds, (255 - pixels).astype(np.uint8), photometric="MONOCHROME1", bits_stored=8,
        signed=False), out / "mono1.dcm")
    twins["rescaled12"] = save(with_pixels(
        ds, (pixels.astype(np.uint16) * 16 + 7), bits_stored=12, signed=False,
        RescaleSlope="0.0625", RescaleIntercept="-1024"), out / "rescaled12.dcm")
    j2k = copy.deepcopy(ds)
    j2k.compress(JPEG2000Lossless, pixels, encoding_plugin="pylibjpeg")
    j2k.save_as(out / "j2k.dcm", enforce_file_format=True)
    twins["jpeg2000"] = out / "j2k.dcm"
    return twins


@pytest.mark.shared_data("dicom", "nhsx_nih_cxr.dcm")
def test_lossless_twins_same_probability(engine: Engine, tmp_path: Path) -> None:
    twins = _twins(shared_dicom("nhsx_nih_cxr.dcm"), tmp_path)
    decoded = {name: decode(path) for name, path in twins.items()}
    assert decoded["monochrome1"].invert and not decoded["original"].invert
    assert str(pydicom.dcmread(twins["jpeg2000"]).file_meta.TransferSyntaxUID) == \
        JPEG2000Lossless
    inputs = {name: engine.model_input(d) for name, d in decoded.items()}
    probs = {name: engine.score(d).probability for name, d in decoded.items()}
    for name in twins:
        np.testing.assert_allclose(inputs[name], inputs["original"], atol=1e-4, err_msg=name)
        assert abs(probs[name] - probs["original"]) < 0.01, (name, probs)


def test_real_jpeg2000_twin_same_probability(engine: Engine) -> None:
    j2k = decode(pydicom_testdata("RG1_J2KR.dcm"))
    plain = decode(pydicom_testdata("RG1_UNCR.dcm"))
    np.testing.assert_array_equal(j2k.values, plain.values)
    assert abs(engine.score(j2k).probability - engine.score(plain).probability) < 0.01


# -- CAM -----------------------------------------------------------------------------------
def test_cam_on_original_grid(engine: Engine) -> None:
    from pneumoview.core.cam import resample_to_grid

    decoded = decode(pydicom_testdata("RG1_J2KR.dcm"))  # 1955 x 1841, not square
    cam = engine.cam(decoded)
    assert cam.shape == decoded.shape and cam.dtype == np.float32
    assert np.isfinite(cam).all() and cam.min() >= 0.0 and cam.max() <= 1.0
    grid = engine.cam_from_input(engine.model_input(decoded))
    assert grid.shape == (7, 7)
    np.testing.assert_allclose(cam, resample_to_grid(grid, decoded.shape), atol=1e-6)
    # CAM must not leave hooks or gradients behind: plain scoring still works and agrees
    p1 = engine.score(decoded).probability
    assert p1 == pytest.approx(engine.score(decoded).probability)
    assert all(p.grad is None for p in engine._reference.module.parameters())


def test_engine_without_cam_refuses_cam(model_dir: Path) -> None:
    eng = Engine(model_dir, device="cpu", with_cam=False)
    eng.load()
    with pytest.raises(PneumoViewError, match="without CAM"):
        eng.cam_from_input(np.zeros((224, 224), np.float32))


def test_cam_unchanged_by_gradient_limiting(engine: Engine) -> None:
    """Freezing the layers before layer4[-1] (for speed) must give the same map."""
    from pneumoview.core.inference import _limit_gradients_to_cam_layer

    module = engine._reference.module
    frozen = [n for n, p in module.named_parameters() if not p.requires_grad]
    assert frozen and all(not n.startswith(("layer4.1.", "fc.")) for n in frozen)
    x = np.random.default_rng(3).random((224, 224)).astype(np.float32)
    fast = engine.gradcam_from_input(x)
    try:
        for p in module.parameters():
            p.requires_grad_(True)
        full = engine.gradcam_from_input(x)
    finally:
        _limit_gradients_to_cam_layer(module)
    assert fast.max() > 0
    np.testing.assert_allclose(fast, full, atol=1e-5)


@pytest.mark.shared_data("dicom", "txv_siim_cxr.dcm")
def test_score_with_cam_matches_score_and_cam(engine: Engine) -> None:
    decoded = decode(shared_dicom("txv_siim_cxr.dcm"))
    seen = []
    pred, cam = engine.score_with_cam(decoded, on_prediction=seen.append)
    assert seen == [pred]
    plain = engine.score(decoded)
    assert pred.status == "scored" and pred.probability == pytest.approx(plain.probability,
                                                                         abs=1e-6)
    assert pred.flagged == plain.flagged and pred.model_sha256 == plain.model_sha256
    np.testing.assert_allclose(cam, engine.cam(decoded), atol=1e-5)
    assert engine.last_cam_timings["cam_ms"] > 0
    # not scored: no forward, no map
    rg3 = decode(pydicom_testdata("RG3_UNCI.dcm"))
    pred, cam = engine.score_with_cam(rg3)
    assert pred.status == "not_scored" and cam is None
