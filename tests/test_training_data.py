"""training/: data-set layouts, patient splits, the prepared cache and its statistics."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pneumoview.core import contract
from pneumoview.core.errors import PneumoViewError
from tests.support.shared_data import require
from training import sources
from training.prepare import RunningStats, load_model_input, prepare
from training.splits import assign_splits, group_ids

needs_data = pytest.mark.shared_data("kermany", "train")
needs_nih = pytest.mark.shared_data("nih", "labels.csv")


def _small_folder(tmp: Path, n: int = 6) -> Path:
    """A folder-layout copy of a few real Kermany images (symlinks would do; copies are tiny)."""
    root = tmp / "kermany" / "train"
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).mkdir(parents=True)
        for p in sorted((require() / "kermany" / "train" / cls).iterdir())[:n]:
            shutil.copy(p, root / cls / p.name)
    return root


def test_kermany_patient_ids():
    f = sources.kermany_patient_id
    assert f("person1000_bacteria_2931.jpeg") == "person1000"
    assert f("person1000_virus_1681.jpeg") == "person1000"
    assert f("IM-0115-0001.jpeg") == "IM-0115"
    assert f("NORMAL2-IM-0115-0001.jpeg") == "IM-0115"  # equal numbers stay together
    assert f("NORMAL2-IM-1345-0001-0002.jpeg") == "IM-1345"
    assert f("other.png") == "other"


def test_running_stats_equal_numpy():
    rng = np.random.default_rng(0)
    chunks = [rng.random((17, 23)) for _ in range(9)]
    st = RunningStats()
    for c in chunks:
        st.update(c)
    allv = np.concatenate([c.ravel() for c in chunks])
    assert st.mean == pytest.approx(allv.mean(), abs=1e-12)
    assert st.std == pytest.approx(allv.std(), abs=1e-10)


def test_groups_join_patients_and_duplicates():
    items = [sources.Item("k", f"/x/{i}", lab, pid) for i, (lab, pid) in enumerate(
        [(1, "a"), (1, "a"), (0, "b"), (0, "c"), (1, "d")])]
    hashes = ["h0", "h1", "h2", "h2", "h4"]  # b and c are byte-identical files
    g = group_ids(items, hashes)
    assert g[0] == g[1] and g[2] == g[3] and len({g[0], g[2], g[4]}) == 3


def test_splits_stratified_grouped_seeded():
    rng = np.random.default_rng(1)
    items, hashes = [], []
    for src, n in (("k", 600), ("n", 120)):
        for p in range(n):
            lab = int(rng.random() < (0.7 if src == "k" else 0.45))
            for j in range(int(rng.integers(1, 4))):
                items.append(sources.Item(src, f"/{src}/{p}_{j}", lab, f"p{p}"))
                hashes.append(f"{src}{p}_{j}")
    hashes[5] = hashes[500]  # a duplicate pair across patients
    g = group_ids(items, hashes)
    s1 = assign_splits(items, g, (0.7, 0.15, 0.15), seed=3)
    assert s1 == assign_splits(items, g, (0.7, 0.15, 0.15), seed=3)
    assert s1 != assign_splits(items, g, (0.7, 0.15, 0.15), seed=4)
    by_group: dict[int, set] = {}
    for gi, s in zip(g, s1, strict=True):
        by_group.setdefault(gi, set()).add(s)
    assert all(len(v) == 1 for v in by_group.values())  # no group straddles splits
    assert s1[5] == s1[500]
    for src in ("k", "n"):
        for lab in (0, 1):
            idx = [i for i, it in enumerate(items) if it.source == src and it.label == lab]
            share = np.mean([s1[i] == "train" for i in idx])
            assert 0.6 < share < 0.8, (src, lab, share)


@needs_data
def test_real_kermany_split_has_no_patient_or_duplicate_leak(tmp_path):
    items = sources.read_folder(require() / "kermany" / "train")
    assert items[0].source == "kermany"
    assert sum(it.label for it in items) == 3875 and len(items) == 5216
    # hashing 5,000 files is quick; decoding is not needed for the split
    hashes = [sources.file_sha256(it.path) for it in items]
    g = group_ids(items, hashes)
    s = assign_splits(items, g, seed=0)
    split_of: dict[tuple, str] = {}
    for it, h, sp in zip(items, hashes, s, strict=True):
        for key in (("p", it.patient_id), ("h", h)):
            assert split_of.setdefault(key, sp) == sp, key


@needs_data
@needs_nih
def test_manifest_layout_nih():
    items = sources.read_manifest(require() / "nih" / "labels.csv")
    assert len(items) == 490 and items[0].source == "nih"
    assert sum(it.label for it in items) == 219
    assert all(Path(it.path).is_file() for it in items[:5])


def test_manifest_errors(tmp_path):
    (tmp_path / "m.csv").write_text("image,label\nmissing.png,1\n")
    with pytest.raises(PneumoViewError, match="not found"):
        sources.read_manifest(tmp_path / "m.csv")
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "m2.csv").write_text("image,label\na.png,maybe\n")
    with pytest.raises(PneumoViewError, match="not 0/1"):
        sources.read_manifest(tmp_path / "m2.csv")
    (tmp_path / "m3.csv").write_text("path,y\na.png,1\n")
    with pytest.raises(PneumoViewError, match="columns"):
        sources.read_manifest(tmp_path / "m3.csv")


def _rsna_fixture(tmp: Path, n_pos: int = 4, n_neg: int = 4) -> tuple[Path, dict[str, int]]:
    """Real NIH images wrapped as RSNA-layout DICOM, positive patients with several box rows."""
    from training.dicomwrap import grey_of, write_dicom

    root = tmp / "rsna"
    imgs = root / "stage_2_train_images"
    rows = [["patientId", "x", "y", "width", "height", "Target"]]
    labels = {}
    with open(require() / "nih" / "labels.csv", newline="") as fh:
        nih = list(csv.DictReader(fh))
    pos = [r for r in nih if r["label"] == "1"][:n_pos]
    neg = [r for r in nih if r["label"] == "0"][:n_neg]
    for k, r in enumerate(pos + neg):
        pid = f"0000{k:04d}-aaaa-bbbb-cccc-{k:012d}"
        target = int(r["label"])
        labels[pid] = target
        write_dicom(imgs / f"{pid}.dcm", grey_of(require() / "nih" / r["image"]), "u8", pid)
        if target:
            for b in range(1 + k % 3):  # 1-3 boxes: repeated rows per positive patient
                rows.append([pid, 100 + b, 200, 150, 300, 1])
        else:
            rows.append([pid, "", "", "", "", 0])
    with open(root / "stage_2_train_labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root, labels


@needs_data
@needs_nih
def test_rsna_layout(tmp_path):
    root, labels = _rsna_fixture(tmp_path)
    items = sources.read_rsna(root)
    assert len(items) == len(labels)  # one item per patient, not per box row
    assert {it.patient_id: it.label for it in items} == labels
    assert all(it.source == "rsna" for it in items)
    # the DICOM decodes through the core to the same model input as the original PNG
    it = items[0]
    x = load_model_input(it.path, 64)
    assert x.shape == (64, 64) and 0.0 <= x.min() and x.max() <= 1.0
    (root / "stage_2_train_images" / f"{items[-1].patient_id}.dcm").unlink()
    with pytest.raises(PneumoViewError, match="not found"):
        sources.read_rsna(root)


@needs_data
@needs_nih
def test_prepare_mixed_sources(tmp_path):
    root, _ = _rsna_fixture(tmp_path, 3, 3)
    folder = _small_folder(tmp_path, 5)
    items = sources.collect([str(folder)], None, [str(root)])
    info = prepare(items, tmp_path / "cache", size=32, fractions=(0.6, 0.2, 0.2), seed=0)
    assert info["image_size"] == 32 and info["input_contract"] == contract.INPUT_CONTRACT
    assert set(info["sources"]) == {"kermany", "rsna"}
    n = sum(d["n"] for per in info["counts"].values() for d in per.values())
    assert n == len(items) == 16
    # the cache holds the contract output (uint8-rounded), and mean/std match numpy on train
    with open(tmp_path / "cache" / "train.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    arr = np.load(tmp_path / "cache" / "images_train.npy")
    for r in rows[:3]:
        ref = load_model_input(r["path"], 32)
        assert np.abs(arr[int(r["row"])] / 255.0 - ref).max() <= 0.5 / 255 + 1e-6
    vals = (np.stack([arr[int(r["row"])] for r in rows]).astype(np.float32) / 255.0).astype(
        np.float64)  # the same float32 values the running sums saw
    assert info["mean"] == pytest.approx(vals.mean(), abs=1e-9)
    assert info["std"] == pytest.approx(vals.std(), abs=1e-9)
    saved = json.loads((tmp_path / "cache" / "prepared.json").read_text())
    assert saved["content_sha256"] == info["content_sha256"]


def test_collect_needs_a_source():
    with pytest.raises(PneumoViewError, match="no data source"):
        sources.collect([], [], [])


def test_reproduce_plan(tmp_path):
    """One command, stage by stage: the 224 px pv-input-1 cache (v1.0's contract, also the
    comparison's), stage 1 from scratch and its export, stage 2 from that export, both with the
    orientation task, the export as version 1.1 with the earlier model on the same test
    images, and the gate fitted on the exported model in place."""
    import argparse

    from training import recipe, reproduce

    p = argparse.ArgumentParser()
    reproduce.add_arguments(p)
    args = p.parse_args(["--data-root", str(tmp_path / "d"), "--work", str(tmp_path / "w"),
                         "--threads", "2"])
    plan = reproduce.Plan(args)
    assert plan.out == tmp_path / "w" / "model"  # never the bundled resources/model by default
    prep = plan.prepare(recipe.SIZE)
    assert prep[prep.index("--contract") + 1] == "pv-input-1"
    assert prep[prep.index("--out") + 1] == str(plan.data)
    s1, s2 = plan.stage1_train(), plan.stage2_train()
    for argv in (s1, s2):
        assert argv[argv.index("--data") + 1] == str(plan.data)
        assert argv[argv.index("--aux-rotation") + 1] == "0.5"
        assert "--precision" in argv and "--amp" not in argv
    assert "--init" not in s1
    assert s2[s2.index("--init") + 1] == str(plan.stage1_model / "model.safetensors")
    e1 = plan.stage1_export()
    assert e1[e1.index("--out") + 1] == str(plan.stage1_model) and "--skip-test" in e1
    exp = plan.export()
    assert exp[exp.index("--run") + 1] == str(plan.stage2_run)
    assert exp[exp.index("--version") + 1] == recipe.VERSION == "1.1"
    assert exp[exp.index("--compare") + 1] == str(plan.compare_copy)
    assert exp[exp.index("--compare-data") + 1] == str(plan.cache(224))  # v1.0's contract
    gate = plan.gate()
    assert gate[gate.index("--model") + 1] == gate[gate.index("--attach") + 1] == str(plan.out)
    assert reproduce.STAGES == ("prepare", "stage1", "stage2", "export", "gate", "oppoints",
                                "gate-figures", "int8")


def test_reproduce_recipe_commands_parse_as_train_and_export(tmp_path):
    """Every command line the plan builds is one the train and export commands accept, with
    the recipe's schedule (stage 1: 12 epochs from scratch; stage 2: 6 x 2,000 samples, best
    source-mean epoch)."""
    import argparse

    from training import export as export_cmd
    from training import reproduce
    from training import train as train_cmd

    p = argparse.ArgumentParser()
    reproduce.add_arguments(p)
    plan = reproduce.Plan(p.parse_args(["--work", str(tmp_path / "w")]))
    parsed = {}
    for name, argv, module in (("s1", plan.stage1_train(), train_cmd),
                               ("s2", plan.stage2_train(), train_cmd),
                               ("e1", plan.stage1_export(), export_cmd),
                               ("e", plan.export(), export_cmd)):
        q = argparse.ArgumentParser(exit_on_error=False)
        module.add_arguments(q)
        parsed[name] = q.parse_args(argv[1:])
    assert parsed["s1"].epochs == 12 and parsed["s2"].epochs == 6
    assert parsed["s2"].samples_per_epoch == 2000
    assert parsed["s2"].select_metric == "source-mean-auroc"
    assert parsed["e"].version == "1.1" and parsed["e"].checkpoint == "best"


def test_reproduce_resumes_an_interrupted_training_stage(tmp_path, monkeypatch):
    """A stage whose log ends before its last epoch resumes from its checkpoint; a complete
    one is not rerun; stage 1's export runs once."""
    import argparse

    from training import recipe, reproduce

    p = argparse.ArgumentParser()
    reproduce.add_arguments(p)
    plan = reproduce.Plan(p.parse_args(["--work", str(tmp_path / "w")]))
    calls: list[list[str]] = []
    monkeypatch.setattr(reproduce, "call", calls.append)
    plan.stage1_run.mkdir(parents=True)
    (plan.stage1_run / "checkpoint.pth").write_bytes(b"x")
    (plan.stage1_run / "log.csv").write_text("epoch,lr\n0,1\n1,1\n")
    reproduce.stage_stage1(plan)
    assert calls == [[*plan.stage1_train(), "--resume", "auto"], plan.stage1_export()]
    last = int(recipe.STAGE1_ARGS[recipe.STAGE1_ARGS.index("--epochs") + 1]) - 1
    (plan.stage1_run / "log.csv").write_text(f"epoch,lr\n{last},1\n")
    plan.stage1_model.mkdir(parents=True)
    (plan.stage1_model / "metadata.json").write_text("{}")
    calls.clear()
    reproduce.stage_stage1(plan)
    assert calls == []
    reproduce.stage_stage2(plan)  # nothing yet: a fresh start, no --resume
    assert calls == [plan.stage2_train()]


