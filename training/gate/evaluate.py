"""``python -m training gate-eval --model DIR``: the input gate's figures, as markdown tables.

1. **Real films**: every chest film in ``../shared/data`` as it is (Kermany train/val, NIH PA and
   AP), and degraded copies of the validation and test films: refused / scored.
2. **Test set through the app's path**: held-out test films upright and rotated 90/180/270,
   photographs, non-chest medical frames, blank/noise/text pages and lateral DRRs, each written
   as a DICOM file whose tags claim a frontal chest CR, plus the four shared chest DICOMs as they
   are; decoded, tag-gated, scored and content-gated exactly as the app does: refused / scored /
   flagged per group.
3. **Leave one source out**: the gate refitted without one negative group (from the cached
   features), measured on that group: generalisation, not memory.
4. The classifier is untouched: the network tensors of ``--model`` are compared with
   ``--baseline`` and the test split's AUROC is recomputed from the logits.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger("training.gate")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder with a gate (default: bundled)")
    p.add_argument("--baseline", default=None, help="the model folder before the gate")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--prepared", default=None)
    p.add_argument("--work", default="runs/gate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--n-test-films", type=int, default=200,
                   help="test films in the DICOM test set (each also rotated three ways)")
    p.add_argument("--out", default=None, help="also write the markdown here")
    p.add_argument("--no-loso", action="store_true")
    p.add_argument("--record", action="store_true",
                   help="also put the figures into --model's metadata record and card")


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100.0 * k / n:.1f} %)" if n else "0/0"


# -- 1. real films ---------------------------------------------------------------------------
def film_table(gate, store, films, seed: int) -> tuple[str, dict]:  # noqa: ANN001
    from training.gate.judge import verdicts
    from training.gate.samples import film_sample

    rows, totals = [], {}
    groups: dict[str, list] = {}
    for f in films:
        view = f" {f.view}" if f.view else ""
        groups.setdefault(f"{f.source}{view} ({f.split})", []).append(f)
    clean_all = [film_sample(f, seed) for f in films]
    kinds = [v.kind.value for v in verdicts(gate, store.compute(clean_all, "all films"))]
    by_path = dict(zip((f.path for f in films), kinds, strict=True))
    for name in sorted(groups):
        ks = [by_path[f.path] for f in groups[name]]
        refused = [k for k in ks if k != "passed"]
        why = ", ".join(f"{k} {c}" for k, c in Counter(refused).most_common())
        rows.append(f"| {name} | {len(ks)} | {_pct(len(refused), len(ks))} | {why or '-'} |")
    n_ref = sum(k != "passed" for k in kinds)
    totals["all_films"] = (n_ref, len(kinds))
    rows.append(f"| **all real films** | {len(kinds)} | {_pct(n_ref, len(kinds))} | |")
    for split in ("val", "test"):
        deg = [film_sample(f, seed, degraded=True, mirror=bool(i % 2))
               for i, f in enumerate(f for f in films if f.split == split)]
        vs = verdicts(gate, store.compute(deg, f"{split} degraded"))
        ks = [v.kind.value for v in vs]
        refused = [k for k in ks if k != "passed"]
        why = ", ".join(f"{k} {c}" for k, c in Counter(refused).most_common())
        totals[f"{split}_degraded"] = (len(refused), len(ks))
        rows.append(f"| {split} films, degraded | {len(ks)} | {_pct(len(refused), len(ks))} "
                    f"| {why or '-'} |")
    head = ["| films (as they are unless degraded) | n | refused | refused as |",
            "|---|---|---|---|"]
    return "\n".join(head + rows), totals


# -- 2. the DICOM test set -------------------------------------------------------------------
def _u8(grey: np.ndarray) -> np.ndarray:
    g = np.asarray(grey, np.float64)
    lo, hi = float(g.min()), float(g.max())
    return np.zeros_like(g) if hi <= lo else (g - lo) / (hi - lo) * 255.0


def write_test_set(folder: Path, films, negatives, n_films: int,  # noqa: ANN001
                   seed: int) -> dict[str, list[Path]]:
    """DICOM files (tags: CR, CHEST, PA) per group; the shared chest DICOMs as they are."""
    from training.dicomwrap import write_dicom
    from training.gate.samples import film_sample, orient, page_samples, pick

    groups: dict[str, list[Path]] = {}

    def add(group: str, grey: np.ndarray) -> None:
        path = folder / group.replace(" ", "_") / f"{len(groups.get(group, [])):05d}.dcm"
        groups.setdefault(group, []).append(write_dicom(path, _u8(grey)))

    test = pick(films, "test", n_films, seed, "dicom-test-set")
    for f in test:
        grey = film_sample(f, seed).make()
        for k, name in enumerate(("upright films", "rotated 90° cw", "rotated 180°",
                                  "rotated 90° ccw")):
            add(name, orient(grey, k))
    group_names = {"photo": "photographs", "faces": "photographs",
                   "ct": "non-chest medical", "mr": "non-chest medical",
                   "us": "non-chest medical", "nm": "non-chest medical",
                   "cr_extremity": "non-chest medical", "fundus_microscopy": "non-chest medical",
                   "drr_lateral": "lateral DRRs (proxy)", "drr_frontal": "frontal DRRs (control)",
                   "document_scans": "text pages"}
    for b in negatives:
        if b.group in group_names:
            add(group_names[b.group], b.load())
    for s in page_samples(10, seed + 1):
        name = "text pages" if s.content == "document" else "blank/gradient/noise/drawing pages"
        add(name, s.make())
    return groups


def shared_chest_dicoms(data_root: Path) -> list[Path]:
    return sorted((data_root / "dicom").glob("*.dcm"))


def app_verdict(loaded, gate, path: Path) -> tuple[str, bool | None]:  # noqa: ANN001
    """(refusal kind or 'passed', flagged or None) for one file, as the app would judge it."""
    from pneumoview.core import contract, dicomio
    from pneumoview.core.gate import not_scorable_reason
    from pneumoview.core.model import calibrated_probability, predict_activations, prepare_batch

    img = dicomio.decode(path)
    if not_scorable_reason(img.header, img.n_frames, values=img.values):
        return "tag_gate", None
    x = contract.model_input(img.values, img.invert, loaded.info.input_size,
                             loaded.info.input_contract)
    logits, act = predict_activations(loaded, prepare_batch([x], loaded.info))
    v = gate.judge(img.shape, x, act[0])
    if v.refused:
        return v.kind.value, None
    p = float(calibrated_probability(logits, loaded.info.temperature)[0])
    return "passed", p >= loaded.info.threshold


def test_set_table(loaded, gate, groups: dict[str, list[Path]]) -> tuple[str, dict]:  # noqa: ANN001
    rows = ["| group (DICOM, tags claim CR CHEST PA) | n | refused | scored | flagged | "
            "refused as |", "|---|---|---|---|---|---|"]
    totals = {}
    for name, paths in groups.items():
        res = [app_verdict(loaded, gate, p) for p in paths]
        refused = [k for k, _ in res if k != "passed"]
        flagged = sum(bool(f) for _, f in res)
        n = len(res)
        why = ", ".join(f"{k} {c}" for k, c in Counter(refused).most_common())
        totals[name] = {"n": n, "refused": len(refused), "flagged": flagged}
        rows.append(f"| {name} | {n} | {_pct(len(refused), n)} | "
                    f"{_pct(n - len(refused), n)} | {_pct(flagged, n)} | {why or '-'} |")
    return "\n".join(rows), totals


# -- 3. leave one source out -----------------------------------------------------------------
def loso_table(recipe, store) -> str:  # noqa: ANN001
    from training.gate.judge import gate_of, verdicts
    from training.gate.sources import EVAL_ONLY_GROUPS

    neg = recipe.sets["negatives"]
    feats = recipe.features["negatives"]
    groups = sorted({s.group for s in neg})
    rows = ["| held-out source | n (with augmented views) | refused | refused as | "
            "refused by the gate trained on all |", "|---|---|---|---|---|"]
    fitted = recipe.fit()
    full = gate_of(fitted)
    for g in groups:
        idx = [i for i, s in enumerate(neg) if s.group == g]
        sub = _rows(feats, idx)
        gate = full if g in EVAL_ONLY_GROUPS else gate_of(recipe.fit([g], base=fitted))
        ks = [v.kind.value for v in verdicts(gate, sub)]
        ks_full = [v.kind.value for v in verdicts(full, sub)]
        refused = [k for k in ks if k != "passed"]
        why = ", ".join(f"{k} {c}" for k, c in Counter(refused).most_common(3))
        label = f"{g} (never trained on)" if g in EVAL_ONLY_GROUPS else g
        rows.append(f"| {label} | {len(idx)} | {_pct(len(refused), len(idx))} | {why or '-'} | "
                    f"{_pct(sum(k != 'passed' for k in ks_full), len(idx))} |")
    return "\n".join(rows)


def _rows(feats, idx: Sequence[int]):  # noqa: ANN001, ANN202
    from training.gate.features import Features

    i = np.asarray(idx, dtype=np.int64)
    return Features(feats.pooled[i], feats.logit[i], feats.shape[i], feats.stats[i])


# -- 4. the classifier is untouched ----------------------------------------------------------
def classifier_check(loaded, baseline_dir, store, films, seed: int) -> str:  # noqa: ANN001
    from safetensors.numpy import load_file

    from pneumoview.core.inputgate import split_gate_tensors
    from pneumoview.core.model import read_model_info
    from training import metrics as M
    from training.gate.features import network_digest
    from training.gate.samples import film_sample

    lines = []
    if baseline_dir is not None:
        base = read_model_info(baseline_dir)
        net_b, _ = split_gate_tensors(load_file(str(base.weights_path)))
        net_m, _ = split_gate_tensors(load_file(str(loaded.info.weights_path)))
        same = network_digest(net_b, base) == network_digest(net_m, loaded.info)
        calib = all(base.raw.get(k) == loaded.info.raw.get(k)
                    for k in ("temperature", "threshold", "mean", "std"))
        lines.append(f"- Network tensors identical to the baseline's: **{same}**; calibration "
                     f"and threshold identical: **{calib}**.")
    test = [f for f in films if f.split == "test" and f.source != "kermany_val"]
    feats = store.compute([film_sample(f, seed) for f in test], "test films")
    y = np.array([f.label for f in test])
    src = np.array([f.source for f in test])
    parts = [("all", np.ones(len(y), bool))] + [(s, src == s) for s in sorted(set(src))]
    aucs = ", ".join(f"{n} {M.auroc(y[m], feats.logit[m]):.4f} (n={int(m.sum())})"
                     for n, m in parts)
    lines.append(f"- Test-split AUROC from the model's logits (read from files): {aucs}; "
                 f"metadata: {loaded.info.metrics.get('test', {}).get('all', {}).get('auroc')}.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pneumoview.core.inputgate import InputGate
    from training.gate.command import collect, load_backbone
    from training.gate.features import FeatureStore
    from training.gate.fit import Budget, GateRecipe

    loaded = load_backbone(args.model, "cpu", args.threads)
    gate = InputGate.from_model(loaded.info.raw, loaded.gate_tensors)
    if gate is None:
        print("error: the model has no input gate (python -m training gate --attach ...)")
        return 2
    films, negatives = collect(args, loaded)
    store = FeatureStore(loaded, args.work)
    out = [f"### Input gate figures: {loaded.info.label}", ""]
    table, totals = film_table(gate, store, films, args.seed)
    out += ["#### Real chest films", "", table, ""]
    with tempfile.TemporaryDirectory() as tmp:
        groups = write_test_set(Path(tmp), films, negatives, args.n_test_films, args.seed)
        groups["shared chest DICOMs (as they are)"] = shared_chest_dicoms(Path(args.data_root))
        table, _t = test_set_table(loaded, gate, groups)
    out += ["#### Test set through the app's path", "", table, ""]
    if not args.no_loso:
        recipe = GateRecipe(films, negatives, Budget(), args.seed)
        recipe.extract(store)
        out += ["#### Leave one negative source out", "", loso_table(recipe, store), ""]
    out += ["#### Classifier unchanged", "",
            classifier_check(loaded, args.baseline, store, films, args.seed), ""]
    text = "\n".join(out)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    if args.record:
        from training.gate.attach import record_figures

        record_figures(loaded.info.directory, text.split("\n", 2)[2])
    return 0
