"""The round trip that matters: export a model, wrap test images as DICOM in several encodings,
score them through the core loader/predict path the app uses, and get what ``training evaluate``
reports for the original files (within 0.01)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pneumoview.core import contract, dicomio  # noqa: E402
from pneumoview.core import model as pm  # noqa: E402
from tests.support.shared_data import require  # noqa: E402
from training import sources  # noqa: E402
from training.dicomwrap import VARIANTS, grey_of, write_dicom  # noqa: E402
from training.evaluate import evaluate_model  # noqa: E402
from training.export import add_arguments as export_args  # noqa: E402
from training.export import export  # noqa: E402
from training.prepare import prepare  # noqa: E402
from training.train import get_args_parser, main  # noqa: E402

pytestmark = [pytest.mark.shared_data("nih", "labels.csv"),
              pytest.mark.shared_data("kermany", "train")]
SIZE = 64


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _has_j2k_encoder() -> bool:
    try:
        from pydicom.pixels.encoders import JPEG2000LosslessEncoder

        return JPEG2000LosslessEncoder.is_available
    except ImportError:
        return False


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny model trained for a few steps on real images, exported; and its cache."""
    tmp = tmp_path_factory.mktemp("rt")
    root = tmp / "kermany" / "train"
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).mkdir(parents=True)
        for p in sorted((require() / "kermany" / "train" / cls).iterdir())[:8]:
            shutil.copy(p, root / cls / p.name)
    with open(require() / "nih" / "labels.csv", newline="") as fh:
        nih = list(csv.DictReader(fh))
    sel = [r for r in nih if r["label"] == "1"][:8] + [r for r in nih if r["label"] == "0"][:8]
    (tmp / "nih" / "images").mkdir(parents=True)
    with open(tmp / "nih" / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label", "patient_id"])
        for r in sel:
            shutil.copy(require() / "nih" / r["image"], tmp / "nih" / r["image"])
            w.writerow([r["image"], r["label"], r["patient_id"]])
    items = sources.collect([str(root)], [str(tmp / "nih" / "labels.csv")])
    prepare(items, tmp / "cache", size=SIZE, fractions=(0.5, 0.25, 0.25), seed=0)
    main(get_args_parser().parse_args([
        "--data", str(tmp / "cache"), "--output-dir", str(tmp / "run"), "--epochs", "1",
        "--max-steps", "2", "--batch-size", "8", "--threads", "1", "--device", "cpu",
        "--lr", "1e-3"]))
    import argparse

    p = argparse.ArgumentParser()
    export_args(p)
    args = p.parse_args(["--run", str(tmp / "run"), "--out", str(tmp / "model"), "--n-boot",
                         "50", "--threads", "1", "--plots-dir", str(tmp / "plots")])
    export(args)
    return tmp / "model", tmp / "cache"


def test_export_writes_complete_model_folder(exported):
    model_dir, _ = exported
    meta = json.loads((model_dir / pm.METADATA_FILE).read_text())
    for key in ("architecture", "input_contract", "input_size", "mean", "std", "temperature",
                "threshold", "target_sensitivity", "metrics", "data", "seed", "command",
                "versions", "git_commit", "weights_sha256"):
        assert key in meta, key
    assert meta["input_size"] == SIZE and meta["input_contract"] == contract.INPUT_CONTRACT
    test = meta["metrics"]["test"]
    assert {"all", "kermany", "nih"} <= set(test)
    assert "prevalence" in test["nih"] and "ci95" in test["all"]
    assert set(meta["data"]["sources"]) == {"kermany", "nih"}
    card = (model_dir / pm.CARD_FILE).read_text()
    assert "not for diagnostic use" in card.lower() and "CC BY 4.0" in card
    assert (exported[0].parent / "plots" / "roc.png").is_file()
    info = pm.read_model_info(model_dir)
    pm.verify_weights(info)


def test_dicom_roundtrip_matches_evaluate(exported, tmp_path):
    model_dir, cache = exported
    with open(cache / "test.csv", newline="") as fh:
        test_rows = list(csv.DictReader(fh))
    items = [sources.Item(r["source"], r["path"], int(r["label"]), r["patient_id"])
             for r in test_rows]
    assert len(items) >= 4
    res = evaluate_model(str(model_dir), tmp_path / "eval", items=items, device="cpu",
                         n_boot=20, plots=True)
    assert (tmp_path / "eval" / "roc.png").is_file()
    assert (tmp_path / "eval" / "reliability.png").is_file()
    ref = dict(zip(res["paths"], res["probabilities"], strict=True))
    variants = [v for v in VARIANTS if v != "j2k" or _has_j2k_encoder()]
    loaded = pm.load_model(model_dir, "cpu")
    for v in variants:
        inputs, expected = [], []
        for k, it in enumerate(items):
            f = write_dicom(tmp_path / v / f"{k}.dcm", grey_of(it.path), v)
            img = dicomio.decode(f)  # the app's reading path
            inputs.append(contract.model_input(img.values, img.invert, loaded.info.input_size))
            expected.append(ref[it.path])
        logits = pm.predict_logits(loaded, pm.prepare_batch(inputs, loaded.info))
        prob = pm.calibrated_probability(logits, loaded.info.temperature)
        np.testing.assert_allclose(prob, expected, atol=0.01, err_msg=v)
    if not _has_j2k_encoder():
        pytest.skip("JPEG 2000 encoder (pylibjpeg-openjpeg) unavailable; other encodings passed")
