"""Patient-grouped k-fold cross-validation of a fine-tune over the adult images.

``python -m training cv --data CACHE --base BASE_MODEL --out DIR --config NAME``

The adult (cross-validated) images are those of the cache's train and val splits whose source
is an adult source (NIH: 417 images; the test split stays held out). They are dealt into k
folds by patient, stratified by label (:func:`training.splits.assign_folds`). Fold f trains
the fine-tune from the base model on everything in the cache's train split that is not adult
plus the adult images of the other folds, and scores fold f after its last epoch (a fixed
schedule: no choice is made on the fold's own images, so its scores are honest out-of-fold
predictions). A seeded Kermany validation subset is scored after each fold as a paediatric
guard. Every fold resumes from its checkpoint; a finished fold is not rerun.

Writes ``DIR/folds.csv`` (fold per adult image), index files, ``DIR/fold<k>/`` (the training
runs), ``DIR/oof.csv`` (path, source, patient_id, label, logit, fold) and ``DIR/cv.json`` (per
fold AUROC, mean and spread, pooled out-of-fold AUROC with a patient bootstrap interval).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shlex
import time
from pathlib import Path

import numpy as np

from pneumoview.core.errors import PneumoViewError
from training import metrics as M
from training import recipe as R
from training.data import SplitIndex, read_split, write_index
from training.splits import assign_folds

log = logging.getLogger("training.cv")

DONE = "done.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="prepared cache at the fine-tune's size")
    p.add_argument("--base", required=True, help="base model folder (trained without adults)")
    p.add_argument("--out", required=True, help="cross-validation folder")
    p.add_argument("--config", default=R.CV_DEFAULT, choices=sorted(R.CONFIGS),
                   help="named fine-tune configuration (training/recipe.py)")
    p.add_argument("--folds", type=int, default=R.CV_FOLDS)
    p.add_argument("--seed", type=int, default=R.CV_SEED, help="fold assignment seed")
    p.add_argument("--only-fold", type=int, default=-1, help="run one fold only")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--n-boot", type=int, default=2000)


# --------------------------------------------------------------------------- folds

def adult_pool(data_dir: Path | str) -> SplitIndex:
    """The cross-validated images: adult sources of the train and val splits."""
    parts = []
    for split in ("train", "val"):
        idx = read_split(data_dir, split)
        parts.append(idx.subset([s in R.ADULT_SOURCES for s in idx.sources]))
    pool = parts[0] + parts[1]
    if len(pool) == 0:
        raise PneumoViewError("the cache holds no adult images to cross-validate "
                              f"(sources {', '.join(R.ADULT_SOURCES)})", data_dir)
    return pool


def fold_numbers(pool: SplitIndex, k: int, seed: int) -> np.ndarray:
    """Fold per image; groups (patients, duplicate files) from the cache's group column."""
    groups = [f"{s}\0{g or p}" for s, g, p in zip(pool.sources, pool.groups,
                                                   pool.patient_ids, strict=True)]
    return np.asarray(assign_folds(groups, pool.labels.tolist(), k, seed, pool.sources))


def guard_index(data_dir: Path | str, n: int, seed: int = 0) -> SplitIndex:
    """A seeded, label-stratified subset of the non-adult validation images."""
    val = read_split(data_dir, "val")
    other = val.subset([s not in R.ADULT_SOURCES for s in val.sources])
    if len(other) <= n:
        return other
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(other), dtype=bool)
    for label in (0, 1):
        idx = np.flatnonzero(other.labels == label)
        take = int(round(n * len(idx) / len(other)))
        keep[rng.choice(idx, min(take, len(idx)), replace=False)] = True
    return other.subset(keep)


class FoldPlan:
    """The index files of a cross-validation (and of the final fine-tune on all folds)."""

    def __init__(self, data_dir: Path | str, out: Path | str, k: int = R.CV_FOLDS,
                 seed: int = R.CV_SEED, guard_n: int = R.GUARD_N) -> None:
        self.data_dir, self.out, self.k = Path(data_dir), Path(out), k
        self.pool = adult_pool(data_dir)
        self.folds = fold_numbers(self.pool, k, seed)
        train = read_split(data_dir, "train")
        self.rest = train.subset([s not in R.ADULT_SOURCES for s in train.sources])
        self.guard = guard_index(data_dir, guard_n, seed)

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "folds.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["fold", "source", "path", "label", "patient_id"])
            for i in range(len(self.pool)):
                w.writerow([int(self.folds[i]), self.pool.sources[i], self.pool.paths[i],
                            int(self.pool.labels[i]), self.pool.patient_ids[i]])
        for f in range(self.k):
            write_index(self.train_path(f), self.rest + self.pool.subset(self.folds != f))
            write_index(self.val_path(f), self.pool.subset(self.folds == f))
        write_index(self.final_train_path, self.rest + self.pool)
        write_index(self.guard_path, self.guard)

    def train_path(self, f: int) -> Path:
        return self.out / "index" / f"fold{f}_train.csv"

    def val_path(self, f: int) -> Path:
        return self.out / "index" / f"fold{f}_val.csv"

    @property
    def final_train_path(self) -> Path:
        return self.out / "index" / "all_folds_train.csv"

    @property
    def guard_path(self) -> Path:
        return self.out / "index" / "guard.csv"


