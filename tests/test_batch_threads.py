"""A batch run compiles its OpenVINO model for the thread count its pipeline starts with.

OpenVINO fixes the thread count when it compiles (:mod:`pneumoview.core.engines.openvino_engine`
keeps one compiled model per count). ``flag`` loads the model while its decode workers start, so
compiling for all cores at load and again for the count the thread rule gives beside the busy
workers cost a second compile (about 80 ms of a core on a 2-core Xeon) inside every run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from batch_support import build_small_folder

from pneumoview.core import threads
from pneumoview.core.batch import BatchOptions, run_batch

if importlib.util.find_spec("openvino") is None:  # not importorskip: see engines.ovimport
    pytest.skip("openvino is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.model_fixture import make_random_model_dir

    return make_random_model_dir(tmp_path_factory.mktemp("model") / "m", seed=5)


def test_the_model_is_compiled_for_the_pipelines_thread_count(
        model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoview.core.engines import openvino_engine

    monkeypatch.delenv(threads.ENV_CAP, raising=False)
    monkeypatch.setattr(threads, "cpu_count", lambda: 2)  # two cores, as on the workstation
    asked: list[int] = []
    request = openvino_engine.OpenVINOBackend._request

    def recording(self, n_threads: int):
        asked.append(n_threads)
        return request(self, n_threads)

    monkeypatch.setattr(openvino_engine.OpenVINOBackend, "_request", recording)
    root = build_small_folder(tmp_path / "films", 6)
    summary = run_batch(BatchOptions(root, tmp_path / "report.csv", model_dir=model_dir,
                                     device="cpu", workers=2, batch_size=3, engine="openvino",
                                     precision="f32"))
    assert summary.counts["scored"] == 6
    # load, then the first batch beside two busy workers: one thread both times, one compile
    assert asked[:2] == [1, 1], asked
