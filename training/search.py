"""``python -m training search``: cross-validate several fine-tune configurations, tabulate.

    python -m training search --work runs/bundled --configs 224,320,320-ema

Trains the configurations' shared base once (ResNet18 from scratch on the Kermany training
split only, ``WORK/base-model``; resumable), prepares the cache each configuration's size needs,
runs :func:`training.cv.run_cv` for each named configuration (:data:`training.recipe.CONFIGS`)
into ``WORK/cv/<name>`` and writes ``WORK/search/search.json`` and ``search.md``: per
configuration the adult AUROC of every fold, their mean and spread, the pooled out-of-fold
AUROC with its patient-bootstrap interval, the Kermany guard and the time per fold. Only
validation images (out-of-fold adults, the Kermany guard) take part; the test split is never
read. Resumable: finished folds are not rerun.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from pneumoview.core.errors import PneumoViewError
from training import recipe as R

log = logging.getLogger("training.search")

NOTE = ("Selection rule: the highest mean fold adult AUROC whose Kermany guard stays at or "
        "above 0.98; differences smaller than the fold spread are read as no difference.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work", default="runs/bundled",
                   help="caches, the base, the folds and the table go here (may be "
                        "reproduce's work folder: the paths do not collide)")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--configs", default="224,320",
                   help=f"comma-separated configuration names (of {', '.join(R.CONFIGS)})")
    p.add_argument("--folds", type=int, default=R.CV_FOLDS)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--table-only", action="store_true",
                   help="only tabulate the configurations already cross-validated")


class SearchPlan:
    """Paths and command lines of the base and of one configuration's cross-validation."""

    def __init__(self, data_root: str, work: str, config: str, threads: int = 0,
                 device: str = "auto") -> None:
        self.root, self.work = Path(data_root), Path(work)
        self.config = config
        self.size = int(R.CONFIGS[config]["size"])
        self.threads = ["--threads", str(threads)] if threads else []
        self.device = device
        self.base_data, self.ft_data = self.cache(R.BASE_SIZE), self.cache(self.size)
        self.base_run, self.base_model = self.work / "base-run", self.work / "base-model"
        self.cv_dir = self.work / "cv" / config

    def cache(self, size: int) -> Path:
        return self.work / f"data{size}"

    def prepare(self, size: int) -> list[str]:
        from training.reproduce import prepare_argv

        return prepare_argv(self.root, self.cache(size), size)

    def base_index(self, split: str) -> Path:
        return self.work / "index" / f"base_{split}.csv"

    def base_train(self) -> list[str]:
        return ["train", "--data", str(self.base_data), "--output-dir", str(self.base_run),
                "--train-index", str(self.base_index("train")), "--val-index",
                str(self.base_index("val")), *R.BASE_ARGS, "--device", self.device,
                *self.threads]

    def base_export(self) -> list[str]:
        return ["export", "--run", str(self.base_run), "--checkpoint", "last", "--out",
                str(self.base_model), "--version", "1.1-base", "--n-boot", "0",
                "--skip-test", *self.threads]


def write_base_index(plan: SearchPlan) -> None:
    """The base's training and validation images: every non-adult image of those splits."""
    from training.data import read_split, write_index

    for split in ("train", "val"):
        idx = read_split(plan.base_data, split)
        write_index(plan.base_index(split),
                    idx.subset([s not in R.ADULT_SOURCES for s in idx.sources]))


def ensure_base(plan: SearchPlan) -> None:
    """Prepare the caches and train and export the base, each step skipped when complete."""
    from training.reproduce import call, training_done

    for size in sorted({R.BASE_SIZE, plan.size}):
        if not (plan.cache(size) / "prepared.json").is_file():
            call(plan.prepare(size))
    write_base_index(plan)
    if not training_done(plan.base_run, R.BASE_ARGS):
        argv = plan.base_train()
        if (plan.base_run / "checkpoint.pth").is_file():
            argv += ["--resume", "auto"]
        call(argv)
    if not (plan.base_model / "metadata.json").is_file():
        call(plan.base_export())


def row(name: str, summary: dict) -> dict:
    times = [t for t in summary.get("train_wall_s", []) if np.isfinite(t)]
    keys = ("mean_fold_auroc", "sd_fold_auroc", "fold_auroc", "oof_auroc", "oof_auroc_ci95",
            "mean_guard_auroc", "guard_auroc", "size", "n")
    return {"config": name, "change": R.CONFIGS.get(name, {}).get("change", ""),
            **{k: summary[k] for k in keys},
            "mean_fold_wall_s": float(np.mean(times)) if times else None,
            **{k: summary[k] for k in ("mean_rotation_acc", "mean_rotated_taken_upright")
               if k in summary}}


def run(args: argparse.Namespace) -> int:
    from training.card import search_table
    from training.cv import format_summary, run_cv
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in R.CONFIGS]
    if unknown:
        raise PneumoViewError(f"unknown configuration(s) {', '.join(unknown)}; known: "
                              f"{', '.join(R.CONFIGS)}")
    work = Path(args.work)
    rows = []
    for name in names:
        plan = SearchPlan(args.data_root, args.work, name, args.threads, args.device)
        cv_json = plan.cv_dir / "cv.json"
        if not args.table_only:
            ensure_base(plan)
            run_cv(plan.ft_data, plan.base_model, plan.cv_dir, name, args.folds,
                   threads=args.threads, device=args.device)
        if cv_json.is_file():
            summary = json.loads(cv_json.read_text(encoding="utf-8"))
            print(format_summary(summary))
            rows.append(row(name, summary))
    out = work / "search"
    out.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "note": NOTE, "folds": args.folds}
    (out / "search.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    table = "\n".join(search_table(result)) + "\n\n" + NOTE + "\n"
    (out / "search.md").write_text(table, encoding="utf-8")
    print(table)
    return 0
