"""``python -m training export``: calibrate on validation, measure on test, write a model folder.

1. The chosen checkpoint (default: best validation AUROC; the EMA of the weights when the run
   kept one) is written as a model folder and loaded back through the contract's input path
   (:mod:`training.modelio`), so every number below comes from what the app computes.
2. Validation: the run's validation images, or, with ``--oof``, the cache's validation split
   with the cross-validated (adult) sources replaced by their out-of-fold predictions. The
   temperature minimises the NLL over all of them; each population (adult, paediatric) gets an
   operating point: the threshold on the calibrated probability that reaches the target
   sensitivity (default 0.90) on its own validation images (metadata ``operating_points``);
   ``threshold`` is the unknown-age one (the lower).
3. Test split, never used for any choice: AUROC, sensitivity and specificity at each source's
   population operating point (and at the unknown-age threshold), calibration error, bootstrap
   95 % intervals over patients, per source; with ``--compare``, an earlier model on the same
   test images and the paired AUROC difference.
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
from training import oppoints
from training.card import SOURCE_NOTES, fmt_ci, model_card
from training.provenance import (
    command_line,
    portable_args,
    portable_commands,
    portable_path,
    portable_provenance,
)

__all__ = ["SOURCE_NOTES", "add_arguments", "export", "model_card", "run"]

log = logging.getLogger("training.export")

NAME = "pneumoview-resnet18"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="training output folder (checkpoints)")
    p.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint path")
    p.add_argument("--weights", choices=("auto", "raw", "ema"), default="auto",
                   help="auto: the EMA of the weights when the run kept one")
    p.add_argument("--data", default=None, help="prepared cache (default: the run's)")
    p.add_argument("--out", required=True, help="model folder to write (e.g. resources/model)")
    p.add_argument("--target-sensitivity", type=float, default=0.90)
    p.add_argument("--name", default=NAME)
    p.add_argument("--version", default="1.0")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--oof", default=None, metavar="CSV",
                   help="out-of-fold predictions (python -m training cv): validation scores "
                   "of the sources they cover (the final model trained on those images)")
    p.add_argument("--cv-summary", default=None, metavar="JSON", help="cv.json to record")
    p.add_argument("--search-summary", default=None, metavar="JSON",
                   help="search.json (python -m training search) for the model card")
    p.add_argument("--stage-log", default=None, metavar="JSON",
                   help="reproduce's stages.json (stage times for the card)")
    p.add_argument("--compare", default=None, metavar="MODEL_DIR",
                   help="an earlier model to score on the same test images (before/after)")
    p.add_argument("--compare-data", default=None, metavar="CACHE",
                   help="prepared cache at the earlier model's contract and size")
    p.add_argument("--skip-test", action="store_true",
                   help="do not score the test split (intermediate models)")
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


class Scores:
    """Labels, logits, sources and patients of a set of images (one model's view)."""

    def __init__(self, labels, logits, sources, patients, paths) -> None:  # noqa: ANN001
        self.labels = np.asarray(labels, dtype=np.int64)
        self.logits = np.asarray(logits, dtype=np.float64)
        self.sources = list(sources)
        self.patients = [f"{s}\0{p}" for s, p in zip(self.sources, patients, strict=True)]
        self.paths = list(paths)

    @classmethod
    def of_index(cls, logits: np.ndarray, index) -> Scores:  # noqa: ANN001
        return cls(index.labels, logits, index.sources, index.patient_ids, index.paths)

    def without(self, sources: set[str]) -> Scores:
        keep = [i for i, s in enumerate(self.sources) if s not in sources]
        return Scores(self.labels[keep], self.logits[keep], [self.sources[i] for i in keep],
                      [self.patients[i].split("\0", 1)[1] for i in keep],
                      [self.paths[i] for i in keep])

    def __add__(self, other: Scores) -> Scores:
        pid = [x.split("\0", 1)[1] for x in self.patients + other.patients]
        return Scores(np.r_[self.labels, other.labels], np.r_[self.logits, other.logits],
                      self.sources + other.sources, pid, self.paths + other.paths)


class Exporter:
    """The export's named steps: load, score, calibrate, measure, compare, write."""

    def __init__(self, args: argparse.Namespace) -> None:
        from training.train import BEST, CHECKPOINT, exported_state, load_checkpoint

        self.args = args
        run_dir = Path(args.run)
        path = {"best": run_dir / BEST, "last": run_dir / CHECKPOINT}.get(args.checkpoint,
                                                                        Path(args.checkpoint))
        self.ck = load_checkpoint(path)
        self.state = exported_state(self.ck, args.weights)
        self.data_dir = Path(args.data or self.ck["args"]["data"])
        self.prepared = self.ck["prepared"]
        self.size = int(self.ck["image_size"])
        if self.size != int(self.prepared["image_size"]):
            raise PneumoViewError(f"the run trained at {self.size} px on a "
                                  f"{self.prepared['image_size']} px cache; export needs the "
                                  "cache size (app inputs are not resized)")
        norm = self.ck.get("normalisation") or self.prepared
        base = {
            "name": args.name, "version": args.version, "architecture": _architecture(),
            "input_contract": self.prepared.get("input_contract", "pv-input-1"),
            "input_size": self.size, "mean": float(norm["mean"]), "std": float(norm["std"]),
            "temperature": 1.0, "threshold": 0.5, "target_sensitivity": args.target_sensitivity,
        }
        self.base = base

    # ------------------------------------------------------------------ scoring
    def score(self) -> None:
        from pneumoview.core.model import write_model_dir
        from training import modelio
        from training.evaluate import score_cache

        a = self.args
        with tempfile.TemporaryDirectory() as tmp:
            provisional = write_model_dir(Path(tmp) / "m", self.state, self.base)
            loaded = modelio.load(provisional, a.device)
            self.val = self._validation(loaded)
            self.test = None
            if not a.skip_test:
                lg, idx = score_cache(loaded, self.data_dir, "test")
                self.test = Scores.of_index(lg, idx)
            self.extra = {}
            for spec in a.extra_folder:
                self.extra.update(score_folder(loaded, spec))

    def _validation(self, loaded) -> Scores:  # noqa: ANN001
        from training.evaluate import score_cache

        if not self.args.oof:
            split = self.ck["args"].get("val_index") or self.ck["args"].get("val_split", "val")
            lg, idx = score_cache(loaded, self.data_dir, split)
            return Scores.of_index(lg, idx)
        from training.cv import read_oof

        oof = read_oof(self.args.oof)
        lg, idx = score_cache(loaded, self.data_dir, "val")
        rest = Scores.of_index(lg, idx).without(set(oof["source"]))
        return rest + Scores(oof["label"], oof["logit"], oof["source"], oof["patient_id"],
                             oof["path"])

    # ------------------------------------------------------------------ calibration
    def calibrate(self) -> None:
        from pneumoview.core.model import calibrated_probability

        v = self.val
        self.temperature = M.fit_temperature(v.labels, v.logits)
        p = calibrated_probability(v.logits, self.temperature)
        chosen_on = self._chosen_on()
        self.points = oppoints.choose(v.labels, p, v.sources, self.args.target_sensitivity,
                                      chosen_on)
        if self.points:
            self.threshold = oppoints.unknown_age_threshold(self.points)
        else:  # sources of no known population: one threshold on all of validation
            self.threshold = M.threshold_for_sensitivity(v.labels, p,
                                                         self.args.target_sensitivity)

    def _chosen_on(self) -> dict[str, str]:
        v, out = self.val, {}
        oof_sources = set()
        if self.args.oof:
            from training.cv import read_oof

            oof_sources = set(read_oof(self.args.oof)["source"])
        for pop in oppoints.POPULATIONS:
            srcs = sorted({s for s in v.sources if oppoints.population_of(s) == pop})
            n = sum(oppoints.population_of(s) == pop for s in v.sources)
            if not srcs:
                continue
            how = ("out-of-fold predictions (cross-validation)" if set(srcs) <= oof_sources
                   else "the validation split")
            out[pop] = f"{', '.join(srcs)} {how}, n={n}"
        return out

    def thresholds(self, sources: list[str]) -> np.ndarray:
        if not self.points:
            return np.full(len(sources), self.threshold)
        return oppoints.per_image(sources, self.points)

    # ------------------------------------------------------------------ metrics
    def measure(self) -> dict:
        from pneumoview.core.model import calibrated_probability
        from training.evaluate import metrics_by_source

        nb = self.args.n_boot
        out: dict = {}
        for name, sc, boot in (("validation", self.val, 0), ("test", self.test, nb)):
            if sc is None:
                continue
            p = calibrated_probability(sc.logits, self.temperature)
            out[name] = self._label(metrics_by_source(
                sc.labels, p, sc.sources, self.thresholds(sc.sources), boot,
                groups=sc.patients), sc.sources)
            if self.points and len(self.points) > 1:
                out[f"{name}_unknown_age"] = self._label(metrics_by_source(
                    sc.labels, p, sc.sources, self.threshold, boot, groups=sc.patients),
                    None)
        extra = {}
        for name, (lg, y) in self.extra.items():
            p = calibrated_probability(lg, self.temperature)
            thr = self.thresholds([name])[0]
            s = M.summary(y, p, thr)
            extra[name] = {k: s[k] for k in ("n", "prevalence", "auroc", "sensitivity",
                                              "specificity", "ece")}
            extra[name]["operating_point"] = oppoints.population_of(name) or "unknown-age"
        out["extra"] = extra
        return out

    def _label(self, metrics: dict, sources: list[str] | None) -> dict:
        """Name the operating point each part was measured at."""
        for part, m in metrics.items():
            if sources is None:
                m["operating_point"] = "unknown-age"
            elif part == "all":
                m["operating_point"] = "per population" if self.points else "threshold"
            else:
                pop = oppoints.population_of(part)
                m["operating_point"] = pop if pop in self.points else "unknown-age"
        return metrics

    def compare(self) -> dict | None:
        """The earlier model on the same test images, at its own threshold(s)."""
        a = self.args
        if not a.compare or self.test is None:
            return None
        from pneumoview.core.model import calibrated_probability
        from training import modelio
        from training.evaluate import metrics_by_source, score_cache, thresholds

        old = modelio.load(a.compare, a.device)
        lg, idx = score_cache(old, a.compare_data or self.data_dir, "test")
        before = Scores.of_index(lg, idx)
        order = {pth: i for i, pth in enumerate(before.paths)}
        if sorted(order) != sorted(self.test.paths):
            raise PneumoViewError("--compare-data's test split holds other images than this "
                                  "model's test split", a.compare_data)
        pick = [order[pth] for pth in self.test.paths]
        p_old = calibrated_probability(before.logits[pick], old.info.temperature)
        src = self.test.sources
        thr = thresholds(old.info, src, None, "by-source")
        test = metrics_by_source(self.test.labels, p_old, src, thr, a.n_boot,
                                 groups=self.test.patients)
        diff = {}
        groups = np.asarray(self.test.patients)
        for part in test:
            m = np.ones(len(src), bool) if part == "all" else np.asarray(src) == part
            d = M.auroc_difference(self.test.labels[m], self.test.logits[m],
                                   before.logits[pick][m], a.n_boot, groups=groups[m])
            diff[part] = d
        return {"model": old.info.label, "weights_sha256": old.info.weights_sha256,
                "input_contract": old.info.input_contract, "input_size": old.info.input_size,
                "test": test, "auroc_difference": diff}

    # ------------------------------------------------------------------ metadata
    def metadata(self, metrics: dict) -> dict:
        import sys

        ck, a = self.ck, self.args
        counts = self.prepared["counts"]
        sources = {}
        for name, d in self.prepared["sources"].items():
            sources[name] = {"content_sha256": d["content_sha256"], "n_images": d["n_images"],
                             "splits": {s: counts[s][name] for s in counts if name in counts[s]}}
        export_cmd = command_line(sys.argv[1:]) if sys.argv[1:2] == ["export"] \
            else "python -m training export"
        if a.cv_summary:
            metrics["cross_validation"] = _read_json(a.cv_summary)
        comparison = self.compare()
        if comparison:
            metrics["comparison"] = comparison
        training = {"epochs": int(ck["args"]["epochs"]), "best_epoch": int(ck["best_epoch"]),
                    "exported_epoch": int(ck["epoch"]),
                    "exported_weights": "ema" if self.state is ck.get("model_ema") else "raw",
                    "val_auroc": float(ck["row"]["val_auroc"]), "seed": int(ck["args"]["seed"]),
                    "args": portable_args({k: v for k, v in ck["args"].items()
                                           if isinstance(v, str | int | float | bool)},
                                          cwd=Path.cwd()),
                    "torch_version": ck.get("torch_version"),
                    "precision": ck.get("precision") or _legacy_precision(ck["args"])}
        if a.stage_log and Path(a.stage_log).is_file():
            from training.reproduce import totals

            training["stage_times"] = totals(_read_json(a.stage_log))
        if a.search_summary:
            training["search"] = _read_json(a.search_summary)
        command = {"prepare": self.prepared.get("command", ""),
                   "train": re.sub(r"^\S*python\S*", "python", ck.get("command", "")),
                   "export": export_cmd}
        if metrics.get("cross_validation"):
            cv = metrics["cross_validation"]
            command["cv"] = (f"python -m training cv --data {cv['data']} --base {cv['base']} "
                             f"--config {cv['config']} --folds {cv['folds']}")
        meta = {
            **self.base,
            "temperature": self.temperature,
            "threshold": self.threshold,
            "threshold_applies_to": "calibrated probability sigmoid(logit / temperature); "
                                    + ("the threshold for films of unknown age (the lower of "
                                       "operating_points)" if self.points else "all films"),
            "metrics": metrics,
            "data": {"sources": sources, "content_sha256": self.prepared["content_sha256"],
                     "split_seed": self.prepared["seed"],
                     "fractions": self.prepared["fractions"]},
            "training": training,
            "seed": int(ck["args"]["seed"]),
            "command": portable_commands(command),
            "init_from": _init_provenance(ck["args"].get("init") or ""),
            "versions": _versions(),
            "git_commit": _git_commit(),
            "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if self.points:
            meta["operating_points"] = self.points
        return meta

    # ------------------------------------------------------------------ writing
    def write(self, meta: dict) -> dict:
        from pneumoview.core.model import write_model_dir

        out = Path(self.args.out)
        if out.exists() and any(out.iterdir()) and not (out / "metadata.json").exists():
            raise PneumoViewError("refusing to write into a non-empty folder that is not a "
                                  "model folder", out)
        staging = out.parent / (out.name + ".export-tmp")
        if staging.exists():
            shutil.rmtree(staging)
        write_model_dir(staging, self.state, meta, None)
        meta = json.loads((staging / "metadata.json").read_text(encoding="utf-8"))
        (staging / "MODEL_CARD.md").write_text(model_card(meta), encoding="utf-8")
        out.mkdir(parents=True, exist_ok=True)
        for f in staging.iterdir():
            os.replace(f, out / f.name)
        staging.rmdir()
        return meta

    def plots(self, meta: dict) -> None:
        from pneumoview.core.model import calibrated_probability
        from training.evaluate import plot

        if not self.args.plots_dir or self.test is None:
            return
        Path(self.args.plots_dir).mkdir(parents=True, exist_ok=True)
        p = calibrated_probability(self.test.logits, self.temperature)
        plot(self.test.labels, p, self.test.sources, Path(self.args.plots_dir),
             f"{meta['name']} {meta['version']} (test split)")


def _architecture() -> str:
    from pneumoview.core.model import ARCHITECTURE

    return ARCHITECTURE


def _read_json(path: str | Path) -> object:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _legacy_precision(args: dict) -> dict:
    """Runs made before the precision choice was recorded: ``--amp`` meant bf16."""
    dtype = "bf16" if args.get("amp") else "fp32"
    return {"dtype": dtype, "requested": dtype, "reason": "recorded from --amp"}


def score_folder(loaded, spec: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # noqa: ANN001
    from training.evaluate import score_files
    from training.sources import parse_source_spec, read_folder

    name, root = parse_source_spec(spec, "folder")
    items = read_folder(root, name)
    return {items[0].source: (score_files(loaded, [it.path for it in items]),
                              np.asarray([it.label for it in items]))}


def export(args: argparse.Namespace) -> dict:
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ex = Exporter(args)
    ex.score()
    ex.calibrate()
    meta = ex.write(ex.metadata(ex.measure()))
    if getattr(args, "gate", None):
        from training.gate.attach import attach_gate

        attach_gate(args.out, args.gate)
        meta = json.loads((Path(args.out) / "metadata.json").read_text(encoding="utf-8"))
    ex.plots(meta)
    return meta


def run(args: argparse.Namespace) -> int:
    meta = export(args)
    print(f"temperature {meta['temperature']:.4f}  threshold {meta['threshold']:.4f} "
          f"(target sensitivity {meta['target_sensitivity']:.2f} on validation)")
    for pop, op in (meta.get("operating_points") or {}).items():
        print(f"operating point {pop:10s} {op['threshold']:.4f} ({op.get('chosen_on', '')})")
    for part, m in (meta["metrics"].get("test") or {}).items():
        print(f"test {part:8s} n {m['n']:4d} prev {m['prevalence']:.3f}  AUROC "
              f"{fmt_ci(m, 'auroc')}  sens {fmt_ci(m, 'sensitivity')}  "
              f"spec {fmt_ci(m, 'specificity')}  ECE {fmt_ci(m, 'ece')}  "
              f"@{m.get('operating_point', '')}")
    for part, d in (meta["metrics"].get("comparison") or {}).get("auroc_difference",
                                                                 {}).items():
        print(f"AUROC change vs {meta['metrics']['comparison']['model']} on {part}: "
              f"{d['value']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f})")
    for name, m in meta["metrics"]["extra"].items():
        print(f"extra {name}: n {m['n']} AUROC {m['auroc']:.3f} sens {m['sensitivity']:.3f} "
              f"spec {m['specificity']:.3f}")
    print(f"-> {args.out} (weights sha256 {meta['weights_sha256'][:16]}...)")
    return 0
