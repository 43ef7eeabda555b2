"""``pneumoview --self-test`` on the source tree: it passes when things are whole and fails when
one piece (a sample, a codec plugin, the model weights) is not."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pneumoview import selftest
from pneumoview.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = ROOT / "resources" / "selftest"
BUNDLED_MODEL = ROOT / "resources" / "model"


def test_samples_are_small_synthetic_and_of_the_declared_syntax() -> None:
    total = 0
    for sample in selftest.SAMPLES:
        path = SAMPLES_DIR / sample.filename
        total += path.stat().st_size
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.file_meta.TransferSyntaxUID == sample.syntax
        assert str(ds.PatientName) == "SELFTEST^SYNTHETIC"
    assert total < 200_000


def test_every_codec_sample_decodes_through_app_and_every_required_plugin() -> None:
    checks = selftest.check_codecs(SAMPLES_DIR)
    assert len(checks) == len(selftest.SAMPLES)
    for check, sample in zip(checks, selftest.SAMPLES, strict=True):
        assert check.ok, check.line()
        for plugin in ("app", *sample.plugins):
            assert plugin in check.detail


def test_all_codec_plugins_the_bundle_must_ship_are_covered() -> None:
    required = {p for s in selftest.SAMPLES for p in s.plugins}
    assert required == {"pydicom", "pylibjpeg", "pyjpegls", "gdcm", "pillow"}


def test_a_sample_decoding_to_other_values_fails(tmp_path: Path) -> None:
    shutil.copytree(SAMPLES_DIR, tmp_path / "s")
    path = tmp_path / "s" / "uncompressed.dcm"
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.copy()
    arr[5, 7] ^= 1
    ds.PixelData = arr.tobytes()
    ds.save_as(path)
    checks = selftest.check_codecs(tmp_path / "s")
    bad = [c for c in checks if not c.ok]
    assert [c.name for c in bad] == ["uncompressed (uncompressed.dcm)"]
    assert "1 pixels differ" in bad[0].detail


def test_a_missing_sample_fails(tmp_path: Path) -> None:
    shutil.copytree(SAMPLES_DIR, tmp_path / "s")
    (tmp_path / "s" / "j2k_lossless.dcm").unlink()
    checks = selftest.check_codecs(tmp_path / "s")
    assert [c.ok for c in checks].count(False) == 1
    assert "missing" in next(c for c in checks if not c.ok).detail


def test_an_unavailable_plugin_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    rle = next(s for s in selftest.SAMPLES if s.name == "RLE lossless")
    fake = selftest.Sample(rle.name, rle.filename, rle.syntax, rle.bits, rle.lossless,
                           ("pydicom", "no-such-plugin"))
    monkeypatch.setattr(selftest, "SAMPLES", (fake,))
    (check,) = selftest.check_codecs(SAMPLES_DIR)
    assert not check.ok
    assert "no-such-plugin not available" in check.detail


def test_reference_images_use_their_range_and_are_not_square() -> None:
    a12 = selftest.reference_image(12)
    a8 = selftest.reference_image(8)
    assert a12.shape == a8.shape == selftest.SAMPLE_SHAPE
    assert a12.shape[0] != a12.shape[1]
    assert a12.max() > 3000 and a12.min() < 100 and len(np.unique(a12)) > 1000
    assert a8.dtype == np.uint8 and a8.max() > 200 and a8.min() < 60


def test_qt_platform_plugins_are_found() -> None:
    check = selftest.check_qt()
    assert check.ok, check.line()
    assert "offscreen" in check.detail


def test_model_check_passes_on_a_valid_model_and_fails_on_altered_weights(
        random_model_dir: Path, tmp_path: Path) -> None:
    assert selftest.check_model(random_model_dir).ok
    altered = tmp_path / "altered"
    shutil.copytree(random_model_dir, altered)
    weights = altered / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    check = selftest.check_model(altered)
    assert not check.ok and "altered" in check.detail


def test_missing_model_fails_with_a_reason(tmp_path: Path) -> None:
    check = selftest.check_model(tmp_path / "nowhere")
    assert not check.ok and "not found" in check.detail


@pytest.mark.slow
def test_inference_and_cam_run_on_a_model(random_model_dir: Path) -> None:
    import torch

    torch.set_num_threads(1)
    checks = selftest.check_inference(random_model_dir, device="cpu", directory=SAMPLES_DIR,
                                      engine_name="torch")
    assert [c.area for c in checks] == ["inference", "cam"]
    assert all(c.ok for c in checks), [c.line() for c in checks]
    assert "64x48 map" in checks[1].detail
    assert "with torch f32 on cpu" in checks[0].detail


@pytest.mark.slow
def test_fast_engine_is_checked_against_torch(random_model_dir: Path) -> None:
    from pneumoview.core.engines.openvino_engine import cpu_has_native_bf16, openvino_available
    from pneumoview.core.inference import Engine

    if not openvino_available():
        pytest.skip("openvino is not installed")
    checks = selftest.check_inference(random_model_dir, device="cpu", directory=SAMPLES_DIR,
                                      engine_name="openvino")
    assert [c.area for c in checks] == ["inference", "cam", "engine"]
    assert all(c.ok for c in checks), [c.line() for c in checks]
    auto = "bf16" if cpu_has_native_bf16() else "f32"  # what precision auto runs here
    assert f"openvino {auto} on cpu" in checks[0].detail
    assert "6 samples, max logit difference" in checks[2].detail
    fast = Engine(random_model_dir, device="cpu", engine="openvino", precision="f32")
    fast.load()
    logits = fast.logits
    fast.logits = lambda inputs: logits(inputs) + 0.01  # type: ignore[method-assign]
    off = selftest.check_engine_agreement(fast, random_model_dir, "cpu", SAMPLES_DIR)
    assert not off.ok and "limit 0.001" in off.detail


def test_cli_self_test_exits_1_and_reports_when_the_model_is_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["--self-test", "--model", str(tmp_path / "nowhere"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL  model" in out and "OK    codec" in out
    assert "self-test FAILED" in out


def test_report_ends_with_a_verdict() -> None:
    buf = io.StringIO()
    checks = selftest.run_self_test(stream=buf, steps=("codecs",))
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("PneumoView ") and "self-test" in lines[0]
    assert lines[-1] == f"self-test passed: {len(checks)} checks"


@pytest.mark.slow
def test_bundled_model_self_test_passes() -> None:
    if not (BUNDLED_MODEL / "metadata.json").is_file():
        pytest.skip("no bundled model in resources/model yet (it is added by the training run)")
    env = dict(os.environ, OMP_NUM_THREADS="1", QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-m", "pneumoview", "--self-test", "--device", "cpu"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "self-test passed" in proc.stdout


@pytest.fixture(scope="module")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.model_fixture import make_random_model_dir

    return make_random_model_dir(tmp_path_factory.mktemp("model") / "m")