def test_reproduce_oppoints_stage_runs_once_by_the_app_rule(tmp_path, monkeypatch):
    """After the gate, the operating points are chosen again by age (``oppoints``, whose
    command line parses); a model folder that records that run is not redone."""
    import argparse

    from training import pointscmd, reproduce

    p = argparse.ArgumentParser()
    reproduce.add_arguments(p)
    plan = reproduce.Plan(p.parse_args(["--work", str(tmp_path / "w"), "--threads", "2"]))
    plan.out.mkdir(parents=True)
    meta = {"command": {"export": "python -m training export"}}
    (plan.out / "metadata.json").write_text(json.dumps(meta))
    calls: list[list[str]] = []
    monkeypatch.setattr(reproduce, "call", calls.append)
    reproduce.stage_oppoints(plan)
    assert calls == [plan.oppoints()]
    q = argparse.ArgumentParser(exit_on_error=False)
    pointscmd.add_arguments(q)
    args = q.parse_args(plan.oppoints()[1:])
    assert args.model == str(plan.out) and args.threads == 2
    meta["command"]["oppoints"] = "python -m training oppoints --model m"
    (plan.out / "metadata.json").write_text(json.dumps(meta))
    reproduce.stage_oppoints(plan)
    assert calls == [plan.oppoints()]
    assert reproduce.STAGES.index("gate") < reproduce.STAGES.index("oppoints") \
        < reproduce.STAGES.index("gate-figures")


