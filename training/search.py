"""``python -m training search``: cross-validate several fine-tune configurations, tabulate.

    python -m training search --work runs/bundled --configs 224,320,320-ema

Uses ``reproduce``'s caches and base model in ``--work`` (run ``python -m training reproduce
--stop-after base`` first), runs :func:`training.cv.run_cv` for each named configuration
(:data:`training.recipe.CONFIGS`) into ``WORK/cv/<name>`` (so ``reproduce`` reuses the chosen
one's folds) and writes ``WORK/search/search.json`` and ``search.md``: per configuration the
adult AUROC of every fold, their mean and spread, the pooled out-of-fold AUROC with its
patient-bootstrap interval, the Kermany guard and the time per fold. Only validation images
(out-of-fold adults, the Kermany guard) take part; the test split is never read. Resumable:
finished folds are not rerun.
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
    p.add_argument("--work", default="runs/bundled", help="reproduce's work folder")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--configs", default="224,320",
                   help=f"comma-separated configuration names (of {', '.join(R.CONFIGS)})")
    p.add_argument("--folds", type=int, default=R.CV_FOLDS)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--table-only", action="store_true",
                   help="only tabulate the configurations already cross-validated")


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
    from training.reproduce import Plan, call

    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in R.CONFIGS]
    if unknown:
        raise PneumoViewError(f"unknown configuration(s) {', '.join(unknown)}; known: "
                              f"{', '.join(R.CONFIGS)}")
    work = Path(args.work)
    rows = []
    for name in names:
        plan = Plan(argparse.Namespace(data_root=args.data_root, work=args.work, out=None,
                                       config=name, compare="", threads=args.threads,
                                       device=args.device))
        cv_json = plan.cv_dir / "cv.json"
        if not args.table_only:
            if not (plan.base_model / "metadata.json").is_file():
                raise PneumoViewError("no base model yet: run `python -m training reproduce "
                                      "--stop-after base` first", plan.base_model)
            if not (plan.ft_data / "prepared.json").is_file():
                call(plan.prepare(plan.size))
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
