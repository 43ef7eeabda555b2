"""``python -m training reproduce``: the bundled checkpoint from the public data, in one command.

The shipped model is trained in two stages: (1) 12 epochs on everything with the smaller adult
source given a square-root share; (2) a short fine-tune from (1) with the two sources sampled
equally at a low learning rate, best epoch by the mean of the per-source validation AUROCs.
This runs ``prepare``, both ``train`` stages (each resuming if its folder already holds a
checkpoint), the intermediate ``export`` that stage 2 starts from, and the final ``export``.
``--data-root`` is a folder laid out like ``../shared/data`` (``kermany/train/{NORMAL,
PNEUMONIA}``, ``nih/labels.csv`` + ``nih/images``), e.g. your own downloads of the two public
data sets.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("training.reproduce")

#: The bundled model's recipe (also recorded in resources/model/metadata.json).
IMAGE_SIZE = 224
TRAIN_ARGS = ["--epochs", "12", "--batch-size", "32", "--opt", "adamw", "--lr", "1e-3",
              "--weight-decay", "0.05", "--lr-scheduler", "cosine", "--lr-warmup-epochs", "1",
              "--balance", "source", "--balance-power", "0.5", "--amp", "--seed", "0"]
FINETUNE_ARGS = ["--epochs", "6", "--samples-per-epoch", "2000", "--batch-size", "32", "--opt",
                 "adamw", "--lr", "1e-4", "--weight-decay", "0.05", "--lr-scheduler", "cosine",
                 "--lr-warmup-epochs", "0.5", "--balance", "source", "--balance-power", "0",
                 "--amp", "--seed", "0", "--select-metric", "source-mean-auroc"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default="../shared/data",
                   help="folder with kermany/train and nih/labels.csv")
    p.add_argument("--work", default="runs/bundled", help="cache, checkpoints and logs go here")
    p.add_argument("--out", default="resources/model", help="model folder to write")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")


def steps(args: argparse.Namespace) -> list[list[str]]:
    root, work = Path(args.data_root), Path(args.work)
    data, run = work / f"data{IMAGE_SIZE}", work / "run"
    threads = ["--threads", str(args.threads)] if args.threads else []
    prepare = ["prepare", "--folder", str(root / "kermany" / "train"), "--manifest",
               str(root / "nih" / "labels.csv"), "--out", str(data), "--image-size",
               str(IMAGE_SIZE), "--seed", "0"]
    run2, stage1 = work / "run-finetune", work / "stage1_model"
    train = ["train", "--data", str(data), "--output-dir", str(run), *TRAIN_ARGS,
             "--device", args.device, *threads]
    if (run / "checkpoint.pth").is_file():
        train += ["--resume", "auto"]
    export1 = ["export", "--run", str(run), "--out", str(stage1), *threads]
    finetune = ["train", "--data", str(data), "--output-dir", str(run2), "--init",
                str(stage1 / "model.safetensors"), *FINETUNE_ARGS, "--device", args.device,
                *threads]
    if (run2 / "checkpoint.pth").is_file():
        finetune += ["--resume", "auto"]
    export = ["export", "--run", str(run2), "--out", str(args.out), "--extra-folder",
              f"kermany_val={root / 'kermany' / 'val'}", "--plots-dir", str(work / "plots"),
              *threads]
    out = []
    if not (data / "prepared.json").is_file():
        out.append(prepare)
    return [*out, train, export1, finetune, export]


def run(args: argparse.Namespace) -> int:
    from training.__main__ import main

    for argv in steps(args):
        log.info("python -m training %s", " ".join(argv))
        saved = sys.argv
        sys.argv = ["training", *argv]  # so each step records its own command line
        try:
            rc = main(argv)
        finally:
            sys.argv = saved
        if rc:
            return rc
    return 0
