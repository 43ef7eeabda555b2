"""``python -m training evaluate``: score an exported model on any source, with plots.

Images are read the way the app reads them (DICOM through the core decoder, PNG/JPEG through
Pillow, then the model-input contract) and scored through :func:`pneumoview.core.model.load_model`
and :func:`~pneumoview.core.model.predict_logits`: the numbers here are the numbers a user gets.
A prepared cache split can be scored too (``--data DIR --split test``; uint8-rounded inputs).
Writes ``predictions.csv``, ``metrics.json`` (per source and overall, bootstrap 95 % intervals),
``roc.png`` and ``reliability.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pneumoview.core.errors import PneumoViewError
from training import metrics as M

log = logging.getLogger("training.evaluate")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    p.add_argument("--folder", action="append", default=[], metavar="[NAME=]ROOT")
    p.add_argument("--manifest", action="append", default=[], metavar="[NAME=]CSV")
    p.add_argument("--rsna", action="append", default=[], metavar="[NAME=]DIR")
    p.add_argument("--negative-dirs", default="NORMAL")
    p.add_argument("--positive-dirs", default="PNEUMONIA")
    p.add_argument("--data", default=None, help="a prepared cache instead of files")
    p.add_argument("--split", default="test", help="with --data")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threshold", type=float, default=None,
                   help="one threshold for every image (default: the model's operating points)")
    p.add_argument("--operating-point", default="by-source",
                   choices=("by-source", "unknown-age", "adult", "paediatric"),
                   help="which of the model's operating points applies: by the source's "
                   "population (kermany: paediatric, nih/rsna: adult, other sources: the "
                   "unknown-age one), the unknown-age one, or one population's for all")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--no-plots", action="store_true")


def score_arrays(loaded, arrays: Callable[[int], np.ndarray], n: int,  # noqa: ANN001
                 batch_size: int = 32) -> np.ndarray:
    """Logits for ``n`` contract step-4 images given by ``arrays(i)``, through the core path."""
    from pneumoview.core.model import predict_logits, prepare_batch

    out = []
    for start in range(0, n, batch_size):
        batch = [arrays(i) for i in range(start, min(n, start + batch_size))]
        out.append(predict_logits(loaded, prepare_batch(batch, loaded.info)))
    return np.concatenate(out) if out else np.zeros(0)


def score_files(loaded, paths: Sequence[str], batch_size: int = 32) -> np.ndarray:  # noqa: ANN001
    """Logits for image files (DICOM/PNG/JPEG) read exactly as the app reads them."""
    from training.prepare import load_model_input

    size, version = loaded.info.input_size, loaded.info.input_contract
    return score_arrays(loaded, lambda i: load_model_input(paths[i], size, version), len(paths),
                        batch_size)


def score_cache(loaded, data_dir: Path | str, split: str,  # noqa: ANN001
                batch_size: int = 32) -> tuple[np.ndarray, object]:
    """Logits for a prepared split, or an index file's rows (uint8 cache / 255), and the
    index."""
    from training.data import read_split

    index = read_split(data_dir, split).with_splits(split)
    arrs = {s: np.load(Path(data_dir) / f"images_{s}.npy", mmap_mode="r")
            for s in sorted(set(index.splits))}
    for arr in arrs.values():
        if arr.shape[-1] != loaded.info.input_size:
            raise PneumoViewError(f"cache images are {arr.shape[-1]} px but the model takes "
                                  f"{loaded.info.input_size} px", data_dir)
    logits = score_arrays(
        loaded, lambda i: arrs[index.splits[i]][index.rows[i]].astype(np.float32) / 255.0,
        len(index.rows), batch_size)
    return logits, index


def metrics_by_source(y: np.ndarray, p: np.ndarray, sources: Sequence[str],
                      threshold: float | np.ndarray, n_boot: int = 2000, seed: int = 0,
                      groups: Sequence[str] | None = None) -> dict[str, dict]:
    """Point metrics + bootstrap CIs, overall and per source (with prevalence and counts).

    ``threshold`` may be one per image (population operating points); with ``groups``
    (patients) the bootstrap resamples whole patients.
    """
    src = np.asarray(sources)
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), np.shape(p))
    grp = None if groups is None else np.asarray(groups)
    out: dict[str, dict] = {}
    groups = [("all", np.ones(len(y), dtype=bool))] + [(s, src == s) for s in sorted(set(src))]
    for name, m in groups:
        if not m.any():
            continue
        yy, pp, tt = y[m], p[m], thr[m]
        point = M.summary(yy, pp, tt)
        entry = {k: point[k] for k in ("n", "prevalence", "auroc", "ap", "sensitivity",
                                        "specificity", "precision", "accuracy", "f1", "ece",
                                        "tp", "fp", "tn", "fn")}
        if 0 < yy.sum() < len(yy) and n_boot > 0:
            entry["ci95"] = {k: [v["ci_low"], v["ci_high"]]
                             for k, v in M.bootstrap_ci(yy, pp, tt, n_boot, seed,
                                                        groups=None if grp is None
                                                        else grp[m]).items()}
        out[name] = entry
    return out


def plot(y: np.ndarray, p: np.ndarray, sources: Sequence[str], out_dir: Path,
         title: str) -> list[Path]:
    """ROC and reliability diagrams per source (matplotlib, imported only here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src = np.asarray(sources)
    groups = [("all", np.ones(len(y), dtype=bool))] + [(s, src == s) for s in sorted(set(src))]
    paths = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, m in groups:
        if 0 < y[m].sum() < m.sum():
            fpr, tpr, _ = M.roc_curve(y[m], p[m])
            ax.plot(fpr, tpr, label=f"{name} (AUROC {M.auroc(y[m], p[m]):.3f}, n={m.sum()})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC: {title}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "roc.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, m in groups:
        bins = [b for b in M.reliability(y[m], p[m]) if b["n"] > 0]
        ax.plot([b["mean_p"] for b in bins], [b["frac_pos"] for b in bins], "o-",
                label=f"{name} (ECE {M.expected_calibration_error(y[m], p[m]):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="mean predicted probability", ylabel="fraction positive",
           title=f"Reliability: {title}", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "reliability.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def evaluate_model(model_dir: str | None, out: Path, *, items=None, data_dir=None,  # noqa: ANN001
                   split: str = "test", device: str = "auto", batch_size: int = 32,
                   threshold: float | None = None, n_boot: int = 2000,
                   plots: bool = True, operating_point: str = "by-source") -> dict:
    """Score and write predictions, metrics and plots; returns the metrics dict."""
    from pneumoview.core.model import calibrated_probability
    from training import modelio

    loaded = modelio.load(model_dir, device)
    info = loaded.info
    if data_dir is not None:
        logits, index = score_cache(loaded, data_dir, split, batch_size)
        paths, labels, sources = index.paths, index.labels, index.sources
    else:
        paths = [it.path for it in items]
        labels = np.asarray([it.label for it in items])
        sources = [it.source for it in items]
        logits = score_files(loaded, paths, batch_size)
    prob = calibrated_probability(logits, info.temperature)
    thr = thresholds(info, sources, threshold, operating_point)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "source", "label", "logit", "probability", "flagged"])
        for pth, s, lab, lo, pr, t in zip(paths, sources, labels, logits, prob, thr,
                                          strict=True):
            w.writerow([pth, s, int(lab), f"{lo:.6f}", f"{pr:.6f}", int(pr >= t)])
    result = {"model": info.label, "threshold": float(np.min(thr)) if len(thr) else info.threshold,
              "operating_point": operating_point if threshold is None else "given",
              "temperature": info.temperature,
              "metrics": metrics_by_source(np.asarray(labels), prob, sources, thr, n_boot)}
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if plots:
        plot(np.asarray(labels), prob, sources, out, info.label)
    result["probabilities"] = prob
    result["paths"] = list(paths)
    return result


