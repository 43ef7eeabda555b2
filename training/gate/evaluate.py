"""``python -m training gate-eval --model DIR``: the input gate's figures, as markdown tables.

1. **Real films**: every chest film in ``../shared/data`` as it is (Kermany train/val, NIH PA and
   AP), and degraded copies of every validation and test film: refused / scored.
2. **Test set through the app's path**: held-out test films upright, rotated 90/180/270 and
   inverted, photographs, non-chest medical frames, blank/noise/text pages and lateral DRRs, each
   written as a DICOM file whose tags claim a frontal chest film (DX, CHEST, PA), plus the four
   shared chest DICOMs as they are; decoded, tag-gated, scored and content-gated exactly as the
   app does: refused / scored / flagged per group.
3. **Leave one source out**: the gate refitted without one negative group (from the cached
   features), measured on that group: generalisation, not memory.
4. The classifier is untouched: the network tensors of ``--model`` are compared with
   ``--baseline`` and the test split's AUROC is recomputed from the logits.

Bounded and resumable: activations stream to the feature store's memory-mapped chunks, films
are judged a batch at a time, the DICOM test set is written once under ``--work`` (its files'
activations cached like the rest, keyed by the files' digests), and each finished table is kept
under ``WORK/eval/<model id>/``, so a second run after an interruption starts where the first
stopped, and the figures of another gate on the same backbone need no new forward pass. The
peak memory (RSS) is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
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
    p.add_argument("--n-test-films", type=int, default=250,
                   help="test films in the DICOM test set (each also rotated three ways and "
                        "inverted)")
    p.add_argument("--out", default=None, help="also write the markdown here")
    p.add_argument("--no-loso", action="store_true")
    p.add_argument("--fresh", action="store_true",
                   help="recompute the tables (the feature cache is still used)")
    p.add_argument("--record", action="store_true",
                   help="also put the figures into --model's metadata record and card")


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100.0 * k / n:.1f} %)" if n else "0/0"


def _why(kinds: Sequence[str], n: int | None = None) -> str:
    refused = [k for k in kinds if k != "passed"]
    return ", ".join(f"{k} {c}" for k, c in Counter(refused).most_common(n)) or "-"


def judge_samples(gate, store, samples, label: str = "",  # noqa: ANN001
                  batch: int = 512) -> list[str]:
    """The verdict kind of each sample (activations computed where missing), a batch of
    features at a time."""
    from training.gate.judge import verdicts

    kinds: list[str] = []
    for i in range(0, len(samples), batch):
        part = samples[i:i + batch]
        feats = store.compute(part, label)
        kinds += [v.kind.value for v in verdicts(gate, feats)]
    return kinds


# -- 1. real films ---------------------------------------------------------------------------
def film_table(gate, store, recipe) -> tuple[str, dict]:  # noqa: ANN001
    films = recipe.films
    extra = recipe.eval_sets()
    groups: dict[str, list[int]] = {}
    for i, f in enumerate(films):
        view = f" {f.view}" if f.view else ""
        groups.setdefault(f"{f.source}{view} ({f.split})", []).append(i)
    kinds = judge_samples(gate, store, extra["all_clean"], "all films")
    rows = []
    for name in sorted(groups):
        ks = [kinds[i] for i in groups[name]]
        n_ref = sum(k != "passed" for k in ks)
        rows.append(f"| {name} | {len(ks)} | {_pct(n_ref, len(ks))} | {_why(ks)} |")
    n_ref = sum(k != "passed" for k in kinds)
    totals = {"all_films": {"n": len(kinds), "refused": n_ref}}
    rows.append(f"| **all real films** | {len(kinds)} | {_pct(n_ref, len(kinds))} | |")
    for split, samples in (("val", recipe.sets["val_degraded"]),
                           ("test", extra["test_degraded"])):
        ks = judge_samples(gate, store, samples, f"{split} degraded")
        n_ref = sum(k != "passed" for k in ks)
        totals[f"{split}_degraded"] = {"n": len(ks), "refused": n_ref}
        rows.append(f"| {split} films, degraded | {len(ks)} | {_pct(n_ref, len(ks))} "
                    f"| {_why(ks)} |")
    head = ["| films (as they are unless degraded) | n | refused | refused as |",
            "|---|---|---|---|"]
    return "\n".join(head + rows), totals


# -- 2. the DICOM test set -------------------------------------------------------------------
def _u8(grey: np.ndarray) -> np.ndarray:
    g = np.asarray(grey, np.float64)
    lo, hi = float(g.min()), float(g.max())
    return np.zeros_like(g) if hi <= lo else (g - lo) / (hi - lo) * 255.0


GROUP_OF_SOURCE = {"photo": "photographs", "faces": "photographs",
                   "ct": "non-chest medical", "mr": "non-chest medical",
                   "us": "non-chest medical", "nm": "non-chest medical",
                   "cr_extremity": "non-chest medical",
                   "fundus_microscopy": "non-chest medical",
                   "drr_lateral": "lateral DRRs (proxy)",
                   "drr_frontal": "frontal DRRs (control)",
                   "document_scans": "text pages"}
FILM_GROUPS = ("upright films", "rotated 90° cw", "rotated 180°", "rotated 90° ccw")


def test_set_plan(films, negatives, n_films: int,  # noqa: ANN001
                  seed: int) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """(group, pixels) of every file of the DICOM test set, in a fixed order."""
    from training.gate.samples import film_sample, orient, page_samples, pick

    plan: list[tuple[str, Callable[[], np.ndarray]]] = []
    for f in pick(films, "test", n_films, seed, "dicom-test-set"):
        make = film_sample(f, seed).make
        for k, name in enumerate(FILM_GROUPS):
            plan.append((name, lambda m=make, k=k: orient(m(), k)))
        plan.append(("inverted films", lambda m=make: orient(m(), 0, invert=True)))
    for b in negatives:
        if b.group in GROUP_OF_SOURCE:
            plan.append((GROUP_OF_SOURCE[b.group], b.load))
    for s in page_samples(10, seed + 1):
        name = "text pages" if s.content == "document" else "blank/gradient/noise/drawing pages"
        plan.append((name, s.make))
    return plan


def write_test_set(folder: Path, plan) -> dict[str, list[Path]]:  # noqa: ANN001
    """DICOM files (tags: DX, CHEST, PA) per group, written once (existing files are kept)."""
    from training.dicomwrap import write_dicom

    groups: dict[str, list[Path]] = {}
    for name, make in plan:
        path = folder / name.replace(" ", "_").replace("/", "-") / \
            f"{len(groups.get(name, [])):05d}.dcm"
        if not path.is_file():
            tmp = path.with_suffix(".tmp")
            write_dicom(tmp, _u8(make()), modality="DX")
            tmp.rename(path)
        groups.setdefault(name, []).append(path)
    return groups


def shared_chest_dicoms(data_root: Path) -> list[Path]:
    return sorted((data_root / "dicom").glob("*.dcm"))


def dicom_sample(path: Path):  # noqa: ANN201 - a training.gate.samples.Sample
    """A test-set file as a feature-store sample: decoded by the app's decoder, in display
    polarity (``model_input(values, invert)`` is ``model_input(-values, False)``), keyed by
    its bytes' digest, so the activations are cached and any gate is judged on them."""
    import hashlib

    from training.gate.samples import Sample
    from training.gate.sources import dicom_grey

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
    return Sample(f"dicom|{digest}", "dicom", "test", "", -1, -1, False,
                  lambda p=str(path): dicom_grey(p))


