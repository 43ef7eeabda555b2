"""``--engine`` / ``--precision`` on ``flag``: what ran is in the manifest and the summary, the
engines agree on the rows, and a precision this CPU cannot run is refused with the reason."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from batch_support import build_small_folder

from pneumoview.core import report as rep

REPO = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("openvino") is None:
    pytest.skip("openvino is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.model_fixture import make_random_model_dir

    return make_random_model_dir(tmp_path_factory.mktemp("model") / "m", seed=7)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_folder(tmp_path_factory.mktemp("engine") / "data", 4, size=192)


def _flag(folder: Path, report: Path, model_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PNEUMOVIEW_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pneumoview", "flag", str(folder), "-o",
                           str(report), "--model", str(model_dir), "--workers", "1", "-q",
                           *extra], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def _probabilities(report: Path) -> dict[str, float]:
    with open(report, newline="", encoding="utf-8") as fh:
        return {r["relpath"]: float(r["probability"]) for r in csv.DictReader(fh)
                if r["status"] == "scored"}


@pytest.mark.slow
def test_manifest_and_summary_name_the_engine(folder: Path, model_dir: Path,
                                              tmp_path: Path) -> None:
    from pneumoview.core.engines.openvino_engine import cpu_has_native_bf16

    runs = {}
    for engine in ("openvino", "torch"):
        report = tmp_path / f"{engine}.csv"
        res = _flag(folder, report, model_dir, "--engine", engine)
        assert res.returncode == 0, res.stderr
        manifest = rep.read_manifest(report)
        assert manifest is not None and manifest["engine"] == engine
        expected = "bf16" if engine == "openvino" and cpu_has_native_bf16() else "f32"
        assert manifest["precision"] == expected
        assert f"({engine} {expected} on cpu)" in res.stderr
        runs[engine] = _probabilities(report)
    assert runs["openvino"].keys() == runs["torch"].keys() and runs["torch"]
    tolerance = 0.01 if cpu_has_native_bf16() else 1e-4
    for rel, p in runs["torch"].items():
        assert abs(runs["openvino"][rel] - p) <= tolerance, rel


def test_unavailable_precision_is_refused_with_the_reason(folder: Path, model_dir: Path,
                                                          tmp_path: Path) -> None:
    from pneumoview.core.engines.openvino_engine import cpu_has_native_bf16

    if cpu_has_native_bf16():
        pytest.skip("this CPU runs bf16 natively")
    res = _flag(folder, tmp_path / "r.csv", model_dir, "--precision", "bf16")
    assert res.returncode != 0 and "no native bf16" in res.stderr
    assert not (tmp_path / "r.csv").exists()  # refused before anything was written
    res = _flag(folder, tmp_path / "r.csv", model_dir, "--engine", "torch", "--precision",
                "bf16")
    assert res.returncode != 0 and "torch engine runs f32" in res.stderr


def test_unknown_engine_is_a_usage_error(folder: Path, model_dir: Path, tmp_path: Path) -> None:
    res = _flag(folder, tmp_path / "r.csv", model_dir, "--engine", "onnx")
    assert res.returncode == 2 and "--engine" in res.stderr


@pytest.fixture(scope="module")
def int8_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random model with an int8 graph (made in a module fixture: NNCF leaves a
    thread pool behind, which a test's own body must not)."""
    if importlib.util.find_spec("nncf") is None:
        pytest.skip("nncf is needed to make the int8 graph")
    from tests.support.model_fixture import make_random_model_dir
    from tests.test_int8 import SIZE, _quantised

    model_dir = make_random_model_dir(tmp_path_factory.mktemp("int8") / "m", seed=7,
                                      input_size=SIZE)
    _quantised(model_dir)
    return model_dir


@pytest.mark.slow
def test_precision_int8_runs_the_models_int8_graph(folder: Path, model_dir: Path,
                                                   int8_model_dir: Path,
                                                   tmp_path: Path) -> None:
    """``--precision int8`` is a CLI choice: with an int8 graph it runs and the manifest says
    int8; without one it is refused with the way to make one, before a report is written."""
    res = _flag(folder, tmp_path / "none.csv", model_dir, "--precision", "int8")
    assert res.returncode != 0 and "no int8 graph" in res.stderr
    assert "python -m training quantize" in res.stderr
    assert not (tmp_path / "none.csv").exists()
    model_dir = int8_model_dir
    report = tmp_path / "int8.csv"
    res = _flag(folder, report, model_dir, "--precision", "int8")
    assert res.returncode == 0, res.stderr
    manifest = rep.read_manifest(report)
    assert manifest is not None and manifest["precision"] == "int8"
    assert "(openvino int8 on cpu)" in res.stderr and _probabilities(report)