def thresholds(info, sources: Sequence[str], threshold: float | None,  # noqa: ANN001
               operating_point: str) -> np.ndarray:
    """Per-image thresholds: the given one, or the model's operating point for each image."""
    from training import oppoints

    n = len(sources)
    points = info.raw.get("operating_points") or {}
    if threshold is not None:
        return np.full(n, float(threshold))
    if not points or operating_point == "unknown-age":
        return np.full(n, float(info.threshold))
    if operating_point in points:
        return np.full(n, float(points[operating_point]["threshold"]))
    if operating_point != "by-source":
        raise PneumoViewError(f"the model has no {operating_point!r} operating point")
    return oppoints.per_image(sources, points)


def run(args: argparse.Namespace) -> int:
    import torch

    from training import sources as src_mod

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    items = None
    if args.data is None:
        items = src_mod.collect(args.folder, args.manifest, args.rsna,
                                tuple(args.negative_dirs.split(",")),
                                tuple(args.positive_dirs.split(",")))
    res = evaluate_model(args.model, Path(args.out), items=items, data_dir=args.data,
                         split=args.split, device=args.device, batch_size=args.batch_size,
                         threshold=args.threshold, n_boot=args.n_boot, plots=not args.no_plots,
                         operating_point=args.operating_point)
    print(f"{res['model']}  operating point {res['operating_point']} (lowest threshold "
          f"{res['threshold']:.4f})")
    for name, m in res["metrics"].items():
        ci = m.get("ci95", {})
        auc_ci = ci.get("auroc", [float("nan")] * 2)
        print(f"{name:10s} n {m['n']:5d} prev {m['prevalence']:.3f}  AUROC {m['auroc']:.4f} "
              f"[{auc_ci[0]:.3f}, {auc_ci[1]:.3f}]  sens {m['sensitivity']:.3f}  "
              f"spec {m['specificity']:.3f}  ECE {m['ece']:.3f}")
    print(f"-> {args.out}")
    return 0
