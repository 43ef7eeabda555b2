"""``python -m training prepare``: decode every image once, apply the contract, cache to disk.

Each image goes through exactly what the app does (DICOM through :func:`dicomio.decode`,
PNG/JPEG through :func:`contract.load_plain_image`, then :func:`contract.model_input` steps 1-4)
and is stored as uint8 in one ``.npy`` memory map per split (``images_<split>.npy``) with a CSV
index (``<split>.csv``). ``splits.csv`` lists every image with its split and group;
``prepared.json`` holds the image size, the training split's mean and standard deviation
(running sums of values and squared values, never the whole data set in memory), counts, and a
content hash of the sources.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from pneumoview.core import contract
from pneumoview.core.errors import PneumoViewError
from training import sources as src_mod
from training.provenance import command_line
from training.splits import SPLITS, assign_splits, group_ids

log = logging.getLogger("training.prepare")

PREPARED_FILE = "prepared.json"
DICOM_SUFFIXES = {".dcm", ".dicom"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--folder", action="append", default=[], metavar="[NAME=]ROOT",
                   help="folder layout ROOT/NORMAL, ROOT/PNEUMONIA (repeatable)")
    p.add_argument("--manifest", action="append", default=[], metavar="[NAME=]CSV",
                   help="CSV image,label[,patient_id], paths relative to the CSV (repeatable)")
    p.add_argument("--rsna", action="append", default=[], metavar="[NAME=]DIR",
                   help="RSNA layout: DIR/stage_2_train_labels.csv + stage_2_train_images/")
    p.add_argument("--reviews", action="append", default=[], metavar="[NAME=]CSV",
                   help="a site's review export (pneumoview reviews export), images under "
                        "--reviews-root")
    p.add_argument("--reviews-root", metavar="DIR",
                   help="the folder the reviewed files are in (default: the CSV's folder)")
    p.add_argument("--negative-dirs", default="NORMAL", help="comma-separated class-0 folders")
    p.add_argument("--positive-dirs", default="PNEUMONIA", help="comma-separated class-1 folders")
    p.add_argument("--out", required=True, help="output folder for the cache")
    p.add_argument("--image-size", type=int, default=0,
                   help="0: the contract's default size (224 for pv-input-1, 320 for pv-input-2)")
    p.add_argument("--contract", default=contract.INPUT_CONTRACT,
                   choices=sorted(contract.CONTRACTS),
                   help="model-input contract version the cache is prepared for")
    p.add_argument("--fractions", default="0.7,0.15,0.15", help="train,val,test shares")
    p.add_argument("--seed", type=int, default=0)


class RunningStats:
    """Mean and standard deviation from running sums (float64), one image at a time."""

    def __init__(self) -> None:
        self.n = 0
        self.s = 0.0
        self.ss = 0.0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        self.n += x.size
        self.s += float(x.sum())
        self.ss += float(np.square(x).sum())

    @property
    def mean(self) -> float:
        return self.s / self.n

    @property
    def std(self) -> float:
        var = max(self.ss / self.n - self.mean**2, 0.0)
        return float(np.sqrt(var))


def load_model_input(path: str, size: int, version: str = contract.INPUT_CONTRACT) -> np.ndarray:
    """Contract steps 1-4 (of ``version``) for one file, exactly as the app does it; float32
    [0, 1]."""
    if Path(path).suffix.lower() in DICOM_SUFFIXES:
        from pneumoview.core import dicomio

        img = dicomio.decode(path)
        values, invert = img.values, img.invert
    else:
        values, invert = contract.load_plain_image(path), False
    try:
        return contract.model_input(values, invert, size, version)
    except ValueError as exc:
        raise PneumoViewError(str(exc), path) from exc


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def content_hash(hashes: list[str]) -> str:
    h = hashlib.sha256()
    for x in sorted(hashes):
        h.update(x.encode())
    return h.hexdigest()


def prepare(items: list[src_mod.Item], out: Path, size: int = contract.INPUT_SIZE,
            fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0,
            command: str = "", version: str = contract.INPUT_CONTRACT) -> dict:
    """Split, decode and cache; returns the ``prepared.json`` content."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    hashes = [src_mod.file_sha256(it.path) for it in items]
    groups = group_ids(items, hashes)
    splits = assign_splits(items, groups, fractions, seed)
    log.info("hashed and split %d images in %.1fs", len(items), time.time() - t0)
    with open(out / "splits.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["split", "source", "path", "label", "patient_id", "group", "sha256"])
        for it, s, g, h in zip(items, splits, groups, hashes, strict=True):
            w.writerow([s, it.source, it.path, it.label, it.patient_id, g, h])
    stats = RunningStats()
    counts: dict[str, dict] = {}
    failed: list[dict] = []
    for split in SPLITS:
        idx = [i for i, s in enumerate(splits) if s == split]
        arr = np.lib.format.open_memmap(out / f"images_{split}.npy", mode="w+", dtype=np.uint8,
                                        shape=(max(len(idx), 1), size, size))
        rows = []
        for k, i in enumerate(idx):
            it = items[i]
            try:
                x = load_model_input(it.path, size, version)
            except PneumoViewError as exc:
                log.warning("skipped (cannot decode): %s", exc)
                failed.append({"path": it.path, "reason": str(exc.reason)})
                continue
            u8 = to_uint8(x)
            arr[k] = u8
            if split == "train":
                stats.update(u8.astype(np.float32) / 255.0)
            rows.append([k, it.source, it.path, it.label, it.patient_id, groups[i]])
            if (k + 1) % 500 == 0:
                log.info("%s: %d/%d images", split, k + 1, len(idx))
        arr.flush()
        del arr
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["row", "source", "path", "label", "patient_id", "group"])
            w.writerows(rows)
        per: dict[str, dict[str, int]] = {}
        for r in rows:
            d = per.setdefault(r[1], {"n": 0, "positive": 0, "patients": 0})
            d["n"] += 1
            d["positive"] += int(r[3])
        for source in per:
            per[source]["patients"] = len({(r[1], r[4]) for r in rows if r[1] == source})
        counts[split] = per
    if stats.n == 0:
        raise PneumoViewError("the training split is empty; add data or change --fractions")
    by_source: dict[str, list[str]] = {}
    for it, h in zip(items, hashes, strict=True):
        by_source.setdefault(it.source, []).append(h)
    info = {
        "input_contract": version,
        "image_size": size,
        "mean": stats.mean,
        "std": stats.std,
        "seed": seed,
        "fractions": list(fractions),
        "counts": counts,
        "sources": {s: {"n_images": len(h), "content_sha256": content_hash(h)}
                    for s, h in by_source.items()},
        "content_sha256": content_hash(hashes),
        "failed": failed,
        "command": command,
    }
    (out / PREPARED_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info("prepared %d images in %.1fs; mean %.4f std %.4f; %d skipped", len(items) -
             len(failed), time.time() - t0, stats.mean, stats.std, len(failed))
    return info


def run(args: argparse.Namespace) -> int:
    items = src_mod.collect(args.folder, args.manifest, args.rsna,
                            tuple(s for s in args.negative_dirs.split(",") if s),
                            tuple(s for s in args.positive_dirs.split(",") if s),
                            args.reviews, args.reviews_root)
    fr = tuple(float(x) for x in args.fractions.split(","))
    if len(fr) != 3:
        raise PneumoViewError("--fractions needs three numbers: train,val,test")
    command = command_line(sys.argv[1:])  # paths relative to the checkout
    size = args.image_size or contract.spec(args.contract).default_size
    info = prepare(items, Path(args.out), size, fr, args.seed,  # type: ignore[arg-type]
                   command, args.contract)
    for split, per in info["counts"].items():
        for source, d in per.items():
            print(f"{split:5s} {source:10s} images {d['n']:5d}  positive {d['positive']:5d}  "
                  f"patients {d['patients']:5d}")
    print(f"mean {info['mean']:.5f}  std {info['std']:.5f}  -> {args.out}")
    return 0
