"""The model folder format and its loader (pneumoview.core.model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pneumoview.core import contract  # noqa: E402
from pneumoview.core import model as pm  # noqa: E402
from pneumoview.core.errors import PneumoViewError  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


MODEL_SEED = 1  # the model_dir fixture's weights (tests/conftest.py)
MODEL_INPUT_SIZE = 64


def _edit_meta(d: Path, **changes) -> None:
    meta = json.loads((d / pm.METADATA_FILE).read_text())
    meta.update(changes)
    (d / pm.METADATA_FILE).write_text(json.dumps(meta))


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_core_package_does_not_import_torch():
    code = "import pneumoview.core, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_build_model_shape():
    m = pm.build_model().eval()
    assert m.conv1.in_channels == 1 and m.fc.out_features == 1
    with torch.inference_mode():
        assert m(torch.zeros(2, 1, 64, 64)).shape == (2, 1)


def test_write_read_roundtrip(model_dir):
    info = pm.read_model_info(model_dir)
    assert info.architecture == pm.ARCHITECTURE
    assert info.input_contract == contract.INPUT_CONTRACT
    assert info.input_size == 64
    assert info.temperature == 1.0 and info.threshold == 0.5
    assert info.weights_sha256 == pm.sha256_file(model_dir / pm.WEIGHTS_FILE)
    assert info.label.endswith(f"(sha256 {info.weights_sha256[:8]}, id {info.model_id[5:13]})")
    assert (model_dir / pm.CARD_FILE).is_file()
    pm.verify_weights(info)


def test_load_and_predict_matches_module(model_dir):
    loaded = pm.load_model(model_dir, "cpu")
    assert not loaded.module.training
    rng = np.random.default_rng(0)
    inputs = [rng.random((64, 64), dtype=np.float32) for _ in range(3)]
    batch = pm.prepare_batch(inputs, loaded.info)
    assert batch.shape == (3, 1, 64, 64) and batch.dtype == torch.float32
    assert batch.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(batch[1, 0].numpy(),
                               contract.normalise(inputs[1], 0.5, 0.25), rtol=1e-6)
    logits = pm.predict_logits(loaded, batch)
    assert logits.dtype == np.float64 and logits.shape == (3,)
    m = pm.build_model()
    m.load_state_dict(pm.load_state_dict_file(model_dir / pm.WEIGHTS_FILE))
    with torch.inference_mode():
        direct = m.eval()(batch.contiguous()).reshape(-1).double().numpy()
    np.testing.assert_allclose(logits, direct, rtol=1e-4, atol=1e-4)


def test_prepare_batch_rejects_wrong_size(model_dir):
    info = pm.read_model_info(model_dir)
    with pytest.raises(ValueError, match="64x64"):
        pm.prepare_batch([np.zeros((32, 32), np.float32)], info)


def test_altered_weights_refused(model_dir, tmp_path):
    d = _copy(model_dir, tmp_path / "m")
    data = bytearray((d / pm.WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (d / pm.WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(PneumoViewError, match="altered or corrupt"):
        pm.load_model(d, "cpu")


def test_contract_mismatch_refused(model_dir, tmp_path):
    d = _copy(model_dir, tmp_path / "m")
    _edit_meta(d, input_contract="pv-input-0")
    with pytest.raises(PneumoViewError, match="input contract"):
        pm.read_model_info(d)


@pytest.mark.parametrize("change, match", [
    ({"architecture": "vit"}, "architecture"),
    ({"temperature": 0}, "temperature"),
    ({"threshold": 2.0}, "threshold"),
    ({"weights_sha256": "abc"}, "sha256"),
    ({"input_size": "big"}, "input_size"),
])
def test_invalid_metadata_refused(model_dir, tmp_path, change, match):
    d = _copy(model_dir, tmp_path / "m")
    _edit_meta(d, **change)
    with pytest.raises(PneumoViewError, match=match):
        pm.read_model_info(d)


def test_missing_or_broken_files(tmp_path, model_dir):
    with pytest.raises(PneumoViewError, match="not found"):
        pm.read_model_info(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PneumoViewError, match="metadata.json"):
        pm.read_model_info(empty)
    d = _copy(model_dir, tmp_path / "m")
    (d / pm.METADATA_FILE).write_text("{not json")
    with pytest.raises(PneumoViewError, match="JSON"):
        pm.read_model_info(d)
    d2 = _copy(model_dir, tmp_path / "m2")
    (d2 / pm.WEIGHTS_FILE).unlink()
    with pytest.raises(PneumoViewError, match="model.safetensors"):
        pm.load_model(d2, "cpu")


def test_wrong_tensor_shapes_refused(tmp_path):
    m = pm.build_model()
    state = m.state_dict()
    state["fc.weight"] = torch.zeros(2, 512)
    state["fc.bias"] = torch.zeros(2)
    d = pm.write_model_dir(tmp_path / "m", state, {"input_size": 64, "mean": 0.5, "std": 0.25,
                                                   "temperature": 1.0, "threshold": 0.5})
    with pytest.raises(PneumoViewError, match="do not fit"):
        pm.load_model(d, "cpu")


def test_weights_file_is_not_pickle(model_dir):
    head = (model_dir / pm.WEIGHTS_FILE).read_bytes()[:16]
    assert not head.startswith(b"\x80") and not head.startswith(b"PK")


def test_calibrated_probability():
    z = np.array([-1000.0, -2.0, 0.0, 2.0, 1000.0])
    p = pm.calibrated_probability(z, 2.0)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z / 2.0)), atol=1e-12)
    assert np.isfinite(p).all() and p[0] < 1e-200 and p[-1] == 1.0


def test_select_device():
    assert pm.select_device("cpu").type == "cpu"
    assert pm.select_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(PneumoViewError, match="unknown device"):
        pm.select_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(PneumoViewError, match="CUDA"):
            pm.select_device("cuda:1")


def test_bundled_model_if_present():
    """The shipped model folder, once exported, loads and passes its own checks."""
    from pneumoview.core.resources import bundled_model_dir

    d = bundled_model_dir()
    if not (d / pm.METADATA_FILE).is_file():
        pytest.skip("no bundled model exported yet")
    loaded = pm.load_model(None, "cpu")
    info = loaded.info
    assert 0 < info.threshold < 1 and info.temperature > 0
    assert info.metrics["test"]["kermany"]["auroc"] >= 0.97
    assert info.metrics["test"]["nih"]["auroc"] >= 0.82
