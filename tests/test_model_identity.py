"""Model identity and metadata integrity (issue 13.7, and the metadata FIFO of 13.17).

``metadata.json`` was outside the integrity check: threshold, temperature, mean/std and input
size could be changed while every row still showed the genuine sha256, ``--resume`` mixed two
calibrations in one report, extreme mean/std gave ``scored`` rows with an empty probability, and
``input_size`` 4096 asked for 24 GiB. ``model_id`` now digests the weights and every
behavioural field; values are range-checked; a non-finite output is an ``error`` row.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from batch_support import build_small_folder, rows_by_relpath
from hostile_support import run_bounded

from pneumoview.core import modelinfo as mi
from pneumoview.core import report as rep
from pneumoview.core.errors import PneumoViewError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from tests.support.model_fixture import make_random_model_dir

    torch.set_num_threads(1)
    return make_random_model_dir(tmp_path_factory.mktemp("model") / "m", seed=5, input_size=64)


def _copy(src: Path, dst: Path, **changes: object) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / mi.METADATA_FILE).read_text())
    meta.update(changes)
    (dst / mi.METADATA_FILE).write_text(json.dumps(meta))
    return dst


# --------------------------------------------------------------------------------------------
# Every key the project writes is classified
# --------------------------------------------------------------------------------------------
def _export_keys() -> set[str]:
    """String keys of the dict literals ``training/export.py`` builds its metadata from."""
    tree = ast.parse((REPO / "training" / "export.py").read_text())
    keys: set[str] = set()
    for node in ast.walk(tree):
        named = isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in ("base", "meta") for t in node.targets)
        if named and isinstance(node.value, ast.Dict):
            keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    assert {"mean", "temperature", "metrics", "git_commit"} <= keys  # the parse found them
    return keys


def _fixture_keys(model_dir: Path) -> set[str]:
    return set(json.loads((model_dir / mi.METADATA_FILE).read_text()))


def test_every_metadata_key_is_digested_or_allow_listed(model_dir):
    """Fails when a key the project writes is in neither list: decide whether it changes a
    result (BEHAVIOURAL_KEYS) or only describes the model (DESCRIPTIVE_KEYS)."""
    assert not mi.BEHAVIOURAL_KEYS & mi.DESCRIPTIVE_KEYS
    bundled = json.loads((REPO / "resources" / "model" / mi.METADATA_FILE).read_text())
    written = set(bundled) | _export_keys() | _fixture_keys(model_dir) | {"weights_sha256"}
    unclassified = written - mi.BEHAVIOURAL_KEYS - mi.DESCRIPTIVE_KEYS
    assert not unclassified, f"classify these metadata keys: {sorted(unclassified)}"


def test_model_id_covers_behaviour_and_ignores_description(model_dir):
    info = mi.read_model_info(model_dir)
    raw = dict(info.raw)
    base = mi.model_id(info.weights_sha256, raw)
    assert base == info.model_id and base.startswith("pvm1-") and len(base) == 5 + 64
    for key in sorted(mi.BEHAVIOURAL_KEYS - {"weights_sha256"}):
        changed = {**raw, key: _other(raw[key]) if key in raw else {"added": True}}
        assert mi.model_id(info.weights_sha256, changed) != base, key
    for key in sorted(mi.DESCRIPTIVE_KEYS):
        assert mi.model_id(info.weights_sha256, {**raw, key: "anything"}) == base, key
    assert mi.model_id(info.weights_sha256, {**raw, "future_gate_v9": [1]}) != base  # unknown
    assert mi.model_id("0" * 64, raw) != base  # and the weights
    # canonical: key order and whitespace of the file do not matter
    assert mi.model_id(info.weights_sha256.upper(), dict(reversed(list(raw.items())))) == base


def _other(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value * 0.5 + 0.01
    return f"{value}-x"


def test_edited_metadata_keeps_the_sha256_but_changes_the_model_id(model_dir, tmp_path):
    info = mi.read_model_info(model_dir)
    tampered = mi.read_model_info(_copy(model_dir, tmp_path / "t", temperature=2.5))
    renamed = mi.read_model_info(_copy(model_dir, tmp_path / "r", name="renamed", version="9"))
    assert tampered.weights_sha256 == info.weights_sha256
    assert tampered.model_id != info.model_id
    assert renamed.model_id == info.model_id
    assert tampered.short_id in tampered.label and info.short_id != tampered.short_id


def test_the_bundled_model_has_a_stable_id():
    a, b = mi.read_model_info(None), mi.read_model_info(None)
    assert a.model_id == b.model_id and a.model_id.startswith("pvm1-")


@pytest.mark.parametrize("change, match", [
    ({"input_size": 4096}, "input_size"),
    ({"input_size": 8}, "input_size"),
    ({"input_size": True}, "input_size"),
    ({"mean": 1e308}, "mean"),
    ({"mean": "nan"}, "mean"),
    ({"std": 1e-300}, "std"),
    ({"std": 1e300}, "std"),
    ({"temperature": 1e-300}, "temperature"),
    ({"temperature": 1e300}, "temperature"),
    ({"temperature": "inf"}, "temperature"),
    ({"threshold": -0.1}, "threshold"),
    ({"threshold": [0.5]}, "threshold"),
    ({"input_contract": ["pv-input-1"]}, "input contract"),
])
def test_behavioural_values_are_range_checked(model_dir, tmp_path, change, match):
    d = _copy(model_dir, tmp_path / "m", **change)
    with pytest.raises(PneumoViewError, match=match):
        mi.read_model_info(d)


def test_modelinfo_does_not_import_torch():
    out = run_bounded("""
        import sys
        from pneumoview.core import modelinfo
        info = modelinfo.read_model_info(None)
        modelinfo.verify_weights(info)
        assert "torch" not in sys.modules, "modelinfo imported torch"
        print(info.model_id)
    """, mem_mib=2048, timeout_s=120)
    assert out.ok, out.stderr[-2000:]
    assert out.stdout.strip().startswith("pvm1-")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
@pytest.mark.parametrize("name", [mi.METADATA_FILE, mi.WEIGHTS_FILE])
def test_a_fifo_in_the_model_folder_does_not_block_loading(model_dir, tmp_path, name):
    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    (d / name).unlink()
    os.mkfifo(d / name)
    out = run_bounded(f"""
        from pneumoview.core.errors import PneumoViewError
        from pneumoview.core.modelinfo import read_model_info, verify_weights
        try:
            verify_weights(read_model_info({str(d)!r}))
        except PneumoViewError as exc:
            print("REFUSED", exc)
    """, timeout_s=60)
    assert out.ok, (out.returncode, out.stderr[-2000:])
    assert "REFUSED" in out.stdout and ("regular file" in out.stdout
                                        or "model.safetensors" in out.stdout)


# --------------------------------------------------------------------------------------------
# Non-finite outputs
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nan_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model whose weights give NaN for every input (their sha256 is genuine)."""
    import torch

    from pneumoview.core.model import ARCHITECTURE, build_model, write_model_dir

    state = build_model().state_dict()
    state["fc.bias"] = torch.full_like(state["fc.bias"], float("nan"))
    return write_model_dir(tmp_path_factory.mktemp("nan") / "m", state, {
        "name": "nan-test", "version": "0", "architecture": ARCHITECTURE, "input_size": 64,
        "mean": 0.5, "std": 0.25, "temperature": 1.0, "threshold": 0.5})