def test_reproduce_does_not_export_again_over_a_completed_model(tmp_path, monkeypatch):
    """A resumed run skips the export when the folder holds this recipe's export of this
    stage 2 (a second export would drop the attached gate and the points); another folder's
    metadata (another run, another version) is exported over."""
    import argparse

    from training import recipe, reproduce

    p = argparse.ArgumentParser()
    reproduce.add_arguments(p)
    plan = reproduce.Plan(p.parse_args(["--work", str(tmp_path / "w"), "--compare", ""]))
    calls: list[list[str]] = []
    monkeypatch.setattr(reproduce, "call", calls.append)
    reproduce.stage_export(plan)
    assert calls == [plan.export()]
    plan.out.mkdir(parents=True)
    meta = {"version": recipe.VERSION, "gate": {"format": "pv-gate-2"},
            "command": {"export": "python -m training " + " ".join(plan.export())}}
    (plan.out / "metadata.json").write_text(json.dumps(meta))
    reproduce.stage_export(plan)
    assert len(calls) == 1
    meta["command"]["export"] = f"python -m training export --run {plan.stage2_run}-old --out x"
    (plan.out / "metadata.json").write_text(json.dumps(meta))
    reproduce.stage_export(plan)
    assert len(calls) == 2


def test_search_trains_its_own_base_on_non_adult_images(tmp_path, monkeypatch):
    """``search`` no longer needs ``reproduce``'s base: it prepares the base's and the
    configuration's caches, writes the base index without adults, trains and exports it."""
    from training import recipe, reproduce, search

    plan = search.SearchPlan(str(tmp_path / "d"), str(tmp_path / "w"), "320", threads=2)
    calls: list[list[str]] = []
    monkeypatch.setattr(reproduce, "call", calls.append)
    written = []
    monkeypatch.setattr(search, "write_base_index", written.append)
    search.ensure_base(plan)
    sizes = [int(c[c.index("--image-size") + 1]) for c in calls if c[0] == "prepare"]
    assert sizes == sorted({recipe.BASE_SIZE, 320})
    assert calls[-2] == plan.base_train() and calls[-1] == plan.base_export()
    assert written == [plan]
    base = plan.base_train()
    assert base[base.index("--train-index") + 1].endswith("base_train.csv")


