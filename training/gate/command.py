"""``python -m training gate``: train the input gate on a frozen backbone, write a gate folder.

    python -m training gate --model resources/model --out runs/gate/gate
    python -m training gate --model runs/x/model --out runs/gate/gate --attach runs/x/model

Steps: collect the films (split by patient as ``prepare`` does, or as ``--prepared`` says) and
the offline negatives; extract features of every example once (cached under ``--work``);
fit the heads, the atypicality and the thresholds; write ``--out`` (``gate.safetensors`` +
``gate.json``); with ``--attach DIR``, also write the model folder DIR = ``--model`` plus the
gate (:func:`training.gate.attach.attach_gate`). Deterministic for a given ``--seed`` and
backbone; nothing is downloaded. ``python -m training export --gate GATE_DIR`` attaches a gate
while exporting.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from pneumoview.core.errors import PneumoViewError

log = logging.getLogger("training.gate")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    p.add_argument("--out", required=True, help="gate folder to write")
    p.add_argument("--attach", default=None, metavar="MODEL_OUT",
                   help="also write MODEL_OUT = --model with this gate attached")
    p.add_argument("--data-root", default="../shared/data",
                   help="folder with kermany/ and nih/ (as for reproduce)")
    p.add_argument("--prepared", default=None,
                   help="a prepared cache whose splits.csv gives the splits (default: the "
                        "split prepare makes with the model's seed and fractions)")
    p.add_argument("--work", default="runs/gate", help="feature cache folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true",
                   help="tiny sets (plumbing tests only; the gate is not usable)")
    p.add_argument("--allow-missing-sources", action="store_true",
                   help="fit even when a negative source's package is not installed (the "
                        "gate then differs from one fitted with every source)")


def load_backbone(model: str | None, device: str, threads: int):  # noqa: ANN201
    import torch

    from pneumoview.core.model import load_model

    if threads > 0:
        torch.set_num_threads(threads)
    return load_model(model, device)


def collect(args: argparse.Namespace, loaded):  # noqa: ANN001, ANN201
    """(films, negative pictures) for this backbone's data split."""
    from training.gate.sources import chest_films, negative_images

    data = loaded.info.raw.get("data") or {}
    fractions = tuple(data.get("fractions") or (0.7, 0.15, 0.15))
    films = chest_films(args.data_root, int(data.get("split_seed", 0)), fractions,
                        args.prepared)
    negatives = negative_images()
    return films, negatives


def provenance(recipe, loaded, store, command: str) -> dict:  # noqa: ANN001
    """The non-behavioural record of how the gate was made (``gate_training``)."""
    from collections import Counter

    from training.gate.draw import font_files
    from training.gate.features import backbone_id

    neg = recipe.sets["negatives"]
    return {
        "command": command,
        "seed": recipe.seed,
        "backbone_id": backbone_id(loaded),
        "backbone_weights_sha256": loaded.info.weights_sha256,
        "sets": {k: len(v) for k, v in recipe.sets.items()},
        "negative_groups": dict(sorted(Counter(s.group for s in neg).items())),
        "negative_pictures": sorted({b.name for b in recipe.negatives}),
        "fonts": font_files(),
    }


class MissingSourcesError(PneumoViewError):
    """A negative source's package is not installed, so the gate would be fitted on less."""


def check_sources(negatives: list, allow: bool) -> None:  # list[BaseImage]
    """Refuse (or, when allowed, warn) when a negative source contributes no picture."""
    from training.gate.sources import missing_sources

    missing = missing_sources(negatives)
    if not missing:
        return
    names = ", ".join(d for d, _ in missing)
    hint = "; ".join(h for _, h in missing)
    if allow:
        log.warning("negative sources missing (%s): the gate is fitted without them", names)
        return
    raise MissingSourcesError(
        f"the input gate's negative sources are not all installed ({names}): {hint} "
        "(or pass --allow-missing-sources to fit a gate without them)")


def train_gate(args: argparse.Namespace) -> tuple[object, object, object, object]:
    """Collect, extract and fit: (recipe, fitted gate, loaded backbone, store)."""
    from training.gate.features import FeatureStore
    from training.gate.fit import QUICK, Budget, GateRecipe

    loaded = load_backbone(args.model, args.device, args.threads)
    films, negatives = collect(args, loaded)
    check_sources(negatives, args.allow_missing_sources or args.quick)
    budget = QUICK if args.quick else Budget()
    budget = replace(budget)
    recipe = GateRecipe(films, negatives, budget, args.seed)
    store = FeatureStore(loaded, args.work)
    t0 = time.time()
    recipe.extract(store)
    log.info("features ready in %.0fs", time.time() - t0)
    return recipe, recipe.fit(), loaded, store


def validation_summary(recipe, fitted) -> dict:  # noqa: ANN001
    """Refused shares on the validation sets under the fitted gate (the choice's evidence)."""
    from training.gate.judge import judge_features

    out = {}
    for name in ("val_clean", "val_degraded", "val_rotated", "val_inverted"):
        kinds = judge_features(fitted, recipe.features[name])
        out[name] = {"n": len(kinds), "refused": float(np.mean([k != "passed" for k in kinds]))}
    return out


def run(args: argparse.Namespace) -> int:
    from training.gate.attach import attach_gate, write_gate_dir

    command = " ".join(shlex.quote(a) for a in ["python", "-m", "training", *sys.argv[1:]]) \
        if sys.argv[1:2] == ["gate"] else "python -m training gate"
    recipe, fitted, loaded, store = train_gate(args)
    training = provenance(recipe, loaded, store, command)
    training["validation"] = validation_summary(recipe, fitted)
    out = write_gate_dir(args.out, fitted.tensors, fitted.metadata, training)
    print(json.dumps(training["validation"], indent=1))
    for name, h in fitted.metadata["heads"].items():
        print(f"{name:12s} classes {h['classes']}  refuse below {h['refuse_below']:.4f}")
    a = fitted.metadata["atypicality"]
    print(f"atypicality  refuse above {a['refuse_above']:.3f} "
          f"(validation percentile {a['refuse_above_percentile']:.1f})")
    print(f"-> {out}")
    if args.attach:
        print(f"-> {attach_gate(args.model or _bundled(), out, args.attach)}")
    return 0


def _bundled() -> Path:
    from pneumoview.core.resources import bundled_model_dir

    return bundled_model_dir()
