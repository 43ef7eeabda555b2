"""``python -m training oppoints``: give an exported model its population operating points.

The exporter chooses them for a model it writes (:mod:`training.export`); this command does
the same for a model folder that already exists (v1.0 was exported before population points
existed), on that model's OWN validation split:

1. The split is rebuilt from the model's recorded ``prepare`` command with the code that made
   it (:func:`training.splits.assign_splits`, same seed and fractions) and checked against the
   metadata: every source's content sha256 and every split's image, pneumonia and patient
   counts must match, or the command refuses (another split would choose on trained-on films).
2. The validation and test images are scored through the app's input path
   (:func:`training.evaluate.score_files`); probabilities use the model's own temperature.
3. Adult = a film whose manifest age is at least 18 years (the NIH films; the app's rule is
   :func:`pneumoview.core.oppoints.population_of`), paediatric = the Kermany films. Each
   population's threshold is the highest that reaches the target sensitivity on its own
   validation films; ``threshold`` becomes the unknown-age one (the lower).
4. Sensitivity and specificity with 95 % intervals (bootstrap over patients) at each point on
   validation and on the held-out test split (reported, never used for a choice) go into
   ``metrics``; the card is regenerated from the metadata. Weights (and so the gate tensors)
   are untouched; ``weights_sha256`` is checked before anything is written.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.oppoints import ADULT, ADULT_AGE_YEARS, PAEDIATRIC
from training import metrics as M
from training import oppoints
from training.provenance import CHECKOUT, command_line

log = logging.getLogger("training.oppoints")

#: The source whose films are children (every Kermany film is paediatric by its data set).
PAEDIATRIC_SOURCES = ("kermany",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="resources/model", help="model folder to update")
    p.add_argument("--target-sensitivity", type=float, default=None,
                   help="default: the model's target_sensitivity")
    p.add_argument("--adult-target-sensitivity", type=float, default=0.90)
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--dry-run", action="store_true", help="print the figures, write nothing")


@dataclass
class Film:
    source: str
    path: str
    label: int
    patient: str
    split: str
    age: float | None


class SplitMismatch(PneumoViewError):
    """The rebuilt split is not the one the model was trained and validated on."""


def recorded_prepare(meta: dict) -> argparse.Namespace:
    """The model's ``prepare`` arguments (paths relative to the checkout)."""
    from training.prepare import add_arguments as prepare_arguments

    line = (meta.get("command") or {}).get("prepare") or ""
    words = shlex.split(line)
    if words[:4] != ["python", "-m", "training", "prepare"]:
        raise PneumoViewError("the model records no `python -m training prepare` command, so "
                              "its split cannot be rebuilt")
    parser = argparse.ArgumentParser()
    prepare_arguments(parser)
    args = parser.parse_args(words[4:])
    where = lambda spec: spec if "=" in spec else str(CHECKOUT / spec)  # noqa: E731
    args.folder = [where(s) for s in args.folder]
    args.manifest = [where(s) for s in args.manifest]
    return args


