"""training/ model 1.1 pipeline on tiny synthetic films: base -> cross-validated fine-tunes ->
final fine-tune -> export with out-of-fold operating points and a before/after comparison.

The films are generated (no shared data): a "kermany" folder and an "nih" manifest whose
positives carry a bright blob, so a few steps learn something. Everything runs at 32 px.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training import cv as CV  # noqa: E402
from training import recipe as R  # noqa: E402
from training import sources  # noqa: E402
from training.data import read_index, read_split  # noqa: E402
from training.export import add_arguments as export_args  # noqa: E402
from training.export import export  # noqa: E402
from training.prepare import prepare  # noqa: E402
from training.train import get_args_parser, load_checkpoint, main  # noqa: E402

SIZE = 32
TINY = ["--epochs", "2", "--samples-per-epoch", "32", "--batch-size", "8", "--opt", "adamw",
        "--lr", "1e-3", "--lr-scheduler", "cosine", "--balance", "source", "--balance-power",
        "0", "--select-metric", "last", "--precision", "auto", "--print-freq", "1000",
        "--eval-batch-size", "64"]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _film(rng: np.random.Generator, positive: bool, dark: bool, size: int) -> np.ndarray:
    img = rng.normal(90 if dark else 120, 25, (size, size))
    if positive:
        y, x = rng.integers(size // 4, 3 * size // 4, 2)
        yy, xx = np.mgrid[:size, :size]
        img += 110 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * (size / 8) ** 2))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_sources(root: Path) -> list[sources.Item]:
    """60 Kermany-named films (some patients twice) and 50 NIH films with patient ids."""
    from PIL import Image

    rng = np.random.default_rng(0)
    k = root / "kermany" / "train"
    for cls in ("NORMAL", "PNEUMONIA"):
        (k / cls).mkdir(parents=True)
    for i in range(60):
        pos = i % 3 != 0
        name = f"person{i // 2}_bacteria_{i}.jpeg" if pos else f"IM-{i:04d}-0001.png"
        Image.fromarray(_film(rng, pos, False, 40)).save(
            k / ("PNEUMONIA" if pos else "NORMAL") / name.replace(".jpeg", ".png"))
    nih = root / "nih"
    (nih / "images").mkdir(parents=True)
    with open(nih / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label", "patient_id"])
        for i in range(50):
            pos = i % 2 == 0
            Image.fromarray(_film(rng, pos, True, 48)).save(nih / "images" / f"n{i}.png")
            w.writerow([f"images/n{i}.png", int(pos), f"P{i // 2 if i < 20 else i}"])
    return sources.collect([str(k)], [str(nih / "labels.csv")])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("cv")
    items = make_sources(tmp / "data")
    prepare(items, tmp / "data224", size=SIZE, seed=0)
    prepare(items, tmp / "data320", size=SIZE, seed=0, version="pv-input-2")
    R.CONFIGS["tiny"] = {"size": SIZE, "args": [*TINY, "--freeze", "stem", "--ema", "0.9",
                                                 "--label-smoothing", "0.1"]}
    # base: non-adult images only (as reproduce writes its index)
    from training.data import write_index

    for split in ("train", "val"):
        idx = read_split(tmp / "data224", split)
        write_index(tmp / "index" / f"base_{split}.csv",
                    idx.subset([s != "nih" for s in idx.sources]))
    main(get_args_parser().parse_args([
        "--data", str(tmp / "data224"), "--output-dir", str(tmp / "base-run"), "--train-index",
        str(tmp / "index" / "base_train.csv"), "--val-index", str(tmp / "index" /
                                                                   "base_val.csv"),
        *TINY, "--balance", "none", "--threads", "1", "--device", "cpu"]))
    _export(["--run", str(tmp / "base-run"), "--checkpoint", "last", "--out",
             str(tmp / "base-model"), "--n-boot", "0", "--skip-test"])
    summary = CV.run_cv(tmp / "data320", tmp / "base-model", tmp / "cv", "tiny", k=3,
                        threads=1, device="cpu", n_boot=50)
    plan = CV.FoldPlan(tmp / "data320", tmp / "cv", 3)
    final = CV.train_argv(tmp / "data320", tmp / "final", tmp / "base-model", "tiny",
                          plan.final_train_path, plan.guard_path, None, 1, "cpu")
    CV.run_training(final)
    yield {"tmp": tmp, "summary": summary, "plan": plan, "final_argv": final}
    R.CONFIGS.pop("tiny", None)


def _export(argv: list[str]) -> dict:
    p = argparse.ArgumentParser()
    export_args(p)
    return export(p.parse_args([*argv, "--threads", "1"]))


def test_folds_are_patient_grouped_and_never_see_their_validation(pipeline):
    tmp, plan = pipeline["tmp"], pipeline["plan"]
    test_paths = set(read_split(tmp / "data320", "test").paths)
    pool = set(plan.pool.paths)
    assert len(pool) > 0 and not pool & test_paths and set(plan.pool.sources) == {"nih"}
    seen_val: set[str] = set()
    for f in range(3):
        tr, va = read_index(plan.train_path(f)), read_index(plan.val_path(f))
        assert not set(tr.paths) & set(va.paths)
        assert not set(tr.patient_ids) & set(p for p, s in zip(va.patient_ids, va.sources,
                                                                strict=True) if s == "nih")
        assert not set(tr.paths) & test_paths
        assert "kermany" in tr.sources and set(va.sources) == {"nih"}
        seen_val |= set(va.paths)
    assert seen_val == pool  # every adult image is scored exactly once, out of fold
    final = read_index(plan.final_train_path)
    assert pool <= set(final.paths) and not set(final.paths) & test_paths
    assert not set(read_index(plan.guard_path).sources) & set(R.ADULT_SOURCES)


def test_cv_summary_and_out_of_fold_predictions(pipeline):
    tmp, s = pipeline["tmp"], pipeline["summary"]
    oof = CV.read_oof(tmp / "cv" / "oof.csv")
    assert len(oof["path"]) == s["n"] == len(pipeline["plan"].pool)
    assert sorted(set(oof["fold"].tolist())) == [0, 1, 2]
    assert len(s["fold_auroc"]) == 3 and len(s["guard_auroc"]) == 3
    assert s["mean_fold_auroc"] == pytest.approx(np.mean(s["fold_auroc"]))
    lo, hi = s["oof_auroc_ci95"]
    assert lo <= s["oof_auroc"] <= hi
    assert json.loads((tmp / "cv" / "cv.json").read_text())["config"] == "tiny"


def test_fold_runs_resume_and_are_not_rerun(pipeline, monkeypatch):
    """A finished fold is skipped (done.json with the same arguments); other arguments in the
    same folder are refused rather than silently mixed."""
    tmp = pipeline["tmp"]
    calls = []
    monkeypatch.setattr("training.train.main", lambda a: calls.append(a))
    CV.run_cv(tmp / "data320", tmp / "base-model", tmp / "cv", "tiny", k=3, threads=1,
              device="cpu", n_boot=0)
    assert calls == []
    argv = list(pipeline["final_argv"])
    argv[argv.index("--epochs") + 1] = "3"
    from pneumoview.core.errors import PneumoViewError

    with pytest.raises(PneumoViewError, match="other arguments"):
        CV.run_training(argv)


def test_fine_tune_froze_the_stem_and_kept_an_ema(pipeline):
    tmp = pipeline["tmp"]
    ck = load_checkpoint(tmp / "final" / "checkpoint.pth")
    from safetensors.torch import load_file

    base = load_file(str(tmp / "base-model" / "model.safetensors"))
    torch.testing.assert_close(ck["model"]["conv1.weight"], base["conv1.weight"])
    torch.testing.assert_close(ck["model"]["bn1.running_mean"], base["bn1.running_mean"])
    assert not torch.equal(ck["model"]["layer4.1.conv2.weight"], base["layer4.1.conv2.weight"])
    assert not torch.equal(ck["model_ema"]["fc.weight"], ck["model"]["fc.weight"])
    assert ck["precision"]["dtype"] in ("fp32", "bf16") and ck["precision"]["reason"]
    base_meta = json.loads((tmp / "base-model" / "metadata.json").read_text())
    assert ck["normalisation"] == {"mean": base_meta["mean"], "std": base_meta["std"]}


def test_export_with_out_of_fold_operating_points(pipeline):
    tmp = pipeline["tmp"]
    meta = _export(["--run", str(tmp / "final"), "--checkpoint", "last", "--out",
                    str(tmp / "model"), "--version", "1.1", "--oof", str(tmp / "cv" / "oof.csv"),
                    "--cv-summary", str(tmp / "cv" / "cv.json"), "--n-boot", "40",
                    "--compare", str(tmp / "base-model"), "--compare-data",
                    str(tmp / "data224")])
    assert meta["input_contract"] == "pv-input-2" and meta["input_size"] == SIZE
    pts = meta["operating_points"]
    assert set(pts) == {"adult", "paediatric"}
    assert meta["threshold"] == min(v["threshold"] for v in pts.values())
    assert "out-of-fold" in pts["adult"]["chosen_on"]
    assert pts["adult"]["chosen_on"].endswith(f"n={pipeline['summary']['n']}")
    val = meta["metrics"]["validation"]
    # adult validation = the out-of-fold predictions, never the final model on trained images
    assert val["nih"]["n"] == pipeline["summary"]["n"]
    assert val["nih"]["sensitivity"] >= 0.9 and val["kermany"]["sensitivity"] >= 0.9
    test = meta["metrics"]["test"]
    assert test["nih"]["operating_point"] == "adult"
    assert test["kermany"]["operating_point"] == "paediatric"
    assert meta["metrics"]["test_unknown_age"]["kermany"]["operating_point"] == "unknown-age"
    comp = meta["metrics"]["comparison"]
    assert comp["input_contract"] == "pv-input-1" and "nih" in comp["auroc_difference"]
    assert meta["training"]["exported_weights"] == "ema"
    assert meta["metrics"]["cross_validation"]["folds"] == 3
    card = (tmp / "model" / "MODEL_CARD.md").read_text()
    for text in ("Operating points", "**adult**", "Unknown age", "cross-validation",
                 "Before and after", "not for diagnostic use"):
        assert text.lower() in card.lower(), text


@pytest.mark.parametrize("folder", ["base-model", "model"])
def test_training_side_loader_scores_like_the_app(pipeline, folder):
    """training.modelio gives the app loader's logits, on the pv-input-1 base and on the
    exported pv-input-2 model (which the app loads, operating points and all)."""
    from pneumoview.core import model as pm
    from training import modelio

    d = pipeline["tmp"] / folder
    app, ours = pm.load_model(d, "cpu"), modelio.load(d, "cpu")
    assert app.info.input_contract == ours.info.input_contract
    size = app.info.input_size
    x = np.random.default_rng(0).random((3, size, size)).astype(np.float32)
    np.testing.assert_array_equal(pm.predict_logits(app, pm.prepare_batch(list(x), app.info)),
                                  pm.predict_logits(ours, pm.prepare_batch(list(x), ours.info)))


def test_search_tabulates_cross_validated_configurations(pipeline, tmp_path):
    from training import search

    work = tmp_path / "work"
    (work / "cv" / "tiny").mkdir(parents=True)
    (work / "cv" / "tiny" / "cv.json").write_bytes((pipeline["tmp"] / "cv" / "cv.json")
                                                   .read_bytes())
    p = argparse.ArgumentParser()
    search.add_arguments(p)
    assert search.run(p.parse_args(["--work", str(work), "--configs", "tiny",
                                    "--table-only"])) == 0
    res = json.loads((work / "search" / "search.json").read_text())
    assert [r["config"] for r in res["rows"]] == ["tiny"]
    assert res["rows"][0]["mean_fold_auroc"] == pipeline["summary"]["mean_fold_auroc"]
    table = (work / "search" / "search.md").read_text()
    assert "| `tiny` |" in table and "Selection rule" in table
    from pneumoview.core.errors import PneumoViewError

    with pytest.raises(PneumoViewError, match="unknown configuration"):
        search.run(p.parse_args(["--work", str(work), "--configs", "nope"]))


def test_rotation_figures_come_from_each_folds_last_epoch(tmp_path, pipeline):
    from training.card import search_table

    assert "mean_rotation_acc" not in pipeline["summary"]  # "tiny" has no rotation task
    for f, (acc, up) in enumerate([(0.9, 0.02), (0.8, 0.04)]):
        (tmp_path / f"fold{f}").mkdir()
        (tmp_path / f"fold{f}" / "log.csv").write_text(
            "epoch,val_rotation_acc,val_rotated_taken_upright\n0,0.1,0.5\n"
            f"1,{acc},{up}\n")
    rot = CV._fold_rotation(tmp_path, 2)
    assert rot["fold_rotation_acc"] == [0.9, 0.8]
    assert rot["mean_rotation_acc"] == pytest.approx(0.85)
    assert rot["mean_rotated_taken_upright"] == pytest.approx(0.03)
    assert CV._fold_rotation(tmp_path, 3) == {}  # a fold not run yet
    row = {**pipeline["summary"], "config": "x", "mean_rotation_acc": 0.85,
           "mean_rotated_taken_upright": 0.03}
    lines = search_table({"rows": [row, {**pipeline["summary"], "config": "y"}]})
    assert "| 0.850 (0.030) |" in lines[2] and "| no task |" in lines[3]
    from training.card import _cv

    card = "\n".join(_cv({"metrics": {"cross_validation": row}}))
    assert "accuracy 0.850" in card and "upright 0.030" in card
    assert "auxiliary" not in "\n".join(_cv({"metrics": {"cross_validation":
                                                         pipeline["summary"]}}))