def tag_refusal(path: Path) -> bool:
    """Whether the tag gate refuses the file (it runs before the content gate)."""
    from pneumoview.core import dicomio
    from pneumoview.core.gate import not_scorable_reason

    img = dicomio.decode(path)
    return not_scorable_reason(img.header, img.n_frames, values=img.values) is not None


def test_set_table(loaded, gate, store,  # noqa: ANN001
                   groups: dict[str, list[Path]]) -> tuple[str, dict]:
    """Per group: the tag gate, then the content gate on the file's own decoded pixels, then
    the calibrated probability against the model's threshold (flagged)."""
    from pneumoview.core.model import calibrated_probability
    from training.gate.judge import verdicts

    rows = ["| group (DICOM, tags claim DX CHEST PA) | n | refused | scored | flagged | "
            "refused as |", "|---|---|---|---|---|---|"]
    totals = {}
    for name, paths in groups.items():
        kinds: list[str] = []
        flagged = 0
        for i in range(0, len(paths), 256):
            part = paths[i:i + 256]
            feats = store.compute([dicom_sample(p) for p in part], name)
            probs = calibrated_probability(feats.logit, loaded.info.temperature)
            for p, v, prob in zip(part, verdicts(gate, feats), probs, strict=True):
                kind = "tag_gate" if tag_refusal(p) else v.kind.value
                kinds.append(kind)
                flagged += kind == "passed" and bool(prob >= loaded.info.threshold)
        n = len(kinds)
        n_ref = sum(k != "passed" for k in kinds)
        totals[name] = {"n": n, "refused": n_ref, "flagged": flagged}
        rows.append(f"| {name} | {n} | {_pct(n_ref, n)} | {_pct(n - n_ref, n)} | "
                    f"{_pct(flagged, n)} | {_why(kinds)} |")
        log.info("test set %s: %d files judged", name, n)
    return "\n".join(rows), totals