def test_reproduce_gate_stages_call_the_gate_commands_as_they_parse(tmp_path):
    """The gate stages' command lines are valid for ``training gate`` / ``gate-eval``: the
    gate is fitted on the final model's own split (the training cache's splits.csv) and
    attached in place; the figures go into the same folder, from the same feature cache."""
    import argparse

    from training import reproduce
    from training.gate import command as gate_cmd
    from training.gate import evaluate as gate_eval

    p = argparse.ArgumentParser()
    reproduce.add_arguments(p)
    plan = reproduce.Plan(p.parse_args(["--data-root", str(tmp_path / "d"), "--work",
                                        str(tmp_path / "w"), "--threads", "2"]))
    parsed = []
    for argv, module in ((plan.gate(), gate_cmd), (plan.gate_figures(), gate_eval)):
        q = argparse.ArgumentParser(exit_on_error=False)
        module.add_arguments(q)
        parsed.append(q.parse_args(argv[1:]))
    fit, figures = parsed
    assert plan.gate()[0] == "gate" and plan.gate_figures()[0] == "gate-eval"
    assert fit.model == fit.attach == figures.model == str(plan.out)
    assert fit.prepared == figures.prepared == str(plan.data)
    assert fit.work == figures.work and fit.threads == figures.threads == 2
    assert figures.record and fit.data_root == figures.data_root == str(tmp_path / "d")


