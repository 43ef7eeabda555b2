"""The batch with population operating points and site profiles: per-row thresholds, the
logit and operating_point columns, the manifest's set, and refusals to mix."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pneumoview.core import report as rep
from pneumoview.core.batch import BatchOptions, run_batch
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.modelinfo import read_model_info
from pneumoview.core.oppoints import sigmoid

AGES = ["045Y", "012Y", "", "030Y", "", "008Y"]  # adult, child, unknown...
POINTS = {"adult": {"threshold": 0.2}, "paediatric": {"threshold": 0.9}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from tests.support.model_fixture import make_random_model_dir

    torch.set_num_threads(1)
    d = make_random_model_dir(tmp_path_factory.mktemp("model") / "m", seed=5)
    meta = json.loads((d / "metadata.json").read_text())
    meta["operating_points"] = POINTS
    (d / "metadata.json").write_text(json.dumps(meta))
    return d


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.dicom_factory import make_dataset, save

    root = tmp_path_factory.mktemp("aged") / "data"
    root.mkdir()
    rng = np.random.default_rng(2)
    for i, age in enumerate(AGES):
        base = rng.integers(0, 256, (8, 8)).astype(np.float32)
        arr = np.clip(np.kron(base, np.ones((16, 16))) + rng.normal(0, 8, (128, 128)), 0,
                      255).astype(np.uint8)
        extra = {"PatientAge": age} if age else {}
        if i == 4:  # no PatientAge, but a birth date 40 years before the study
            extra = {"PatientBirthDate": "19860101", "StudyDate": "20260101"}
        save(make_dataset(arr, PatientID=f"P{i}", ViewPosition="PA", **extra),
             root / f"img{i}.dcm")
    return root


def _run(root: Path, out: Path, model_dir: Path, **kw) -> object:
    return run_batch(BatchOptions(root, out, model_dir=model_dir, device="cpu", workers=1,
                                  batch_size=4, **kw))


def test_rows_use_their_populations_point(folder: Path, model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    summary = _run(folder, out, model_dir)
    assert "population operating points" in summary.policy
    rows = {r["relpath"]: r for r in rep.read_report(out)}
    info = read_model_info(model_dir)
    want = {"img0.dcm": "adult", "img1.dcm": "paediatric", "img2.dcm": "age-unknown:adult",
            "img3.dcm": "adult", "img4.dcm": "adult", "img5.dcm": "paediatric"}
    for rel, point in want.items():
        r = rows[rel]
        assert r["status"] == "scored", r["message"]
        assert r["operating_point"] == point
        z = float(r["logit"])
        assert repr(z) == r["logit"]  # full precision
        p = sigmoid(z / info.temperature)
        assert float(r["probability"]) == pytest.approx(p, abs=1e-6)
        t = 0.2 if point.endswith("adult") else 0.9
        assert float(r["threshold"]) == t and (r["flagged"] == "true") == (p >= t)
    manifest = rep.read_manifest(out)
    assert manifest["operating_points"] == {"adult": 0.2, "paediatric": 0.9,
                                            "age-unknown:adult": 0.2}
    assert manifest["threshold"] == 0.2  # the unknown-age point
    assert manifest["report_format"] == rep.REPORT_FORMAT >= 4  # 4: logit, operating_point
    # resuming with the same set works; with --threshold (one threshold) it is refused
    again = _run(folder, out, model_dir, resume=True)
    assert again.resumed == len(AGES)
    with pytest.raises(PneumoViewError, match="mix"):
        _run(folder, out, model_dir, resume=True, threshold=0.5)


def test_threshold_overrides_every_point(folder: Path, model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    _run(folder, out, model_dir, threshold=0.5)
    rows = rep.read_report(out)
    assert {r["operating_point"] for r in rows} == {"override"}
    assert {r["threshold"] for r in rows} == {"0.5"}


def _profile(tmp_path: Path, model_dir: Path, name: str, seed: int) -> Path:
    from pneumoview.core.sitefit import Cases, SiteFit
    from pneumoview.core.siteprofile import save_profile

    info = read_model_info(model_dir)
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(60, int), np.zeros(60, int)]
    z = np.where(y == 1, rng.normal(1, 1, 120), rng.normal(-1, 1, 120)) * 3 - 2
    data = SiteFit(metric="sensitivity", target=0.9, name=name, n_boot=200).fit(
        Cases(y, z, None), model_id=info.model_id, model_label=info.label)
    path = tmp_path / f"{name}.json"
    save_profile(path, data)
    return path


def test_a_profile_replaces_calibration_and_threshold(folder: Path, model_dir: Path,
                                                      tmp_path: Path) -> None:
    from pneumoview.core.siteprofile import load_profile

    prof_path = _profile(tmp_path, model_dir, "ward7", 0)
    profile = load_profile(prof_path)
    out = tmp_path / "p.csv"
    summary = _run(folder, out, model_dir, profile=prof_path)
    assert "site profile 'ward7'" in summary.policy
    for r in rep.read_report(out):
        z = float(r["logit"])
        p = profile.calibration.probability(z)
        assert float(r["probability"]) == pytest.approx(p, abs=1e-6)
        assert r["operating_point"] == "profile:ward7"
        assert (r["flagged"] == "true") == (p >= profile.threshold)
    m = rep.read_manifest(out)
    assert m["profile"] == {"name": "ward7", "sha256": profile.sha256}
    other = _profile(tmp_path, model_dir, "ward8", 1)
    with pytest.raises(PneumoViewError, match="refusing to mix profiles"):
        _run(folder, out, model_dir, profile=other, resume=True)
    with pytest.raises(PneumoViewError, match="refusing to mix profiles"):
        _run(folder, out, model_dir, resume=True)  # without the profile
    # a profile of another model is refused before anything is written
    with pytest.raises(PneumoViewError, match="re-calibrate for model"):
        _run(folder, tmp_path / "x.csv", None, profile=prof_path)
    assert not (tmp_path / "x.csv").exists()


def test_merge_refuses_shards_of_different_point_sets(folder: Path, model_dir: Path,
                                                      tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _run(folder, a, model_dir, shard=(0, 2))
    _run(folder, b, model_dir, shard=(1, 2), threshold=0.2)
    with pytest.raises(PneumoViewError, match="mix operating points"):
        rep.merge_reports([a, b], tmp_path / "m.csv")
    _run(folder, b, model_dir, shard=(1, 2), overwrite=True)
    result = rep.merge_reports([a, b], tmp_path / "m.csv")
    assert result.rows == len(AGES)
    assert rep.read_manifest(tmp_path / "m.csv")["operating_points"]["paediatric"] == 0.9
    assert not math.isnan(result.threshold)
