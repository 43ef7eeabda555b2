"""The engine seam: the auto rule, the OpenVINO backend against torch, the closed-form CAM
against grad-cam's GradCAM, and what the backends feed the input gate."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pneumoview.core.cam import linear_cam
from pneumoview.core.dicomio import decode
from pneumoview.core.engines.base import (
    EngineName,
    EngineUnavailable,
    Precision,
    choose_engine,
    choose_precision,
    parse_engine,
    parse_precision,
)
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.inference import Engine
from tests.ai_support import bundled_trained_model_dir, chest_dicoms, pydicom_testdata
from tests.support.model_fixture import make_random_model_dir

if importlib.util.find_spec("openvino") is None:  # not importorskip: see engines.ovimport
    pytest.skip("openvino is not installed", allow_module_level=True)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMOVIEW_TORCH_THREADS", "1")


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_model_dir(tmp_path_factory.mktemp("model") / "random", seed=3)


def _pair(model_dir: Path | None) -> tuple[Engine, Engine]:
    fast = Engine(model_dir, device="cpu", engine="openvino", precision="f32")
    ref = Engine(model_dir, device="cpu", engine="torch")
    fast.load()
    ref.load()
    return fast, ref


@pytest.fixture(scope="module")
def bundled_pair() -> tuple[Engine, Engine]:
    return _pair(bundled_trained_model_dir())


def _films() -> list[np.ndarray]:
    """Model inputs of the real chest films (shared data, else pydicom-data's RG1)."""
    paths = chest_dicoms() or [pydicom_testdata("RG1_UNCR.dcm")]
    engine = Engine()
    return [engine.model_input(decode(p)) for p in paths]


# -- the rule ----------------------------------------------------------------------------------
def test_auto_rule() -> None:
    assert choose_engine(EngineName.AUTO, "cpu", openvino_ok=True) is EngineName.OPENVINO
    assert choose_engine(EngineName.AUTO, "cpu", openvino_ok=False) is EngineName.TORCH
    assert choose_engine(EngineName.AUTO, "cuda", openvino_ok=True) is EngineName.TORCH
    assert choose_engine(EngineName.AUTO, "mps", openvino_ok=True) is EngineName.TORCH
    assert choose_engine(EngineName.TORCH, "cpu", openvino_ok=True) is EngineName.TORCH


def test_precision_rule() -> None:
    ov, pt = EngineName.OPENVINO, EngineName.TORCH
    assert choose_precision(Precision.AUTO, True, ov) is Precision.BF16
    assert choose_precision(Precision.AUTO, False, ov) is Precision.F32
    assert choose_precision(Precision.AUTO, True, pt) is Precision.F32
    assert choose_precision(Precision.F32, True, ov) is Precision.F32
    assert choose_precision(Precision.BF16, True, ov) is Precision.BF16
    with pytest.raises(EngineUnavailable, match="no native bf16"):
        choose_precision(Precision.BF16, False, ov)
    with pytest.raises(EngineUnavailable, match="torch engine runs f32"):
        choose_precision(Precision.BF16, True, pt)


def test_names_parse() -> None:
    assert parse_engine("OpenVINO") is EngineName.OPENVINO and parse_engine("") is EngineName.AUTO
    assert parse_precision("fp32") is Precision.F32 and parse_precision(None) is Precision.AUTO
    with pytest.raises(PneumoViewError, match="unknown engine 'onnx'"):
        parse_engine("onnx")
    with pytest.raises(PneumoViewError, match="unknown precision 'int4'"):
        parse_precision("int4")


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_openvino_engine_imports_no_torch_and_leaves_no_telemetry(random_dir: Path,
                                                                   tmp_path: Path,
                                                                   device: str) -> None:
    """Loading and running the OpenVINO engine needs no torch (nor does ``auto`` on a machine
    that can have no GPU), and openvino's usage telemetry (which would write a client id under
    ~/intel and keep a sender thread) stays blocked."""
    from pneumoview.core.engines.loader import no_gpu_possible

    if device == "auto" and not no_gpu_possible():
        pytest.skip("this machine may have a GPU: only torch can tell")
    code = ("import sys, threading; from pneumoview.core.inference import Engine; "
            f"e = Engine({str(random_dir)!r}, device={device!r}); e.load(); "
            "import numpy as np; e.cam_from_input(np.full((224, 224), 0.5, np.float32)); "
            "print(e.engine_text, 'torch' in sys.modules, "
            "sys.modules.get('openvino_telemetry', 'absent'), threading.active_count())")
    env = {**os.environ, "PNEUMOVIEW_TORCH_THREADS": "1", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO, env=env)
    from pneumoview.core.engines.openvino_engine import cpu_has_native_bf16

    auto = "bf16" if cpu_has_native_bf16() else "f32"  # what precision auto runs here
    assert out.stdout.split() == ["openvino", auto, "on", "cpu", "False", "None", "1"]
    assert list(tmp_path.iterdir()) == []


# -- the OpenVINO backend against torch ------------------------------------------------------
def test_openvino_matches_torch_on_random_model(random_dir: Path) -> None:
    """Random weights have batch norms at identity: this checks the layout (strides, pads,
    downsample branches) with a batch of four, including an odd input size."""
    fast, ref = _pair(random_dir)
    rng = np.random.default_rng(0)
    xs = [rng.random((224, 224)).astype(np.float32) for _ in range(4)]
    a, b = fast.forward(xs), ref.forward(xs)
    assert a.activations.shape == b.activations.shape == (4, 512, 7, 7)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(a.activations, b.activations, atol=1e-4, rtol=1e-3)
    assert fast.engine_name == "openvino" and fast.precision == "f32"
    assert ref.engine_text == "torch f32 on cpu"


@pytest.mark.shared_data
def test_openvino_matches_torch_on_real_films(bundled_pair: tuple[Engine, Engine]) -> None:
    fast, ref = bundled_pair
    xs = _films()
    a, b = fast.forward(xs), ref.forward(xs)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-3)
    scale = float(np.abs(b.activations).max())
    assert float(np.abs(a.activations - b.activations).max()) < 1e-4 * scale
    np.testing.assert_allclose(a.pooled, b.pooled, atol=1e-4 * scale)