def test_reproduce_int8_stage_quantizes_the_final_weights_once(tmp_path, monkeypatch):
    """The last stage gives the final model its int8 graph with the quantize command as it
    parses; it is skipped when the graph recorded is of these weights, and redone when the
    weights changed after it (a gate attached later)."""
    import argparse

    from tests.support.model_fixture import make_random_model_dir
    from training import quantize as quantize_cmd
    from training import reproduce

    p = argparse.ArgumentParser()
    reproduce.add_arguments(p)
    plan = reproduce.Plan(p.parse_args(["--work", str(tmp_path / "w"), "--threads", "2"]))
    make_random_model_dir(plan.out, input_size=64)
    calls = []
    monkeypatch.setattr(reproduce, "call", calls.append)
    monkeypatch.setattr(reproduce, "nncf_available", lambda: True)
    meta_path = plan.out / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["int8"] = {"xml_sha256": "c" * 64, "bin_sha256": "d" * 64,
                    "weights_sha256": meta["weights_sha256"]}
    meta_path.write_text(json.dumps(meta))
    reproduce.stage_int8(plan)
    assert calls == []
    meta["int8"]["weights_sha256"] = "b" * 64
    meta_path.write_text(json.dumps(meta))
    reproduce.stage_int8(plan)
    assert calls == [plan.quantize()]
    monkeypatch.setattr(reproduce, "nncf_available", lambda: False)
    reproduce.stage_int8(plan)  # without nncf: skipped (a warning), the folder stays usable
    assert calls == [plan.quantize()]
    q = argparse.ArgumentParser(exit_on_error=False)
    quantize_cmd.add_arguments(q)
    args = q.parse_args(plan.quantize()[1:])
    assert args.model == str(plan.out) and args.threads == 2


