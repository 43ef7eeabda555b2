"""``--precision int8``: the model folder's int8 graph, made ahead of time by ``python -m training
quantize``, loaded from sha256-checked bytes; refused when absent, altered or stale.

The fixture quantises a small random model (64 px) on a few smooth synthetic films, so it runs
in 10-25 s on a busy 2-core machine (so the tests that use it are marked slow); the bundled
model's int8 graph is checked against the accuracy guard in
``test_engine_accuracy.py``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pneumoview.core.engines.base import EngineName, EngineUnavailable, Precision, choose_precision
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.inference import Engine

if importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None:
    pytest.skip("openvino and nncf are needed", allow_module_level=True)

SIZE = 64


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMOVIEW_TORCH_THREADS", "1")


def films(n: int, seed: int = 0) -> list[np.ndarray]:
    """Contract step-4-like inputs: smooth random fields in [0, 1]."""
    from pneumoview.core import contract

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.random((8, 8)).astype(np.float32)
        big = np.kron(small, np.ones((SIZE // 8 + 1, SIZE // 8 + 1), np.float32))
        out.append(contract.clip_and_scale(contract.resize_area(big, SIZE)))
    return out


def _quantised(model_dir: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    from pneumoview.core.engines.openvino_engine import read_verified_state
    from pneumoview.core.inputgate import split_gate_tensors
    from pneumoview.core.modelinfo import read_model_info
    from training import quantize as Q

    info = read_model_info(model_dir)
    state, _gate = split_gate_tensors(read_verified_state(info))
    model = Q.quantise(info, state, films(6, seed=1))
    xml, weights = Q.ir_bytes(model)
    Q.write_int8(model_dir, xml, weights, {"method": "test", "command": "test"})
    xs = films(8, seed=2)
    return Q.forward(model, info, xs, threads=1)[0], xs


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, list]:
    from tests.support.model_fixture import make_random_model_dir

    model_dir = make_random_model_dir(tmp_path_factory.mktemp("int8") / "m", seed=5,
                                      input_size=SIZE)
    logits, xs = _quantised(model_dir)
    return model_dir, logits, xs


@pytest.fixture()
def copy_dir(int8_dir: tuple[Path, np.ndarray, list], tmp_path: Path) -> Path:
    return Path(shutil.copytree(int8_dir[0], tmp_path / "copy"))


@pytest.mark.slow
def test_int8_graph_loads_and_is_close_to_f32(int8_dir: tuple[Path, np.ndarray, list]) -> None:
    model_dir, quantised_logits, xs = int8_dir
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert set(meta["int8"]) >= {"xml_sha256", "bin_sha256", "weights_sha256"}
    int8 = Engine(model_dir, device="cpu", engine="openvino", precision="int8")
    f32 = Engine(model_dir, device="cpu", engine="openvino", precision="f32")
    int8.load()
    f32.load()
    assert int8.precision == "int8" and "openvino int8 on cpu" in int8.engine_text
    got = int8.logits(xs)
    np.testing.assert_allclose(got, quantised_logits, atol=1e-4)  # the bytes that were written
    ref = f32.logits(xs)
    assert np.abs(got - ref).max() < 0.25, np.abs(got - ref).max()
    assert np.corrcoef(got, ref)[0, 1] > 0.95
    # the same two outputs as the f32 graph; the logit is fc(mean(A)) exactly (head in f32)
    fwd = int8.forward(xs)
    assert fwd.activations.shape[:2] == (len(xs), 512)
    backend = int8._backend
    closed = fwd.pooled @ backend.fc_weight + backend.fc_bias
    np.testing.assert_allclose(fwd.logits, closed, atol=1e-4)
    cam = int8.cam_from_input(xs[0])
    assert cam.shape == fwd.activations.shape[2:] and np.isfinite(cam).all()


@pytest.mark.slow
def test_model_without_int8_is_refused_with_the_way_to_make_one(tmp_path: Path) -> None:
    from tests.support.model_fixture import make_random_model_dir

    plain = make_random_model_dir(tmp_path / "plain", seed=5, input_size=SIZE)
    with pytest.raises(EngineUnavailable, match="no int8 graph.*python -m training quantize") \
            as caught:
        Engine(plain, device="cpu", engine="openvino", precision="int8").load()
    assert caught.value.option == "precision"
    with pytest.raises(EngineUnavailable, match="no int8 graph"):  # auto engine: no fallback
        Engine(plain, device="cpu", engine="auto", precision="int8").load()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["int8.xml", "int8.bin"])
def test_altered_int8_file_is_refused(copy_dir: Path, name: str) -> None:
    path = copy_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(PneumoViewError, match="does not match the sha256"):
        Engine(copy_dir, device="cpu", engine="openvino", precision="int8").load()
    Engine(copy_dir, device="cpu", engine="openvino", precision="f32").load()  # f32 unaffected


@pytest.mark.slow
def test_missing_int8_file_and_stale_record_are_refused(copy_dir: Path) -> None:
    (copy_dir / "int8.bin").unlink()
    with pytest.raises(PneumoViewError, match="bin is missing"):
        Engine(copy_dir, device="cpu", engine="openvino", precision="int8").load()
    meta_path = copy_dir / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["int8"]["weights_sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PneumoViewError, match="quantised from other weights"):
        Engine(copy_dir, device="cpu", engine="openvino", precision="int8").load()


@pytest.mark.slow
def test_int8_record_is_part_of_the_model_id(int8_dir: tuple[Path, np.ndarray, list]) -> None:
    from pneumoview.core.modelinfo import model_id

    raw = json.loads((int8_dir[0] / "metadata.json").read_text())
    sha = raw["weights_sha256"]
    other = {**raw, "int8": {**raw["int8"], "bin_sha256": "1" * 64}}
    assert model_id(sha, other) != model_id(sha, raw)  # another int8 graph: another identity
    notes = {**raw, "int8_quantisation": {"note": "x"}}
    assert model_id(sha, notes) == model_id(sha, raw)  # its figures only describe it


def test_int8_is_explicit_and_openvino_only() -> None:
    assert choose_precision(Precision.AUTO, True, EngineName.OPENVINO) is Precision.BF16
    assert choose_precision(Precision.AUTO, False, EngineName.OPENVINO) is Precision.F32
    assert choose_precision(Precision.INT8, False, EngineName.OPENVINO) is Precision.INT8
    with pytest.raises(EngineUnavailable, match="int8 runs on the openvino engine only"):
        choose_precision(Precision.INT8, False, EngineName.TORCH)


@pytest.mark.slow
def test_torch_engine_refuses_int8(int8_dir: tuple[Path, np.ndarray, list]) -> None:
    with pytest.raises(EngineUnavailable, match="int8 runs on the openvino engine only"):
        Engine(int8_dir[0], device="cpu", engine="torch", precision="int8").load()


def test_guard_figures_and_refusal() -> None:
    from training.quantize import check_guard

    y = np.array([0, 0, 1, 1, 0, 1])
    ref = np.array([0.1, 0.2, 0.8, 0.9, 0.495, 0.7])
    ok = check_guard(y, ref, ref + np.array([0, 0, 0, 0, 0.01, 0]), {"threshold": 0.5})
    assert ok["passed"] and ok["decisions"]["threshold"]["differ"] == 1  # within the margin
    far = check_guard(y, ref, ref + np.array([0.45, 0, 0, 0, 0, 0]), {"threshold": 0.5})
    assert not far["passed"] and far["decisions"]["threshold"]["differ_outside_margin"] == 1
    worse = check_guard(y, ref, 1 - ref, {"threshold": 0.99})
    assert not worse["passed"] and worse["auroc_delta"] > 0.002


@pytest.mark.slow
def test_quantize_refuses_to_write_when_the_guard_fails(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from tests.support.model_fixture import make_random_model_dir
    from training import quantize as Q

    model_dir = make_random_model_dir(tmp_path / "m", seed=5, input_size=SIZE)
    before = (model_dir / "metadata.json").read_bytes()
    xs = films(6)
    monkeypatch.setattr(Q, "choose_films", lambda meta, n, seed: Q.Films(
        ["a"] * 3, ["b"] * 6, np.array([0, 1, 0, 1, 0, 1]), {"x": 3}))
    monkeypatch.setattr(Q, "load_inputs", lambda info, paths: xs[:len(paths)])
    monkeypatch.setattr(Q, "torch_logits", lambda d, inputs: np.linspace(-5, 5, len(inputs)))
    args = argparse.Namespace(model=str(model_dir), calibration=3, seed=0, threads=1,
                              dry_run=False)
    with pytest.raises(Q.GuardFailed, match="nothing written"):
        Q.run(args)
    assert not (model_dir / "int8.xml").exists() and not (model_dir / "int8.bin").exists()
    assert (model_dir / "metadata.json").read_bytes() == before


@pytest.mark.slow
def test_settings_precision_int8_reaches_the_loader(
        int8_dir: tuple[Path, np.ndarray, list]) -> None:
    """``ai_precision: "int8"`` in the settings is the viewer's choice unless the command line
    says otherwise, and loads the int8 graph."""
    from pneumoview.core.aistate import resolve_choice
    from pneumoview.core.settings import Settings

    settings = Settings(ai_precision="int8")
    choice = resolve_choice(str(int8_dir[0]), "cpu", settings)
    assert choice.precision == "int8"
    assert resolve_choice(None, None, settings, cli_precision="f32").precision == "f32"
    engine = Engine(choice.model_dir, device="cpu", engine=choice.engine,
                    precision=choice.precision)
    engine.load()
    assert engine.engine_text.startswith("openvino int8")


@pytest.mark.slow
def test_self_test_checks_int8_against_torch(int8_dir: tuple[Path, np.ndarray, list]) -> None:
    from pneumoview import selftest

    checks = selftest.check_inference(int8_dir[0], device="cpu", engine_name="openvino",
                                      precision="int8")
    assert [c.area for c in checks] == ["inference", "cam", "engine"]
    assert all(c.ok for c in checks), [c.line() for c in checks]
    assert "openvino int8 on cpu" in checks[0].detail
    assert checks[2].name == "openvino int8 vs torch f32" and "limit 1" in checks[2].detail


@pytest.mark.slow
def test_loading_int8_needs_neither_nncf_nor_torch(int8_dir: tuple[Path, np.ndarray, list],
                                                   tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    code = ("import sys; from pneumoview.core.inference import Engine; "
            f"e = Engine({str(int8_dir[0])!r}, device='cpu', engine='openvino', "
            "precision='int8'); e.load(); import numpy as np; "
            f"e.logits([np.full(({SIZE}, {SIZE}), 0.5, np.float32)]); "
            "print(e.engine_text, 'nncf' in sys.modules, 'torch' in sys.modules)")
    env = {**os.environ, "PNEUMOVIEW_TORCH_THREADS": "1", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1], env=env)
    assert out.stdout.split() == ["openvino", "int8", "on", "cpu", "False", "False"]