# -- 3. leave one source out -----------------------------------------------------------------
def loso_table(recipe) -> tuple[str, dict]:  # noqa: ANN001
    from training.gate.judge import gate_of, verdicts
    from training.gate.sources import EVAL_ONLY_GROUPS

    neg = recipe.sets["negatives"]
    feats = recipe.features["negatives"]
    groups = sorted({s.group for s in neg})
    rows = ["| held-out source | n (with augmented views) | refused | refused as | "
            "refused by the gate trained on all |", "|---|---|---|---|---|"]
    fitted = recipe.fit()
    full = gate_of(fitted)
    totals = {}
    for g in groups:
        idx = [i for i, s in enumerate(neg) if s.group == g]
        sub = feats.rows(idx)
        gate = full if g in EVAL_ONLY_GROUPS else gate_of(recipe.fit([g], base=fitted))
        ks = [v.kind.value for v in verdicts(gate, sub)]
        ks_full = [v.kind.value for v in verdicts(full, sub)]
        n_ref = sum(k != "passed" for k in ks)
        totals[g] = {"n": len(idx), "refused": n_ref}
        label = f"{g} (never trained on)" if g in EVAL_ONLY_GROUPS else g
        rows.append(f"| {label} | {len(idx)} | {_pct(n_ref, len(idx))} | {_why(ks, 3)} | "
                    f"{_pct(sum(k != 'passed' for k in ks_full), len(idx))} |")
        log.info("leave one out: %s done", g)
    return "\n".join(rows), totals


# -- 4. the classifier is untouched ----------------------------------------------------------
def classifier_check(loaded, baseline_dir, store, recipe) -> str:  # noqa: ANN001
    from safetensors.numpy import load_file

    from pneumoview.core.inputgate import split_gate_tensors
    from pneumoview.core.model import read_model_info
    from training import metrics as M
    from training.gate.features import network_digest

    lines = []
    if baseline_dir is not None:
        base = read_model_info(baseline_dir)
        net_b, _ = split_gate_tensors(load_file(str(base.weights_path)))
        net_m, _ = split_gate_tensors(load_file(str(loaded.info.weights_path)))
        same = network_digest(net_b, base) == network_digest(net_m, loaded.info) and \
            all(np.array_equal(net_b[k], net_m[k]) for k in net_b) and set(net_b) == set(net_m)
        calib = all(base.raw.get(k) == loaded.info.raw.get(k)
                    for k in ("temperature", "threshold", "mean", "std"))
        lines.append(f"- Network tensors bit-identical to the baseline's: **{same}**; "
                     f"calibration and threshold identical: **{calib}**.")
    idx = [i for i, f in enumerate(recipe.films)
           if f.split == "test" and f.source != "kermany_val"]
    clean = recipe.eval_sets()["all_clean"]
    store.fill([clean[i] for i in idx], "test films")
    logit = np.array([store.small[clean[i].key][0] for i in idx])
    y = np.array([recipe.films[i].label for i in idx])
    src = np.array([recipe.films[i].source for i in idx])
    parts = [("all", np.ones(len(y), bool))] + [(s, src == s) for s in sorted(set(src))]
    aucs = ", ".join(f"{n} {M.auroc(y[m], logit[m]):.4f} (n={int(m.sum())})"
                     for n, m in parts)
    lines.append(f"- Test-split AUROC from the model's logits (read from files): {aucs}; "
                 f"metadata: {loaded.info.metrics.get('test', {}).get('all', {}).get('auroc')}.")
    return "\n".join(lines)


