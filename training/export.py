"""``python -m training export``: calibrate on validation, measure on test, write a model folder.

1. The chosen checkpoint (default: best validation AUROC) is written as a model folder and
   loaded back through :func:`pneumoview.core.model.load_model`, so every number below comes
   from the path the app uses.
2. Validation split: fit the temperature (minimum NLL) and pick the threshold on the
   calibrated probability that reaches the target sensitivity (default 0.90).
3. Test split, never used for any choice: AUROC, sensitivity and specificity at that threshold,
   calibration error, bootstrap 95 % intervals, per source, with prevalence.
4. ``metadata.json`` (everything needed to reproduce and to trust the model) and
   ``MODEL_CARD.md`` are written next to ``model.safetensors``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pneumoview.core.errors import PneumoViewError
from training import metrics as M
from training.provenance import (
    command_line,
    portable_args,
    portable_commands,
    portable_path,
    portable_provenance,
)

log = logging.getLogger("training.export")

NAME = "pneumoview-resnet18"
SOURCE_NOTES = {
    "kermany": ("Kermany et al. 2018 pediatric chest X-rays (Guangzhou Women and Children's "
                "Medical Center), CC BY 4.0, data.mendeley.com/datasets/rscbjbr9sj/2", "pediatric"),
    "nih": ("NIH ChestX-ray14 (Wang et al., CVPR 2017), NIH Clinical Center, no usage "
            "restrictions; 'Pneumonia' vs 'No Finding' images", "adult"),
    "rsna": ("RSNA Pneumonia Detection Challenge (stage 2 train), RSNA/Kaggle terms", "adult"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="training output folder (checkpoints)")
    p.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint path")
    p.add_argument("--data", default=None, help="prepared cache (default: the run's)")
    p.add_argument("--out", required=True, help="model folder to write (e.g. resources/model)")
    p.add_argument("--target-sensitivity", type=float, default=0.90)
    p.add_argument("--name", default=NAME)
    p.add_argument("--version", default="1.0")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--extra-folder", action="append", default=[], metavar="NAME=ROOT",
                   help="also score a folder-layout set (reported, never used for choices)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--plots-dir", default=None,
                   help="also write test ROC/reliability PNGs here (not into the model folder)")
    p.add_argument("--gate", default=None, metavar="GATE_DIR",
                   help="attach this input gate (python -m training gate --out GATE_DIR)")


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _versions() -> dict[str, str]:
    import pydicom
    import safetensors
    import torch
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "pydicom": pydicom.__version__, "safetensors": safetensors.__version__,
            "platform": platform.platform()}


def _init_provenance(init: str) -> dict | None:
    """When training started from an exported model (a two-stage recipe), record how that
    model was made: its sha256, its commands and its training summary."""
    if not init:
        return None
    meta_path = Path(init).parent / "metadata.json"
    info: dict = {"path": portable_path(init, cwd=Path.cwd())}
    if meta_path.is_file():
        prev = json.loads(meta_path.read_text(encoding="utf-8"))
        info.update({"weights_sha256": prev.get("weights_sha256"),
                     "command": prev.get("command"), "training": prev.get("training"),
                     "init_from": prev.get("init_from")})
    return portable_provenance(info)


def _commands(meta: dict) -> list[str]:
    """All command lines, earliest stage first."""
    out: list[str] = []
    init = meta.get("init_from") or {}
    if init.get("command"):
        out += _commands({"command": init["command"], "init_from": init.get("init_from")})
    c = meta["command"]
    out += [c["prepare"], c["train"], c["export"]]
    seen: list[str] = []
    for x in out:  # the same prepare line appears once per stage
        if x and x not in seen:
            seen.append(x)
    return seen


def _fmt_ci(m: dict, key: str) -> str:
    ci = m.get("ci95", {}).get(key)
    v = m.get(key)
    if v is None:
        return "n/a"
    return f"{v:.3f} ({ci[0]:.3f}-{ci[1]:.3f})" if ci else f"{v:.3f}"


def model_card(meta: dict) -> str:
    """MODEL_CARD.md text from the metadata (no numbers typed by hand)."""
    test = meta["metrics"]["test"]
    lines = [
        f"# Model card: {meta['name']} {meta['version']}",
        "",
        "## Intended use",
        "",
        "Research and triage aid: it ranks frontal chest radiographs by how likely they show "
        "pneumonia so that a reader can look at flagged images first. **Not for diagnostic use.** "
        "It does not replace a radiologist, was not validated prospectively, and is not a "
        "medical device.",
        "",
        "## Model",
        "",
        f"- Architecture: `{meta['architecture']}` (torchvision ResNet18, one-channel first "
        "convolution, one output logit), trained from scratch (no pretrained weights).",
        f"- Input: model-input contract `{meta['input_contract']}` at {meta['input_size']} x "
        f"{meta['input_size']} px, normalised with mean {meta['mean']:.4f} and std "
        f"{meta['std']:.4f}.",
        f"- Output: probability = sigmoid(logit / {meta['temperature']:.3f}) (temperature fitted "
        "on the validation split).",
        f"- Operating threshold: {meta['threshold']:.4f} on that probability, chosen on the "
        f"validation split for sensitivity {meta['target_sensitivity']:.2f}.",
        f"- Weights sha256: `{meta.get('weights_sha256', '(added on write)')}`.",
        "",
        "## Data",
        "",
    ]
    for name, d in meta["data"]["sources"].items():
        note, pop = SOURCE_NOTES.get(name, (name, "unknown population"))
        counts = ", ".join(f"{s} {c['n']} ({c['positive']} pneumonia, {c['patients']} patients)"
                           for s, c in d["splits"].items())
        lines.append(f"- **{name}** ({pop}): {note}. {counts}. Content sha256 "
                     f"`{d['content_sha256'][:16]}...`.")
    lines += [
        "",
        "Splits are by patient (never by image), stratified by label and source, seeded; "
        "byte-identical files stay in one split. The pediatric Kermany images dominate the "
        "training data (about ten times the adult NIH images); sampling gave the smaller source "
        "a larger share (see the training command).",
        "",
        "## Test metrics (held-out test split, never used for any choice)",
        "",
        "Point estimate with bootstrap 95 % interval; sensitivity and specificity at the "
        "operating threshold; ECE = expected calibration error (10 bins).",
        "",
        "| part | n | prevalence | AUROC | sensitivity | specificity | ECE |",
        "|---|---|---|---|---|---|---|",
    ]
    for part, m in test.items():
        lines.append(f"| {part} | {m['n']} | {m['prevalence']:.3f} | {_fmt_ci(m, 'auroc')} | "
                     f"{_fmt_ci(m, 'sensitivity')} | {_fmt_ci(m, 'specificity')} | "
                     f"{_fmt_ci(m, 'ece')} |")
    for name, m in meta["metrics"].get("extra", {}).items():
        lines.append(f"\nExtra check `{name}` (n={m['n']}): AUROC {m['auroc']:.3f}, sensitivity "
                     f"{m['sensitivity']:.3f}, specificity {m['specificity']:.3f}.")
    lines += [
        "",
        "## Known limits",
        "",
        "- Small adult test set: the NIH intervals are wide. The pediatric and adult parts behave "
        "differently; one threshold serves both, so sensitivity differs between them.",
        "- NIH labels were mined from radiology reports (noisy); NIH 'Pneumonia' images often "
        "show other findings too. Kermany images were resized to 224 x 224 without keeping the "
        "aspect ratio by the redistributor.",
        "- Trained on frontal (PA/AP) radiographs only; lateral views, other body parts, "
        "children under the Kermany age range, and images from other scanners or hospitals are "
        "out of distribution. The input gate (section above, when attached) refuses rotated, "
        "inverted and non-chest images by content; laterals only by tags and a weak proxy.",
        "- Trained from scratch on about 4,000 images on a CPU; a model initialised from "
        "ImageNet weights or trained on RSNA would likely be better (see README, Training).",
        "- Calibration was fitted on the validation mix of sources; probabilities are not "
        "calibrated for other prevalences.",
        "",
        "## Reproduce",
        "",
        "One command from a checkout: `python -m training reproduce` (README, Training). "
        "It runs:",
        "",
        "```",
        *_commands(meta),
        "```",
        "",
        f"Git commit {meta['git_commit']}, {meta['created']}.",
        "",
    ]
    card = "\n".join(lines)
    if meta.get("gate"):
        from training.gate.attach import card_with_gate

        card = card_with_gate(card, meta)
    return card


def export(args: argparse.Namespace) -> dict:
    import sys

    import torch

    from pneumoview.core import contract
    from pneumoview.core.model import (
        ARCHITECTURE,
        calibrated_probability,
        load_model,
        write_model_dir,
    )
    from training.evaluate import metrics_by_source, score_cache, score_files
    from training.train import BEST, CHECKPOINT, load_checkpoint

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    run_dir = Path(args.run)
    ck_path = {"best": run_dir / BEST, "last": run_dir / CHECKPOINT}.get(args.checkpoint,
                                                                       Path(args.checkpoint))
    ck = load_checkpoint(ck_path)
    data_dir = Path(args.data or ck["args"]["data"])
    prepared = ck["prepared"]
    size = int(ck["image_size"])
    if size != int(prepared["image_size"]):
        raise PneumoViewError(f"the run trained at {size} px on a {prepared['image_size']} px "
                              "cache; export needs the cache size (app inputs are not resized)")
    base = {
        "name": args.name, "version": args.version, "architecture": ARCHITECTURE,
        "input_contract": contract.INPUT_CONTRACT, "input_size": size,
        "mean": float(prepared["mean"]), "std": float(prepared["std"]),
        "temperature": 1.0, "threshold": 0.5, "target_sensitivity": args.target_sensitivity,
    }
    with tempfile.TemporaryDirectory() as tmp:
        provisional = write_model_dir(Path(tmp) / "m", ck["model"], base)
        loaded = load_model(provisional, args.device)
        val_logits, val_idx = score_cache(loaded, data_dir, ck["args"].get("val_split", "val"))
        test_logits, test_idx = score_cache(loaded, data_dir, "test")
        extra = {}
        for spec in args.extra_folder:
            from training.sources import parse_source_spec, read_folder

            name, root = parse_source_spec(spec, "folder")
            items = read_folder(root, name)
            extra[items[0].source] = (score_files(loaded, [it.path for it in items]),
                                      np.asarray([it.label for it in items]))
    temperature = M.fit_temperature(val_idx.labels, val_logits)
    val_p = calibrated_probability(val_logits, temperature)
    threshold = M.threshold_for_sensitivity(val_idx.labels, val_p, args.target_sensitivity)
    test_p = calibrated_probability(test_logits, temperature)
    test_metrics = metrics_by_source(test_idx.labels, test_p, test_idx.sources, threshold,
                                     args.n_boot)
    val_metrics = metrics_by_source(val_idx.labels, val_p, val_idx.sources, threshold, 0)
    extra_metrics = {}
    for name, (lg, y) in extra.items():
        p = calibrated_probability(lg, temperature)
        s = M.summary(y, p, threshold)
        extra_metrics[name] = {k: s[k] for k in ("n", "prevalence", "auroc", "sensitivity",
                                                  "specificity", "ece")}
    counts = prepared["counts"]
    sources = {}
    for name, d in prepared["sources"].items():
        sources[name] = {"content_sha256": d["content_sha256"], "n_images": d["n_images"],
                         "splits": {s: counts[s][name] for s in counts if name in counts[s]}}
    export_cmd = command_line(sys.argv[1:]) if sys.argv[1:2] == ["export"] \
        else "python -m training export"
    meta = {
        **base,
        "temperature": temperature,
        "threshold": threshold,
        "threshold_applies_to": "calibrated probability sigmoid(logit / temperature)",
        "metrics": {"test": test_metrics, "validation": val_metrics, "extra": extra_metrics},
        "data": {"sources": sources, "content_sha256": prepared["content_sha256"],
                 "split_seed": prepared["seed"], "fractions": prepared["fractions"]},
        "training": {"epochs": int(ck["args"]["epochs"]), "best_epoch": int(ck["best_epoch"]),
                     "exported_epoch": int(ck["epoch"]),
                     "val_auroc": float(ck["row"]["val_auroc"]), "seed": int(ck["args"]["seed"]),
                     "args": portable_args({k: v for k, v in ck["args"].items()
                                            if isinstance(v, str | int | float | bool)},
                                           cwd=Path.cwd()),
                     "torch_version": ck.get("torch_version")},
        "seed": int(ck["args"]["seed"]),
        "command": portable_commands({
            "prepare": prepared.get("command", ""),
            "train": re.sub(r"^\S*python\S*", "python", ck.get("command", "")),
            "export": export_cmd}),
        "init_from": _init_provenance(ck["args"].get("init") or ""),
        "versions": _versions(),
        "git_commit": _git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not (out / "metadata.json").exists():
        raise PneumoViewError("refusing to write into a non-empty folder that is not a model "
                              "folder", out)
    staging = out.parent / (out.name + ".export-tmp")
    if staging.exists():
        shutil.rmtree(staging)
    write_model_dir(staging, ck["model"], meta, None)
    meta = json.loads((staging / "metadata.json").read_text(encoding="utf-8"))
    (staging / "MODEL_CARD.md").write_text(model_card(meta), encoding="utf-8")
    out.mkdir(parents=True, exist_ok=True)
    for f in staging.iterdir():
        os.replace(f, out / f.name)
    staging.rmdir()
    if getattr(args, "gate", None):
        from training.gate.attach import attach_gate

        attach_gate(out, args.gate)
        meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    if args.plots_dir:
        from training.evaluate import plot

        Path(args.plots_dir).mkdir(parents=True, exist_ok=True)
        plot(test_idx.labels, test_p, test_idx.sources, Path(args.plots_dir),
             f"{meta['name']} {meta['version']} (test split)")
    return meta


def run(args: argparse.Namespace) -> int:
    meta = export(args)
    print(f"temperature {meta['temperature']:.4f}  threshold {meta['threshold']:.4f} "
          f"(target sensitivity {meta['target_sensitivity']:.2f} on validation)")
    for part, m in meta["metrics"]["test"].items():
        print(f"test {part:8s} n {m['n']:4d} prev {m['prevalence']:.3f}  AUROC "
              f"{_fmt_ci(m, 'auroc')}  sens {_fmt_ci(m, 'sensitivity')}  "
              f"spec {_fmt_ci(m, 'specificity')}  ECE {_fmt_ci(m, 'ece')}")
    for name, m in meta["metrics"]["extra"].items():
        print(f"extra {name}: n {m['n']} AUROC {m['auroc']:.3f} sens {m['sensitivity']:.3f} "
              f"spec {m['specificity']:.3f}")
    print(f"-> {args.out} (weights sha256 {meta['weights_sha256'][:16]}...)")
    return 0