# --------------------------------------------------------------------------- runs

def train_argv(data_dir: Path | str, run_dir: Path, base: Path | str, config: str,
               train_index: Path, val_index: Path, guard: Path | None, threads: int,
               device: str) -> list[str]:
    """The ``python -m training train`` arguments of one fine-tune."""
    argv = ["train", "--data", str(data_dir), "--output-dir", str(run_dir), "--init",
            str(Path(base) / "model.safetensors"), "--train-index", str(train_index),
            "--val-index", str(val_index), *R.CONFIGS[config]["args"], "--device", device]
    if guard is not None:
        argv += ["--guard-index", str(guard)]
    if threads:
        argv += ["--threads", str(threads)]
    return argv


def run_training(argv: list[str]) -> dict:
    """Run ``train`` in this process (resuming when the folder holds a checkpoint); returns
    the last log row. A finished run (``done.json`` with the same arguments) is not rerun."""
    from training.train import CHECKPOINT, get_args_parser, main

    out = Path(argv[argv.index("--output-dir") + 1])
    done = out / DONE
    if done.is_file():
        rec = json.loads(done.read_text(encoding="utf-8"))
        if rec.get("argv") == argv:
            return rec["last"]
        raise PneumoViewError("this folder holds a finished run with other arguments; "
                              "remove it or choose another folder", out)
    full = argv + (["--resume", "auto"] if (out / CHECKPOINT).is_file() else [])
    args = get_args_parser().parse_args(full[1:])
    args.argv = full
    t0 = time.time()
    result = main(args)
    if args.stop_after_epoch >= 0 and result["last"].get("epoch", -1) < args.epochs - 1:
        return result["last"]
    rec = {"argv": argv, "last": result["last"], "wall_s": time.time() - t0,
           "command": "python -m training " + " ".join(shlex.quote(a) for a in argv)}
    done.write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
    return result["last"]


def read_predictions(path: Path) -> dict[str, list]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {"path": [r["path"] for r in rows], "source": [r["source"] for r in rows],
            "patient_id": [r["patient_id"] for r in rows],
            "label": np.asarray([int(r["label"]) for r in rows]),
            "logit": np.asarray([float(r["logit"]) for r in rows])}