def test_reproduce_compares_with_the_earlier_model_as_it_was(tmp_path):
    """With --out equal to --compare (the bundled folder), a resumed export still compares
    with the model that was there when the run first exported, never with itself."""
    import argparse

    from training import reproduce

    bundled = tmp_path / "resources" / "model"
    bundled.mkdir(parents=True)
    (bundled / "metadata.json").write_text(json.dumps({"input_size": 224, "version": "1.0",
                                                       "input_contract": "pv-input-1"}))
    (tmp_path / "w" / "data224").mkdir(parents=True)
    (tmp_path / "w" / "data224" / "prepared.json").write_text("{}")
    p = argparse.ArgumentParser()
    reproduce.add_arguments(p)
    plan = reproduce.Plan(p.parse_args(["--work", str(tmp_path / "w"), "--out", str(bundled),
                                        "--compare", str(bundled)]))
    reproduce.snapshot_compare(plan)
    (bundled / "metadata.json").write_text(json.dumps({"input_size": 320, "version": "1.1",
                                                       "input_contract": "pv-input-2"}))
    reproduce.snapshot_compare(plan)  # the resumed run: prepared caches only, no new copy
    kept = json.loads((plan.compare_copy / "metadata.json").read_text())
    assert kept["version"] == "1.0"
    exp = plan.export()
    assert exp[exp.index("--compare-data") + 1] == str(plan.cache(224))
    with pytest.raises(PneumoViewError, match="not a model folder"):
        reproduce.snapshot_compare(reproduce.Plan(p.parse_args(
            ["--work", str(tmp_path / "w2"), "--compare", str(tmp_path / "none")])))


def test_reproduce_stage_log_sums_interrupted_runs(tmp_path):
    from training import reproduce

    log = reproduce.StageLog(tmp_path / "stages.json")
    log.run("base", lambda: None)
    with pytest.raises(RuntimeError):
        log.run("base", lambda: (_ for _ in ()).throw(RuntimeError("interrupted")))
    rows = log.read()
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert set(reproduce.totals(rows)) == {"base"}
    # an entry timed from another run's log (no CPU figure) makes that stage's CPU unknown
    rows.append({"stage": "stage1", "wall_s": 60.0, "cpu_s": None})
    rows.append({"stage": "stage1", "wall_s": 0.0, "cpu_s": 0.0})
    t = reproduce.totals(rows)
    assert t["stage1"] == {"wall_s": 60.0, "cpu_s": None} and t["base"]["cpu_s"] is not None


def test_card_stage_times_say_when_no_cpu_was_recorded():
    from training.card import _timings

    def line(st):
        return _timings({"training": {"stage_times": st}})[0]

    untimed = {"stage1": {"wall_s": 3600.0, "cpu_s": None}}
    assert "CPU not recorded" in line(untimed) and "0.00 h CPU" not in line(untimed)
    mixed = {**untimed, "export": {"wall_s": 60.0, "cpu_s": 7200.0}}
    assert "2.00 h CPU (not recorded for stage1)" in line(mixed)
    assert line({"export": {"wall_s": 60.0, "cpu_s": 7200.0}}).endswith("2.00 h CPU.")