def test_non_finite_probability_is_an_error_row_never_scored(nan_model_dir, tmp_path):
    from pneumoview.core.batch import BatchOptions, run_batch

    root = build_small_folder(tmp_path / "in", 3, size=64)
    out = tmp_path / "r.csv"
    summary = run_batch(BatchOptions(root, out, model_dir=nan_model_dir, device="cpu",
                                     workers=1, batch_size=2))
    rows = rep.read_report(out, allow_partial_tail=False)
    assert len(rows) == 3
    assert {r["status"] for r in rows} == {"error"}, [r["status"] for r in rows]
    assert all("non-finite" in r["message"] and r["probability"] == "" for r in rows)
    assert summary.counts["scored"] == 0 and summary.flagged == 0


def test_non_finite_probability_is_an_error_in_the_engine(nan_model_dir):
    import numpy as np

    from pneumoview.core.dicomio import DecodedImage
    from pneumoview.core.inference import Engine

    engine = Engine(nan_model_dir, "cpu", with_cam=False)
    engine.load()
    img = DecodedImage(path="x.dcm", values=np.random.default_rng(0).random((64, 64),
                                                                            np.float32),
                       frame=0, n_frames=1, photometric="MONOCHROME2", invert=False,
                       modality="DX")
    with pytest.raises(PneumoViewError, match="non-finite"):
        engine.score(img, force=True)