def manifest_ages(manifests: list[str]) -> dict[str, float]:
    """Absolute image path -> age in years, from manifests with an ``age`` column."""
    from training.sources import parse_source_spec

    ages: dict[str, float] = {}
    for spec in manifests:
        csv_path = Path(parse_source_spec(spec, "manifest")[1]).resolve()
        with open(csv_path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if (row.get("age") or "").strip():
                    ages[str((csv_path.parent / row["image"]).resolve())] = float(row["age"])
    return ages


def rebuild_split(meta: dict) -> list[Film]:
    """Every film with its split, checked against the metadata's record of the split."""
    from training import sources as src_mod
    from training.splits import assign_splits, group_ids

    a = recorded_prepare(meta)
    items = src_mod.collect(a.folder, a.manifest, a.rsna,
                            tuple(s for s in a.negative_dirs.split(",") if s),
                            tuple(s for s in a.positive_dirs.split(",") if s))
    hashes = [src_mod.file_sha256(it.path) for it in items]
    data = meta["data"]
    fractions = tuple(float(x) for x in data["fractions"])
    splits = assign_splits(items, group_ids(items, hashes), fractions,  # type: ignore[arg-type]
                           int(data["split_seed"]))
    ages = manifest_ages(a.manifest)
    films = [Film(it.source, it.path, it.label, it.patient_id, s, ages.get(it.path))
             for it, s in zip(items, splits, strict=True)]
    check_split(films, hashes, data)
    return films


def check_split(films: list[Film], hashes: list[str], data: dict) -> None:
    from training.prepare import content_hash

    for name, rec in data["sources"].items():
        mine = [h for f, h in zip(films, hashes, strict=True) if f.source == name]
        if content_hash(mine) != rec["content_sha256"]:
            raise SplitMismatch(f"source {name!r}: its files differ from those the model was "
                                "trained on (content sha256)")
        for split, want in rec["splits"].items():
            fs = [f for f in films if f.source == name and f.split == split]
            got = {"n": len(fs), "positive": sum(f.label for f in fs),
                   "patients": len({f.patient for f in fs})}
            if got != {k: want[k] for k in got}:
                raise SplitMismatch(f"source {name!r}, split {split}: rebuilt {got}, the model "
                                    f"records {want}")


def population(film: Film) -> str | None:
    """The film's population by the app's rule (age first); Kermany films are children."""
    if film.age is not None:
        return ADULT if film.age >= ADULT_AGE_YEARS else PAEDIATRIC
    return PAEDIATRIC if film.source in PAEDIATRIC_SOURCES else None


class PointsStep:
    """The named steps: rebuild the split, score, choose, measure, write."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.model = Path(args.model)
        self.meta = json.loads((self.model / "metadata.json").read_text(encoding="utf-8"))
        self.targets = {ADULT: args.adult_target_sensitivity,
                        PAEDIATRIC: args.target_sensitivity
                        or float(self.meta["target_sensitivity"])}

    def score(self, films: list[Film]) -> None:
        from pneumoview.core.modelinfo import calibrated_probability
        from training import modelio
        from training.evaluate import score_files

        loaded = modelio.load(self.model, "cpu")  # verifies weights_sha256
        self.films = [f for f in films if f.split in ("val", "test")]
        logits = score_files(loaded, [f.path for f in self.films])
        self.p = calibrated_probability(logits, loaded.info.temperature)
        self.pop = np.asarray([population(f) or "" for f in self.films])
        self.y = np.asarray([f.label for f in self.films], dtype=np.int64)
        self.split = np.asarray([f.split for f in self.films])
        self.groups = np.asarray([f"{f.source}\0{f.patient}" for f in self.films])
        self.sources = np.asarray([f.source for f in self.films])

    def _mask(self, split: str, pop: str) -> np.ndarray:
        chosen = (self.sources != "kermany") if pop == ADULT else (self.sources == "kermany")
        return (self.split == split) & (self.pop == pop) & chosen

    def choose(self) -> dict[str, dict]:
        points: dict[str, dict] = {}
        for pop in (ADULT, PAEDIATRIC):
            m = self._mask("val", pop)
            srcs = ", ".join(sorted(set(self.sources[m])))
            t = M.threshold_for_sensitivity(self.y[m], self.p[m], self.targets[pop])
            points[pop] = {
                "threshold": t, "target_sensitivity": self.targets[pop],
                "criterion": oppoints.POPULATIONS[pop]["criterion"],
                "age_years": list(oppoints.POPULATIONS[pop]["age_years"]),
                "chosen_on": f"{srcs} validation split ({'age >= 18' if pop == ADULT else 'all'}"
                             f"), n={int(m.sum())}, {int(self.y[m].sum())} pneumonia"}
        self.points = points
        return points

    def figure(self, m: np.ndarray, threshold: float) -> dict:
        ci = M.bootstrap_ci(self.y[m], self.p[m], threshold, self.args.n_boot, 0,
                            groups=self.groups[m])
        point = M.summary(self.y[m], self.p[m], threshold)
        out = {k: point[k] for k in ("n", "prevalence", "auroc", "sensitivity", "specificity",
                                     "tp", "fp", "tn", "fn")}
        out["patients"] = len(set(self.groups[m]))
        out["threshold"] = threshold
        out["ci95"] = {k: [ci[k]["ci_low"], ci[k]["ci_high"]]
                       for k in ("auroc", "sensitivity", "specificity")}
        return out

    def measure(self) -> dict:
        """Each population at each point (its own, the other, the old single threshold)."""
        at = {f"{p} point": float(v["threshold"]) for p, v in self.points.items()}
        single = self.meta["metrics"].get("single_threshold") or {}
        at["single threshold"] = float(single.get("threshold", self.meta["threshold"]))
        out: dict = {}
        for split in ("val", "test"):
            for pop in (ADULT, PAEDIATRIC):
                m = self._mask(split, pop)
                out.setdefault(split, {})[pop] = {name: self.figure(m, t)
                                                  for name, t in at.items()}
        return out

    def by_source(self, split: str, unknown_age: bool = False) -> dict:
        """The exporter's per-source tables at each film's point (its population's by age,
        or the unknown-age one), so ``metrics["test"]`` says what the app does by default."""
        from training.evaluate import metrics_by_source

        m = self.split == split
        low = oppoints.unknown_age_threshold(self.points)
        thr = np.asarray([low if unknown_age or pop not in self.points
                          else float(self.points[pop]["threshold"]) for pop in self.pop[m]])
        out = metrics_by_source(self.y[m], self.p[m], list(self.sources[m]), thr,
                                self.args.n_boot if split == "test" else 0,
                                groups=list(self.groups[m]))
        for part, entry in out.items():
            entry["operating_point"] = ("unknown-age" if unknown_age else
                                        {"all": "per population", "kermany": PAEDIATRIC}.get(
                                            part, "by age (adult; under 18: paediatric)"))
        return out

    def write(self, figures: dict) -> dict:
        from pneumoview.core.model import sha256_file
        from training.card import model_card

        meta = self.meta
        if sha256_file(self.model / "model.safetensors") != meta["weights_sha256"]:
            raise PneumoViewError("the weights differ from the metadata's sha256", self.model)
        metrics = meta["metrics"]
        if "single_threshold" not in metrics:  # the first run: keep what v1.0 measured
            metrics["single_threshold"] = {
                "threshold": meta["threshold"],
                "note": "the model's one threshold before population operating points, and "
                        "its export's validation and test tables at that threshold",
                "validation": metrics.get("validation"), "test": metrics.get("test")}
        single = metrics["single_threshold"]["threshold"]
        for entry in (metrics.get("extra") or {}).values():
            entry.setdefault("operating_point", f"the single threshold {single:.4f}")
        metrics["validation"] = self.by_source("val")
        metrics["test"] = self.by_source("test")
        metrics["test_unknown_age"] = self.by_source("test", unknown_age=True)
        meta["operating_points"] = self.points
        meta["threshold"] = oppoints.unknown_age_threshold(self.points)
        meta["threshold_applies_to"] = (
            "calibrated probability sigmoid(logit / temperature); the threshold for films of "
            "unknown age (the lower of operating_points)")
        metrics["operating_points"] = figures
        meta["command"]["oppoints"] = command_line(sys.argv[1:]) \
            if sys.argv[1:2] == ["oppoints"] else "python -m training oppoints --model " \
            + str(self.args.model)
        text = json.dumps(meta, indent=2) + "\n"
        (self.model / "metadata.json").write_text(text, encoding="utf-8")
        (self.model / "MODEL_CARD.md").write_text(model_card(meta), encoding="utf-8")
        return meta


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    step = PointsStep(args)
    films = rebuild_split(step.meta)
    log.info("split rebuilt and checked: %d films", len(films))
    step.score(films)
    points = step.choose()
    figures = step.measure()
    for pop, v in points.items():
        print(f"operating point {pop:10s} {v['threshold']:.4f} ({v['chosen_on']})")
    for split, pops in figures.items():
        for pop, at in pops.items():
            for name, f in at.items():
                print(f"{split:4s} {pop:10s} @ {name:22s} n {f['n']:4d} sens "
                      f"{f['sensitivity']:.3f} ({f['ci95']['sensitivity'][0]:.3f}-"
                      f"{f['ci95']['sensitivity'][1]:.3f}) spec {f['specificity']:.3f} "
                      f"({f['ci95']['specificity'][0]:.3f}-{f['ci95']['specificity'][1]:.3f})")
    if not args.dry_run:
        step.write(figures)
        print(f"-> {args.model}/metadata.json and MODEL_CARD.md")
    return 0
