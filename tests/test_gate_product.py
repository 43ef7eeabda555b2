"""The content gate in the product: the engine (viewer path, Score anyway), the batch engine
(not_scored rows, gate columns, --no-gate, resume and merge across gate modes), the CLI flag.

The gates here are controlled (tests/support/gate_support.py): a random-weights model with a
head that passes or refuses everything; the rules (too small, no content) are the app's own.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pneumoview.core import report as rep
from pneumoview.core.batch import BatchOptions, run_batch
from pneumoview.core.dicomio import decode
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.gatepolicy import GateMode
from pneumoview.core.inference import Engine
from tests.support.dicom_factory import make_dataset, save
from tests.support.gate_support import UPSIDE_DOWN, make_gated_model_dir, structured_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("PNEUMOVIEW_TORCH_THREADS", "1")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("models")
    return {"pass": make_gated_model_dir(base / "passing"),
            "refuse": make_gated_model_dir(base / "refusing", refuse=True)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two structured films, a uniform page, a 64 x 64 thumbnail and a lateral (tag gate)."""
    root = tmp_path_factory.mktemp("gatefolder") / "data"
    root.mkdir()
    save(make_dataset(structured_image(256, 0), BodyPartExamined="CHEST", ViewPosition="PA"),
         root / "film_a.dcm")
    save(make_dataset(structured_image(300, 1)), root / "film_b.dcm")
    save(make_dataset(np.full((256, 256), 1000, np.uint16)), root / "blank.dcm")
    save(make_dataset(structured_image(64, 2)), root / "thumb.dcm")
    save(make_dataset(structured_image(256, 3), ViewPosition="LL"), root / "lateral.dcm")
    return root


def _rows(report: Path) -> dict[str, dict[str, str]]:
    return {r["relpath"]: r for r in rep.read_report(report)}


def _flag(root: Path, out: Path, model: Path, **kw: object):
    return run_batch(BatchOptions(root, out, model_dir=model, device="cpu", workers=1,
                                  batch_size=kw.pop("batch_size", 4), **kw))


# -- the engine (the viewer's path) ----------------------------------------------------------
def test_engine_refuses_what_the_gate_refuses_and_scores_it_anyway(models, folder) -> None:
    eng = Engine(models["refuse"], device="cpu")
    eng.load()
    film = decode(folder / "film_a.dcm")
    pred = eng.score(film)
    assert pred.status == "not_scored" and pred.reason == UPSIDE_DOWN
    assert pred.state_text == f"Not scored: {UPSIDE_DOWN}"
    assert pred.gate is not None and pred.gate.kind.value == "rotated"
    assert pred.gate.atypicality is not None  # measured even when refused
    seen: list = []
    pred_cam, cam = eng.score_with_cam(film, on_prediction=seen.append)
    assert pred_cam.status == "not_scored" and cam is None and seen == [pred_cam]
    forced, cam = eng.score_with_cam(film, force=True)
    assert forced.scored and cam is not None and cam.shape == film.shape
    assert forced.reason == f"scored anyway despite: {UPSIDE_DOWN}"
    assert forced.probability == pytest.approx(eng.score(film, force=True).probability)


def test_engine_rules_refuse_before_the_model_and_tags_come_first(models, folder) -> None:
    eng = Engine(models["pass"], device="cpu")
    eng.load()
    ok = eng.score(decode(folder / "film_a.dcm"))
    assert ok.scored and ok.reason == "" and ok.gate.kind.value == "passed"
    assert 0.0 <= ok.gate.atypicality_percentile <= 100.0
    blank = eng.score(decode(folder / "blank.dcm"))
    assert blank.status == "not_scored" and blank.reason == "no usable image content (blank)"
    assert blank.gate.atypicality is None  # refused by a rule: no forward pass
    thumb, cam = eng.score_with_cam(decode(folder / "thumb.dcm"))
    assert thumb.reason.startswith("image too small to be a chest film (64 x 64 px")
    assert cam is None
    lateral = eng.score(decode(folder / "lateral.dcm"), force=True)
    assert lateral.scored and lateral.reason == \
        "scored anyway despite: lateral view (ViewPosition LL)"