# -- the command -----------------------------------------------------------------------------
class Stages:
    """Finished tables kept under ``WORK/eval/<model id>/`` (a rerun skips them)."""

    def __init__(self, folder: Path, fresh: bool) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        if fresh:
            for f in folder.glob("*.json"):
                f.unlink()

    def run(self, name: str, make: Callable[[], tuple[str, dict]]) -> tuple[str, dict]:
        path = self.folder / f"{name}.json"
        if path.is_file():
            blob = json.loads(path.read_text(encoding="utf-8"))
            return blob["markdown"], blob["totals"]
        table, totals = make()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"markdown": table, "totals": totals}, indent=1),
                       encoding="utf-8")
        tmp.rename(path)
        return table, totals


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(args: argparse.Namespace) -> int:
    from pneumoview.core.inputgate import InputGate
    from training.gate.command import collect, load_backbone
    from training.gate.features import FeatureStore, layout_features
    from training.gate.fit import Budget, GateRecipe

    loaded = load_backbone(args.model, "cpu", args.threads)
    gate = InputGate.from_model(loaded.info.raw, loaded.gate_tensors)
    if gate is None:
        print("error: the model has no input gate (python -m training gate --attach ...)")
        return 2
    films, negatives = collect(args, loaded)
    # the features this gate's heads read (a pv-gate-1 gate reads another layout of A)
    store = FeatureStore(loaded, args.work, derive=layout_features(gate.layout))
    recipe = GateRecipe(films, negatives, replace(Budget(), layout=gate.layout), args.seed)
    mid = loaded.info.model_id.split("-", 1)[-1] or loaded.info.weights_sha256
    stages = Stages(Path(args.work) / "eval" / mid[:16], args.fresh)
    out = [f"### Input gate figures: {loaded.info.label}", ""]
    table, _ = stages.run("films", lambda: film_table(gate, store, recipe))
    out += ["#### Real chest films", "", table, ""]

    def test_set() -> tuple[str, dict]:
        folder = Path(args.work) / "testset" / f"seed{args.seed}-n{args.n_test_films}"
        groups = write_test_set(folder, test_set_plan(films, negatives, args.n_test_films,
                                                      args.seed))
        groups["shared chest DICOMs (as they are)"] = shared_chest_dicoms(Path(args.data_root))
        return test_set_table(loaded, gate, store, groups)

    table, _ = stages.run("test_set", test_set)
    out += ["#### Test set through the app's path", "", table, ""]
    if not args.no_loso:
        def loso() -> tuple[str, dict]:
            recipe.extract(store)
            return loso_table(recipe)

        table, _ = stages.run("loso", loso)
        out += ["#### Leave one negative source out", "", table, ""]
    out += ["#### Classifier unchanged", "",
            classifier_check(loaded, args.baseline, store, recipe), ""]
    text = "\n".join(out)
    print(text)
    print(f"(gate-eval peak memory: {peak_rss_mib():.0f} MiB RSS)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    if args.record:
        from training.gate.attach import record_figures

        record_figures(loaded.info.directory, text.split("\n", 2)[2])
    return 0
