"""A model folder says how to make it again without this machine's paths: every path in the
recorded commands, training arguments and model card is relative to the checkout."""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from training.provenance import (
    CHECKOUT,
    command_line,
    portable_command,
    portable_path,
    portable_provenance,
)

BUNDLED = CHECKOUT / "resources" / "model"


def test_paths_become_relative_to_the_checkout(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    root.mkdir()
    assert portable_path(str(root / "runs" / "x"), root) == "runs/x"
    assert portable_path(str(tmp_path / "shared" / "data"), root) == "../shared/data"
    assert portable_path("runs/x", root) == "runs/x"  # already relative to the checkout
    for word in ("auto", "0.05", "--lr", "cosine", ""):
        assert portable_path(word, root, cwd=tmp_path) == word
    # a relative path given in another folder is relative to that folder, not the checkout
    assert portable_path("work/run", root, cwd=tmp_path) == "../work/run"
    line = portable_command(f"python -m training export --run {root}/runs/a --extra-folder "
                            f"kermany_val={tmp_path}/shared/k --threads 2", root)
    assert line == ("python -m training export --run runs/a --extra-folder "
                    "kermany_val=../shared/k --threads 2")
    assert command_line(["train", "--data", str(root / "c d")], root, cwd=root) == \
        "python -m training train --data 'c d'"
    nested = portable_provenance({"path": f"{root}/s1/model.safetensors",
                                  "command": {"train": f"python -m training train --data {root}/c"},
                                  "training": {"epochs": 3, "args": {"data": f"{root}/c",
                                                                     "lr": 0.1}},
                                  "init_from": {"path": "/elsewhere/m.safetensors"}}, root)
    assert nested["path"] == "s1/model.safetensors"
    assert nested["command"]["train"] == "python -m training train --data c"
    assert nested["training"] == {"epochs": 3, "args": {"data": "c", "lr": 0.1}}
    assert not nested["init_from"]["path"].startswith("/")


def _no_absolute_paths(text: str, *paths: Path) -> None:
    """None of ``paths`` written as an absolute path (``../../tmp/x`` is a relative one)."""
    for path in paths:
        found = re.search(r"(?<![.\w])" + re.escape(str(path)), text)
        assert found is None, f"{path} recorded: ...{text[found.start() - 40:found.end()]}"


@pytest.mark.skipif(not (BUNDLED / "metadata.json").is_file(), reason="no bundled model")
def test_bundled_model_folder_records_no_machine_paths() -> None:
    meta = json.loads((BUNDLED / "metadata.json").read_text())
    card = (BUNDLED / "MODEL_CARD.md").read_text()

    def strings(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)
        elif isinstance(value, str):
            yield value

    for field in ("command", "training", "init_from"):
        for text in strings(meta[field]):
            for word in text.split():
                assert not os.path.isabs(word.split("=")[-1]), (field, word)
    assert "/work/" not in card and "/home/" not in card
    out = meta["command"]["export"].split("--out ")[1].split()[0]
    assert not os.path.isabs(out) and out.endswith("model"), out
    from training.export import model_card

    assert model_card(meta) == card  # the card is what the exporter writes for this metadata


def _images(folder: Path, n: int = 24) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label", "patient_id"])
        for i in range(n):
            label = i % 2
            img = rng.normal(90 + 60 * label, 25, (40, 40)).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{i}.png")
            w.writerow([f"{i}.png", label, f"p{i}"])
    return folder / "labels.csv"


def _cli(monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
    from training.__main__ import main

    monkeypatch.setattr(sys, "argv", ["training", *argv])  # each step records its own line
    assert main(list(argv)) == 0


@pytest.mark.slow
def test_exporter_records_commands_relative_to_the_checkout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stages, as the bundled recipe: absolute paths and paths relative to another
    folder must both come out relative to the checkout, in metadata.json and the card."""
    pytest.importorskip("torch")
    import torch

    torch.set_num_threads(1)
    work = tmp_path / "work"
    manifest = _images(work / "images")
    monkeypatch.chdir(tmp_path)  # not the checkout: relative paths are relative to here
    train = ["--epochs", "1", "--max-steps", "2", "--batch-size", "8", "--threads", "1",
             "--device", "cpu"]
    _cli(monkeypatch, "prepare", "--manifest", str(manifest), "--out", "work/cache",
         "--image-size", "32", "--fractions", "0.5,0.25,0.25", "--seed", "0")
    _cli(monkeypatch, "train", "--data", str(work / "cache"), "--output-dir", "work/run", *train)
    _cli(monkeypatch, "export", "--run", "work/run", "--out", str(work / "stage1"),
         "--n-boot", "20", "--threads", "1")
    _cli(monkeypatch, "train", "--data", "work/cache", "--output-dir", str(work / "run2"),
         "--init", str(work / "stage1" / "model.safetensors"), *train)
    _cli(monkeypatch, "export", "--run", str(work / "run2"), "--out", "work/model",
         "--n-boot", "20", "--threads", "1", "--plots-dir", str(work / "plots"))

    model = work / "model"
    text = (model / "metadata.json").read_text()
    card = (model / "MODEL_CARD.md").read_text()
    _no_absolute_paths(text, tmp_path)
    _no_absolute_paths(card, tmp_path)
    rel = Path(os.path.relpath(work, CHECKOUT)).as_posix()
    meta = json.loads(text)
    assert meta["command"]["prepare"] == (
        f"python -m training prepare --manifest {rel}/images/labels.csv --out {rel}/cache "
        "--image-size 32 --fractions 0.5,0.25,0.25 --seed 0")
    assert f"--data {rel}/cache --output-dir {rel}/run2 --init " \
        f"{rel}/stage1/model.safetensors" in meta["command"]["train"]
    assert meta["command"]["export"].startswith(f"python -m training export --run {rel}/run2 "
                                                f"--out {rel}/model")
    assert meta["training"]["args"]["output_dir"] == f"{rel}/run2"
    assert meta["training"]["args"]["init"] == f"{rel}/stage1/model.safetensors"
    assert meta["init_from"]["path"] == f"{rel}/stage1/model.safetensors"
    assert meta["init_from"]["command"]["export"].startswith(
        f"python -m training export --run {rel}/run --out {rel}/stage1")
    assert f"--output-dir {rel}/run " in card and f"--out {rel}/model" in card
    # only paths changed: the model is the one trained, and it loads
    from pneumoview.core import model as pm

    pm.verify_weights(pm.read_model_info(model))