# --------------------------------------------------------------------------------------------
# Reports: the model_id column, resume and merge
# --------------------------------------------------------------------------------------------
def _flag(root: Path, out: Path, model: Path, **kw: object):
    from pneumoview.core.batch import BatchOptions, run_batch

    return run_batch(BatchOptions(root, out, model_dir=model, device="cpu", workers=1,
                                  batch_size=4, **kw))


def test_model_id_is_a_report_column_and_a_manifest_field(model_dir, tmp_path):
    root = build_small_folder(tmp_path / "in", 3, size=64)
    out = tmp_path / "r.csv"
    _flag(root, out, model_dir)
    info = mi.read_model_info(model_dir)
    with open(out, encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:20] == list(rep.LEGACY_COLUMNS) and header[20] == "model_id"
    rows = rep.read_report(out)
    assert {r["model_id"] for r in rows} == {info.model_id}
    manifest = rep.read_manifest(out)
    assert manifest["model_id"] == info.model_id
    assert manifest["report_format"] == rep.REPORT_FORMAT >= 2  # 2 added model_id


def test_resume_refuses_a_tampered_metadata_copy_before_scoring(model_dir, tmp_path):
    root = build_small_folder(tmp_path / "in", 4, size=64)
    out = tmp_path / "r.csv"
    _flag(root, out, model_dir)
    os.remove(next(root.rglob("*.dcm")))  # something is left to do on resume
    (root / "s0" / "new.dcm").write_bytes(next(root.rglob("*.dcm")).read_bytes())
    before = out.read_bytes()
    tampered = _copy(model_dir, tmp_path / "tampered", temperature=0.2)
    with pytest.raises(PneumoViewError, match="model_id"):
        _flag(root, out, tampered, resume=True)
    assert out.read_bytes() == before  # refused before anything was scored or rewritten
    # the row check holds without the manifest too
    rep.manifest_path(out).unlink()
    with pytest.raises(PneumoViewError, match="model_id"):
        _flag(root, out, tampered, resume=True)


def _downgrade_to_format_1(report: Path) -> None:
    """Make a report look like one written before model_id existed (20 columns)."""
    with open(report, encoding="utf-8", newline="") as fh:
        lines = list(csv.reader(fh))
    with open(report, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(line[:20] for line in lines)
    man = rep.manifest_path(report)
    data = json.loads(man.read_text())
    data.pop("model_id", None)
    data.pop("report_format", None)
    man.write_text(json.dumps(data))


def test_old_format_report_resumes_and_merges_when_the_weights_match(model_dir, tmp_path):
    root = build_small_folder(tmp_path / "in", 6, size=64)
    out = tmp_path / "r.csv"
    _flag(root, out, model_dir)
    _downgrade_to_format_1(out)
    kept = {r["relpath"] for r in rep.read_report(out)}
    victim = sorted(root.rglob("*.dcm"))[0]
    os.utime(victim, ns=(1, 1))  # changed: re-scored on resume
    summary = _flag(root, out, model_dir, resume=True)
    assert summary.finished and summary.resumed == len(kept) - 1
    rows = rows_by_relpath(rep.read_report(out, allow_partial_tail=False))
    info = mi.read_model_info(model_dir)
    rel = victim.relative_to(root).as_posix()
    assert rows[rel]["model_id"] == info.model_id
    assert {r["model_id"] for k, r in rows.items() if k != rel} == {""}  # unknown: not invented

    shards = []
    for k in range(2):
        shard_out = tmp_path / f"shard{k}.csv"
        _flag(root, shard_out, model_dir, shard=(k, 2))
        shards.append(shard_out)
    _downgrade_to_format_1(shards[0])  # one old-format shard, one new: same weights
    merged = rep.merge_reports(shards, tmp_path / "merged.csv")
    assert merged.rows == 6


def test_merge_refuses_mixed_model_ids(model_dir, tmp_path):
    root = build_small_folder(tmp_path / "in", 4, size=64)
    tampered = _copy(model_dir, tmp_path / "tampered", mean=0.4)
    shards = [tmp_path / "a.csv", tmp_path / "b.csv"]
    _flag(root, shards[0], model_dir, shard=(0, 2))
    _flag(root, shards[1], tampered, shard=(1, 2))
    with pytest.raises(PneumoViewError, match="model_id"):
        rep.merge_reports(shards, tmp_path / "merged.csv")