def test_altered_weights_refused_by_openvino(random_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in random_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(PneumoViewError, match="sha256"):
        Engine(bad, device="cpu", engine="openvino").load()


def test_bf16_hint_reports_what_really_runs(random_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The precision shown is read back from the compiled model: on a CPU without native bf16
    OpenVINO runs f32 even when asked for bf16, and the engine must say f32."""
    from pneumoview.core.engines import openvino_engine

    native = openvino_engine.cpu_has_native_bf16()
    monkeypatch.setattr(openvino_engine, "cpu_has_native_bf16", lambda core=None: True)
    eng = Engine(random_dir, device="cpu", engine="openvino", precision="bf16")
    eng.load()
    assert eng.precision == ("bf16" if native else "f32")


def test_explicit_bf16_refused_without_native_support(random_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoview.core.engines import openvino_engine

    monkeypatch.setattr(openvino_engine, "cpu_has_native_bf16", lambda core=None: False)
    with pytest.raises(EngineUnavailable, match="no native bf16"):
        Engine(random_dir, device="cpu", engine="openvino", precision="bf16").load()
    auto = Engine(random_dir, device="cpu", engine="openvino", precision="auto")
    auto.load()
    assert auto.precision == "f32"


def test_auto_falls_back_to_torch_and_says_why(random_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoview.core.engines import openvino_engine

    def broken() -> None:
        raise EngineUnavailable("the openvino engine cannot be imported (test)")

    monkeypatch.setattr(openvino_engine, "_core", broken)
    auto = Engine(random_dir, device="cpu")
    auto.load()
    assert auto.engine_name == "torch" and "cannot be imported (test)" in auto.engine_fallback
    with pytest.raises(EngineUnavailable, match="cannot be imported"):
        Engine(random_dir, device="cpu", engine="openvino").load()


# -- the closed-form CAM against grad-cam ------------------------------------------------------
def test_linear_cam_shapes_and_edge_cases() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((2, 8, 5, 6)).astype(np.float32)
    w = rng.standard_normal(8).astype(np.float32)
    batch = linear_cam(a, w)
    assert batch.shape == (2, 5, 6)
    np.testing.assert_allclose(batch[1], linear_cam(a[1], w), atol=1e-7)
    assert float(batch.min()) == 0.0 and float(batch.max()) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(linear_cam(a[0], -np.abs(w) - 1), np.zeros((5, 6)))
    with pytest.raises(ValueError, match="channel weights"):
        linear_cam(a, w[:4])


@pytest.mark.shared_data
def test_closed_form_cam_equals_gradcam_on_real_films(
        bundled_pair: tuple[Engine, Engine]) -> None:
    """Grad-CAM for global average pooling + one linear logit is ReLU(sum_k w_k A_k): the
    map of either engine, from the scoring forward pass, equals grad-cam's GradCAM."""
    fast, ref = bundled_pair
    for x in _films():
        reference = ref.gradcam_from_input(x)
        for engine in (ref, fast):
            closed = engine.cam_from_input(x)
            r = np.corrcoef(closed.ravel(), reference.ravel())[0, 1]
            assert r >= 0.999, (engine.engine_text, r)
            assert np.argmax(closed) == np.argmax(reference)
        np.testing.assert_allclose(ref.cam_from_input(x), reference, atol=1e-4)


@pytest.mark.shared_data
def test_score_with_cam_is_one_pass_on_openvino(bundled_pair: tuple[Engine, Engine]) -> None:
    fast, ref = bundled_pair
    decoded = decode((chest_dicoms() or [pydicom_testdata("RG1_UNCR.dcm")])[0])
    seen = []
    pred, cam = fast.score_with_cam(decoded, force=True, on_prediction=seen.append)
    assert seen == [pred] and cam is not None and cam.shape == decoded.shape
    assert pred.logit == pytest.approx(ref.score(decoded, force=True).logit, abs=1e-3)


# -- what the gate reads -----------------------------------------------------------------------
@pytest.mark.shared_data
def test_backends_feed_the_input_gate_alike(bundled_pair: tuple[Engine, Engine]) -> None:
    from pneumoview.core.inputgate import InputGate

    fast, ref = bundled_pair
    fb, rb = fast._require(), ref._require()
    assert sorted(fb.gate_tensors) == sorted(rb.gate_tensors)
    for key, value in rb.gate_tensors.items():
        np.testing.assert_array_equal(fb.gate_tensors[key], value)
    gate = InputGate.from_model(fb.info.raw, fb.gate_tensors)
    if gate is None:
        pytest.skip("the bundled model has no input gate")
    for x in _films():
        a, b = fast.forward([x]), ref.forward([x])
        va, vb = gate.judge((1024, 1024), x, a.activations[0]), \
            gate.judge((1024, 1024), x, b.activations[0])
        assert va.kind == vb.kind
        assert va.atypicality == pytest.approx(vb.atypicality, rel=1e-3)
