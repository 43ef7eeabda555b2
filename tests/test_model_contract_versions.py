"""A model records its input-contract version; the viewer and the batch prepare images for it.

Model 1.1 is ``pv-input-2`` at 320 px (a small film is upscaled bilinearly, not box-replicated);
v1.0 models (``pv-input-1``, 224 px) keep loading. Preparing a film for the wrong version would
show the model other pixels than it was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from pneumoview.core import contract  # noqa: E402
from pneumoview.core.modelinfo import read_model_info  # noqa: E402
from tests.support.dicom_factory import make_dataset, save  # noqa: E402
from tests.support.model_fixture import make_random_model_dir  # noqa: E402

SIZE = 48  # larger than the test film: step 3 upscales it, where the versions differ


def _film() -> np.ndarray:
    rng = np.random.default_rng(3)
    base = np.add.outer(np.arange(40.0), np.arange(40.0)) * 40
    return (base + rng.integers(0, 200, (40, 40))).astype(np.uint16)


def _model(tmp_path: Path, version: str) -> Path:
    d = make_random_model_dir(tmp_path / version, input_size=SIZE)
    meta = json.loads((d / "metadata.json").read_text())
    meta["input_contract"] = version
    (d / "metadata.json").write_text(json.dumps(meta))
    return d


def test_pv_input_2_model_loads_and_versions_differ_for_small_films(tmp_path):
    info = read_model_info(_model(tmp_path, "pv-input-2"))
    assert info.input_contract == "pv-input-2" and info.input_size == SIZE
    one = contract.model_input(_film(), False, SIZE, "pv-input-1")
    two = contract.model_input(_film(), False, SIZE, "pv-input-2")
    assert np.abs(one - two).max() > 0.01


@pytest.mark.parametrize("version", ["pv-input-1", "pv-input-2"])
def test_viewer_engine_prepares_for_the_models_version(tmp_path, version):
    from pneumoview.core import dicomio
    from pneumoview.core.inference import Engine

    path = tmp_path / "film.dcm"
    save(make_dataset(_film(), BodyPartExamined="CHEST", ViewPosition="PA"), path)
    engine = Engine(_model(tmp_path, version), device="cpu", with_cam=False, engine="torch")
    engine.load()
    x = engine.model_input(dicomio.decode(str(path)))
    np.testing.assert_array_equal(x, contract.model_input(_film(), False, SIZE, version))


@pytest.mark.parametrize("version", ["pv-input-1", "pv-input-2"])
def test_batch_decode_prepares_for_the_models_version(tmp_path, version):
    from pneumoview.core.batch import decode_task

    path = tmp_path / "film.dcm"
    save(make_dataset(_film(), BodyPartExamined="CHEST", ViewPosition="PA"), path)
    out = decode_task({"path": str(path), "file_size": path.stat().st_size,
                       "input_size": SIZE, "input_contract": version})
    assert out["input"] is not None, out["message"]
    np.testing.assert_array_equal(out["input"], contract.model_input(_film(), False, SIZE,
                                                                      version))