def test_engine_without_a_gate_scores_as_before(tmp_path: Path, folder) -> None:
    from tests.support.model_fixture import make_random_model_dir

    eng = Engine(make_random_model_dir(tmp_path / "m"), device="cpu")
    eng.load()
    assert eng.input_gate is None
    pred = eng.score(decode(folder / "blank.dcm"))
    assert pred.scored and pred.gate is None


def test_a_malformed_gate_refuses_the_model(models, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(models["pass"], bad)
    meta = json.loads((bad / "metadata.json").read_text())
    meta["gate"]["heads"]["orientation"]["refuse_below"] = 7.0
    (bad / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PneumoViewError, match="input gate is malformed"):
        Engine(bad, device="cpu").load()


# -- the batch -------------------------------------------------------------------------------
def test_batch_gate_refusals_are_not_scored_with_the_reason(models, folder,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    summary = _flag(folder, out, models["pass"])
    rows = _rows(out)
    assert out.read_text().splitlines()[0] == ",".join(rep.COLUMNS)
    assert rep.COLUMNS[-3:] == ("gate", "atypicality", "atypicality_percentile")
    for name in ("film_a.dcm", "film_b.dcm"):
        r = rows[name]
        assert (r["status"], r["gate"], r["message"]) == ("scored", "passed", "")
        assert float(r["atypicality"]) > 0 and 0 <= float(r["atypicality_percentile"]) <= 100
    assert (rows["blank.dcm"]["status"], rows["blank.dcm"]["gate"]) == ("not_scored",
                                                                        "no_content")
    assert rows["blank.dcm"]["message"] == "no usable image content (blank)"
    assert rows["blank.dcm"]["probability"] == "" and rows["blank.dcm"]["atypicality"] == ""
    assert (rows["thumb.dcm"]["status"], rows["thumb.dcm"]["gate"]) == ("not_scored",
                                                                        "too_small")
    assert rows["lateral.dcm"]["gate"] == ""  # the tag gate refused it first
    assert rows["lateral.dcm"]["message"] == "lateral view (ViewPosition LL)"
    manifest = rep.read_manifest(out)
    assert manifest["gate"] == "content" and manifest["report_format"] == rep.REPORT_FORMAT
    assert summary.gate == "content" and summary.gate_note == ""
    assert summary.counts["scored"] == 2 and summary.counts["not_scored"] == 3

    refused = tmp_path / "refused.csv"
    _flag(folder, refused, models["refuse"])
    rows = _rows(refused)
    for name in ("film_a.dcm", "film_b.dcm"):
        assert (rows[name]["status"], rows[name]["gate"], rows[name]["message"]) == \
            ("not_scored", "rotated", UPSIDE_DOWN)
        assert rows[name]["probability"] == "" and rows[name]["flagged"] == ""
        assert rows[name]["atypicality"] != ""  # always reported once the model ran


def test_batch_agrees_with_the_engine(models, folder, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    _flag(folder, out, models["pass"], batch_size=2)
    eng = Engine(models["pass"], device="cpu", with_cam=False)
    eng.load()
    for name, row in _rows(out).items():
        pred = eng.score(decode(folder / name))
        assert row["status"] == pred.status
        if pred.scored:
            assert float(row["probability"]) == pytest.approx(pred.probability, abs=1e-6)
            assert float(row["atypicality"]) == pytest.approx(pred.gate.atypicality, abs=1e-4)
        elif pred.gate is not None:
            assert row["message"] == pred.reason


def test_no_gate_keeps_the_tag_gate_only_and_says_so(models, folder, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    summary = _flag(folder, out, models["refuse"], gate_mode=GateMode.TAGS_ONLY)
    rows = _rows(out)
    for name in ("film_a.dcm", "film_b.dcm", "blank.dcm", "thumb.dcm"):
        assert (rows[name]["status"], rows[name]["gate"]) == ("scored", "off"), name
        assert rows[name]["atypicality"] != ""
    assert rows["lateral.dcm"]["status"] == "not_scored"
    assert rep.read_manifest(out)["gate"] == "tags"
    assert summary.gate == "tags" and "--no-gate" in summary.gate_note


def test_resume_and_merge_refuse_to_mix_gate_modes(models, folder, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    _flag(folder, out, models["pass"], gate_mode=GateMode.TAGS_ONLY)
    with pytest.raises(PneumoViewError, match="refusing to mix gates"):
        _flag(folder, out, models["pass"], resume=True)
    again = _flag(folder, out, models["pass"], resume=True, gate_mode=GateMode.TAGS_ONLY)
    assert again.resumed == 5 and again.done == 5
    shards = []
    for k, mode in ((0, GateMode.CONTENT), (1, GateMode.TAGS_ONLY)):
        shards.append(tmp_path / f"s{k}.csv")
        _flag(folder, shards[-1], models["pass"], shard=(k, 2), gate_mode=mode)
    with pytest.raises(PneumoViewError, match="gated differently"):
        rep.merge_reports(shards, tmp_path / "merged.csv")
    _flag(folder, shards[1], models["pass"], shard=(1, 2), overwrite=True)
    merged = rep.merge_reports(shards, tmp_path / "merged.csv")
    assert merged.rows == 5 and rep.read_manifest(tmp_path / "merged.csv")["gate"] == "content"


@pytest.mark.parametrize(("fmt", "n_columns"), [(3, 21), (4, 23)])
def test_reports_before_the_gate_columns_still_resume_and_merge(tmp_path: Path, folder,
                                                                 fmt: int,
                                                                 n_columns: int) -> None:
    """A report written before the gate columns (format 3: 21 columns; format 4: 23, with
    ``logit, operating_point``; no manifest gate) resumes with a model without a content gate
    and merges; its rows keep empty gate cells and new rows are written with the full header."""
    from tests.support.model_fixture import make_random_model_dir

    model = make_random_model_dir(tmp_path / "m")
    out = tmp_path / "old.csv"
    _flag(folder, out, model)
    with out.open(newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == list(rep.COLUMNS)
    assert rep.COLUMNS[21:23] == ("logit", "operating_point")
    assert rep.COLUMNS[23:] == ("gate", "atypicality", "atypicality_percentile")
    with out.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(line[:n_columns] for line in lines[:3])
    m = json.loads(rep.manifest_path(out).read_text())
    m.pop("gate")
    if fmt < 4:  # format 3 manifests had no policy fields: their one threshold applied
        for key in ("operating_points", "profile", "engine", "precision"):
            m.pop(key, None)
    m.update(report_format=fmt, finished=False)
    rep.manifest_path(out).write_text(json.dumps(m))
    summary = _flag(folder, out, model, resume=True)
    assert summary.resumed == 2 and summary.done == 5
    rows = _rows(out)
    assert len(rows) == 5 and {r["gate"] for r in rows.values()} <= {"", "absent"}
    kept = [rows[line[1]] for line in lines[1:3]]  # the rows of the old report
    assert all(r["gate"] == "" and r["atypicality"] == "" for r in kept)
    if fmt == 4:
        assert all(r["logit"] for r in kept if r["status"] == "scored")
    assert rep.read_manifest(out)["report_format"] == rep.REPORT_FORMAT == 5
    assert rep.merge_reports([out], tmp_path / "merged.csv").rows == 5


def test_flag_command_no_gate(models, folder, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    res = subprocess.run([sys.executable, "-m", "pneumoview", "flag", str(folder), "--output",
                          str(out), "--model", str(models["refuse"]), "--device", "cpu",
                          "--workers", "1", "--no-gate", "-q"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "tag gate only (--no-gate" in res.stderr
    assert _rows(out)["film_a.dcm"]["gate"] == "off"