def run_cv(data_dir: Path | str, base: Path | str, out: Path | str, config: str,
           k: int = R.CV_FOLDS, seed: int = R.CV_SEED, threads: int = 0, device: str = "auto",
           only_fold: int = -1, n_boot: int = 2000) -> dict | None:
    """All folds (resuming), then the out-of-fold summary (``None`` with ``only_fold``)."""
    from training.train import GUARD_PREDICTIONS, PREDICTIONS

    out = Path(out)
    plan = FoldPlan(data_dir, out, k, seed)
    plan.write()
    rows = []
    for f in range(k):
        if only_fold >= 0 and f != only_fold:
            continue
        log.info("%s: fold %d/%d", config, f + 1, k)
        argv = train_argv(data_dir, out / f"fold{f}", base, config, plan.train_path(f),
                          plan.val_path(f), plan.guard_path, threads, device)
        rows.append(run_training(argv))
    if only_fold >= 0:
        return None
    oof, guard = [], []
    for f in range(k):
        run = out / f"fold{f}"
        oof.append((f, read_predictions(run / PREDICTIONS)))
        guard.append(read_predictions(run / GUARD_PREDICTIONS))
    summary = summarise(oof, guard, n_boot)
    summary.update({"config": config, "config_args": R.CONFIGS[config]["args"],
                    "size": R.CONFIGS[config]["size"], "folds": k, "fold_seed": seed,
                    "base": str(base), "data": str(data_dir),
                    "train_wall_s": _fold_times(out, k), **_fold_rotation(out, k)})
    write_oof(out / "oof.csv", oof)
    (out / "cv.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _fold_times(out: Path, k: int) -> list[float]:
    times = []
    for f in range(k):
        done = out / f"fold{f}" / DONE
        rec = json.loads(done.read_text(encoding="utf-8")) if done.is_file() else {}
        times.append(float(rec.get("wall_s", float("nan"))))
    return times


def _fold_rotation(out: Path, k: int) -> dict:
    """The rotation head's accuracy on each fold's out-of-fold images (all four turns) and the
    share of turned images it took for upright, from the fold's last epoch; empty for a
    configuration without the rotation task."""
    acc, upright = [], []
    for f in range(k):
        path = out / f"fold{f}" / "log.csv"
        if not path.is_file():
            return {}
        with open(path, newline="", encoding="utf-8") as fh:
            last = list(csv.DictReader(fh))[-1]
        if not last.get("val_rotation_acc"):
            return {}
        acc.append(float(last["val_rotation_acc"]))
        upright.append(float(last["val_rotated_taken_upright"]))
    return {"fold_rotation_acc": acc, "mean_rotation_acc": float(np.mean(acc)),
            "mean_rotated_taken_upright": float(np.mean(upright))}


def write_oof(path: Path, oof: list[tuple[int, dict]]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "source", "patient_id", "label", "logit", "fold"])
        for f, d in oof:
            for i in range(len(d["path"])):
                w.writerow([d["path"][i], d["source"][i], d["patient_id"][i],
                            int(d["label"][i]), repr(float(d["logit"][i])), f])
    tmp.replace(path)


def read_oof(path: Path | str) -> dict[str, list]:
    d = read_predictions(Path(path))
    with open(path, newline="", encoding="utf-8") as fh:
        d["fold"] = np.asarray([int(r["fold"]) for r in csv.DictReader(fh)])
    return d


def summarise(oof: list[tuple[int, dict]], guard: list[dict], n_boot: int = 2000) -> dict:
    """Per-fold and pooled out-of-fold figures (AUROC of the raw logits)."""
    per_fold = [M.auroc(d["label"], d["logit"]) for _, d in oof]
    guard_auc = [M.auroc(g["label"], g["logit"]) for g in guard]
    y = np.concatenate([d["label"] for _, d in oof])
    s = np.concatenate([d["logit"] for _, d in oof])
    pid = np.concatenate([[f"{a}\0{b}" for a, b in zip(d["source"], d["patient_id"],
                                                         strict=True)] for _, d in oof])
    ci = M.bootstrap_ci(y, M.sigmoid(s), 0.5, n_boot, groups=pid)["auroc"] if n_boot else {}
    return {
        "fold_auroc": per_fold,
        "mean_fold_auroc": float(np.mean(per_fold)),
        "sd_fold_auroc": float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else 0.0,
        "oof_auroc": M.auroc(y, s),
        "oof_auroc_ci95": [ci.get("ci_low"), ci.get("ci_high")] if ci else None,
        "n": int(len(y)), "positives": int(y.sum()), "patients": int(len(set(pid))),
        "fold_n": [int(len(d["label"])) for _, d in oof],
        "guard_auroc": guard_auc,
        "mean_guard_auroc": float(np.mean(guard_auc)),
    }


def run(args: argparse.Namespace) -> int:
    res = run_cv(args.data, args.base, args.out, args.config, args.folds, args.seed,
                 args.threads, args.device, args.only_fold, args.n_boot)
    if res is None:
        return 0
    print(format_summary(res))
    return 0


def format_summary(res: dict) -> str:
    folds = ", ".join(f"{a:.3f}" for a in res["fold_auroc"])
    ci = res.get("oof_auroc_ci95") or [float("nan")] * 2
    return (f"{res['config']}: adult AUROC per fold [{folds}], mean {res['mean_fold_auroc']:.3f}"
            f" (sd {res['sd_fold_auroc']:.3f}); pooled out-of-fold {res['oof_auroc']:.3f} "
            f"({ci[0]:.3f}-{ci[1]:.3f}, n {res['n']}); Kermany guard "
            f"{res['mean_guard_auroc']:.4f}" + _rotation_text(res))


def _rotation_text(res: dict) -> str:
    if "mean_rotation_acc" not in res:
        return ""
    return (f"; rotation accuracy {res['mean_rotation_acc']:.3f}, turned films taken for "
            f"upright {res['mean_rotated_taken_upright']:.3f}")
