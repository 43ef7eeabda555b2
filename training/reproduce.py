"""``python -m training reproduce``: the bundled checkpoint from the public data, in one command.

Model 1.1's recipe (:mod:`training.recipe`), stage by stage; each stage is skipped when its
output is complete and resumes from its last checkpoint when interrupted, so the command can
simply be run again after a session ends:

1. ``prepare``: the 224 px ``pv-input-1`` cache (v1.0's contract, size and patient split; the
   earlier model is scored on the same cache's test images).
2. ``stage1``: ResNet18 from scratch on the Kermany and NIH training splits with the
   orientation task, then exported without test figures (``WORK/stage1-model``, stage 2's
   ``--init``).
3. ``stage2``: the short, source-balanced second stage from stage 1.
4. ``export``: temperature on validation, population operating points (adult: sensitivity
   0.90 on the NIH validation films; paediatric: 0.90 on Kermany validation), held-out test
   metrics with patient-bootstrap intervals, the earlier model on the same test images (paired
   differences), the model card.
5. ``gate``: the input gate's heads on the final backbone (``python -m training gate``, from
   the ``training.gate`` package), attached to the model folder.
6. ``oppoints``: the population operating points again by the app's own rule (adult = a film
   whose manifest age is at least 18, :mod:`training.pointscmd`), replacing the exporter's
   by-source choice (9 of the 74 NIH validation films are children); after the gate, because
   attaching it rewrites the metadata, and before the figures, whose flag counts use them.
7. ``gate-figures``: the gate's figures (``python -m training gate-eval --record``: real films,
   the DICOM test set through the app's path, leave one source out) into the model's record
   and card. Both gate stages share one feature cache (``WORK/gate-work``).
8. ``int8``: the int8 graph for ``--precision int8`` (``python -m training quantize``: NNCF on
   training films, kept only if it passes the accuracy guard), last, because it is bound to
   the final weights (a gate attached after it would make it stale). Skipped, with a warning,
   when nncf is not installed (the ``quantize`` extra): the folder is complete without it.

Stage times (wall and CPU) are appended to ``WORK/stages.json``. ``--data-root`` is a folder
laid out like ``../shared/data`` (``kermany/train/{NORMAL,PNEUMONIA}``, ``kermany/val``,
``nih/labels.csv`` + ``nih/images``). Hyperparameter search is a separate command
(``python -m training search``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pneumoview.core.errors import PneumoViewError
from training import recipe as R

log = logging.getLogger("training.reproduce")

STAGES = ("prepare", "stage1", "stage2", "export", "gate", "oppoints", "gate-figures", "int8")
STAGE_LOG = "stages.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default="../shared/data",
                   help="folder with kermany/train, kermany/val and nih/labels.csv")
    p.add_argument("--work", default="runs/bundled", help="caches, checkpoints and logs go here")
    p.add_argument("--out", default=None,
                   help="model folder to write (default: WORK/model; the app bundles "
                        "resources/model)")
    p.add_argument("--compare", default="resources/model",
                   help="earlier model scored on the same held-out test images ('' : none)")
    p.add_argument("--stop-after", choices=STAGES, default=None,
                   help="end after this stage (the next run continues from there)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")


def prepare_argv(root: Path, out: Path, size: int) -> list[str]:
    """``prepare`` of the public data at SIZE (the contract :func:`recipe.contract_for` names),
    v1.0's patient split (seed 0)."""
    return ["prepare", "--folder", str(root / "kermany" / "train"), "--manifest",
            str(root / "nih" / "labels.csv"), "--out", str(out), "--image-size", str(size),
            "--contract", R.contract_for(size), "--seed", "0"]


class Plan:
    """Paths and command lines of every stage."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.root, self.work = Path(args.data_root), Path(args.work)
        self.out = Path(args.out) if args.out else self.work / "model"
        self.threads = ["--threads", str(args.threads)] if args.threads else []
        self.device = args.device
        self.compare = args.compare
        self.data = self.cache(R.SIZE)
        self.stage1_run, self.stage1_model = self.work / "stage1", self.work / "stage1-model"
        self.stage2_run = self.work / "stage2"
        # the earlier model as it was when this run first exported: with --out equal to
        # --compare (the bundled folder), a resumed run must not compare the new model with itself
        self.compare_copy = self.work / "compare-model"

    def cache(self, size: int) -> Path:
        return self.work / f"data{size}"

    def prepare(self, size: int) -> list[str]:
        return prepare_argv(self.root, self.cache(size), size)

    def stage1_train(self) -> list[str]:
        return ["train", "--data", str(self.data), "--output-dir", str(self.stage1_run),
                *R.STAGE1_ARGS, "--device", self.device, *self.threads]

    def stage1_export(self) -> list[str]:
        return ["export", "--run", str(self.stage1_run), "--out", str(self.stage1_model),
                "--version", f"{R.VERSION}-stage1", "--n-boot", "0", "--skip-test",
                *self.threads]

    def stage2_train(self) -> list[str]:
        return ["train", "--data", str(self.data), "--output-dir", str(self.stage2_run),
                "--init", str(self.stage1_model / "model.safetensors"), *R.STAGE2_ARGS,
                "--device", self.device, *self.threads]

    def export(self) -> list[str]:
        argv = ["export", "--run", str(self.stage2_run), "--out", str(self.out), "--version",
                R.VERSION, "--extra-folder", f"kermany_val={self.root / 'kermany' / 'val'}",
                "--plots-dir", str(self.work / "plots"), "--stage-log",
                str(self.work / STAGE_LOG), *self.threads]
        if self.compare:
            argv += ["--compare", str(self.compare_copy), "--compare-data",
                     str(self.cache(compare_size(self.compare_copy)))]
        return argv

    def gate(self) -> list[str]:
        return ["gate", "--model", str(self.out), "--out", str(self.work / "gate"),
                "--attach", str(self.out), *self._gate_data()]

    def gate_figures(self) -> list[str]:
        return ["gate-eval", "--model", str(self.out), "--out",
                str(self.work / "gate-figures.md"), "--record", *self._gate_data()]

    def oppoints(self) -> list[str]:
        return ["oppoints", "--model", str(self.out), *self.threads]

    def quantize(self) -> list[str]:
        return ["quantize", "--model", str(self.out), *self.threads]

    def _gate_data(self) -> list[str]:
        """The model's split (the cache's ``splits.csv``) and the shared feature cache."""
        return ["--data-root", str(self.root), "--prepared", str(self.data), "--work",
                str(self.work / "gate-work"), *self.threads]


def call(argv: list[str]) -> None:
    """``python -m training ARGV`` in this process (each step records its own command)."""
    from training.__main__ import main

    log.info("python -m training %s", " ".join(argv))
    saved = sys.argv
    sys.argv = ["training", *argv]
    try:
        rc = main(argv)
    finally:
        sys.argv = saved
    if rc:
        raise PneumoViewError(f"stage `python -m training {argv[0]}` failed (exit {rc})")


class StageLog:
    """Wall and CPU time of every stage run, appended to ``stages.json`` (a resumed run adds
    its own entries, so the total over interruptions stays measurable)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return json.loads(self.path.read_text(encoding="utf-8"))

    def run(self, name: str, fn: Callable[[], object]) -> None:
        t0, c0 = time.time(), _cpu_seconds()
        started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = "failed"
        try:
            fn()
            status = "done"
        finally:
            entry = {"stage": name, "started": started, "status": status,
                     "wall_s": round(time.time() - t0, 1),
                     "cpu_s": round(_cpu_seconds() - c0, 1), "load_avg_1m": os.getloadavg()[0]}
            rows = self.read() + [entry]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
            tmp.replace(self.path)
            log.info("stage %s %s in %.0fs wall, %.0fs CPU", name, status, entry["wall_s"],
                     entry["cpu_s"])


def _cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def totals(rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """Wall and CPU seconds per stage over all runs (interrupted attempts included). An entry
    timed from another run's log carries ``cpu_s: null``; its stage's CPU total is then None
    (unknown) rather than an undercount."""
    out: dict[str, dict[str, float | None]] = {}
    for r in rows:
        t = out.setdefault(r["stage"], {"wall_s": 0.0, "cpu_s": 0.0})
        t["wall_s"] = (t["wall_s"] or 0.0) + r["wall_s"]
        cpu = r.get("cpu_s")
        t["cpu_s"] = None if cpu is None or t["cpu_s"] is None else t["cpu_s"] + cpu
    return out


def training_done(run_dir: Path, epochs_args: list[str]) -> bool:
    """A training folder whose last log row is the schedule's last epoch."""
    import csv

    log_csv = run_dir / "log.csv"
    if not log_csv.is_file():
        return False
    epochs = int(epochs_args[epochs_args.index("--epochs") + 1])
    with open(log_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return bool(rows) and int(rows[-1]["epoch"]) >= epochs - 1


def train_resumably(run_dir: Path, argv: list[str], schedule: list[str]) -> None:
    """Run ``train`` unless its schedule is complete, resuming from its last checkpoint."""
    if training_done(run_dir, schedule):
        return
    if (run_dir / "checkpoint.pth").is_file():
        argv = [*argv, "--resume", "auto"]
    call(argv)


def stage_prepare(plan: Plan) -> None:
    if not (plan.data / "prepared.json").is_file():
        call(plan.prepare(R.SIZE))


def stage_stage1(plan: Plan) -> None:
    train_resumably(plan.stage1_run, plan.stage1_train(), R.STAGE1_ARGS)
    if not (plan.stage1_model / "metadata.json").is_file():
        call(plan.stage1_export())


def stage_stage2(plan: Plan) -> None:
    train_resumably(plan.stage2_run, plan.stage2_train(), R.STAGE2_ARGS)


def compare_size(model_dir: Path) -> int:
    """The input size of the comparison model (its test images come from the cache at that
    size, whose contract :func:`recipe.contract_for` gives); v1.0's when not copied yet."""
    meta = model_dir / "metadata.json"
    if not meta.is_file():
        return R.COMPARE_SIZE
    return int(json.loads(meta.read_text(encoding="utf-8"))["input_size"])


def snapshot_compare(plan: Plan) -> None:
    """Copy ``--compare`` to ``WORK/compare-model`` once, and prepare the cache its contract
    and size need (v1.0: 224 px ``pv-input-1``, already prepared)."""
    import shutil

    if not plan.compare:
        return
    if not (plan.compare_copy / "metadata.json").is_file():
        src = Path(plan.compare)
        if not (src / "metadata.json").is_file():
            raise PneumoViewError("the model to compare with is not a model folder (give "
                                  "--compare DIR, or --compare '' for none)", src)
        tmp = plan.compare_copy.with_name(plan.compare_copy.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in ("model.safetensors", "metadata.json", "MODEL_CARD.md"):
            if (src / name).is_file():
                shutil.copy2(src / name, tmp / name)
        tmp.rename(plan.compare_copy)
    size = compare_size(plan.compare_copy)
    contract = json.loads((plan.compare_copy / "metadata.json").read_text(encoding="utf-8"))[
        "input_contract"]
    if contract != R.contract_for(size):
        raise PneumoViewError(f"the model to compare with uses {contract} at {size} px; this "
                              f"recipe caches {R.contract_for(size)} at that size",
                              plan.compare_copy)
    if not (plan.cache(size) / "prepared.json").is_file():
        call(plan.prepare(size))


def exported(plan: Plan) -> bool:
    """Whether the model folder holds this recipe's export of this run's stage 2: a resumed
    run must not export again over a folder the later stages (gate, points) completed."""
    meta_path = plan.out / "metadata.json"
    if not meta_path.is_file():
        return False
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    line = (meta.get("command") or {}).get("export") or ""
    return meta.get("version") == R.VERSION and f"--run {plan.stage2_run} " in f"{line} "


def stage_export(plan: Plan) -> None:
    if exported(plan):
        return
    snapshot_compare(plan)
    call(plan.export())


def gate_available() -> bool:
    """Whether the input gate's training package (``training.gate``) is present."""
    return importlib.util.find_spec("training.gate") is not None and \
        importlib.util.find_spec("training.gate.command") is not None


def stage_gate(plan: Plan) -> None:
    """Hook: the input gate (issue 16's ``training.gate``) trained on the final backbone and
    attached to the model folder. Without that package the model stays gate-less (logged)."""
    if not gate_available():
        log.warning("training.gate is not available: the model folder has no input gate "
                    "(run `python -m training gate --model %s --attach %s` once it is)",
                    plan.out, plan.out)
        return
    meta = json.loads((plan.out / "metadata.json").read_text(encoding="utf-8"))
    if meta.get("gate"):
        return
    try:
        call(plan.gate())
    except PneumoViewError as exc:
        raise PneumoViewError(f"the input gate could not be trained on {plan.out} ({exc}); the "
                              "model folder is complete without it; attach it with `python -m "
                              f"training gate --model {plan.out} --attach {plan.out}`") from exc


def stage_oppoints(plan: Plan) -> None:
    """Operating points by age (skipped when the metadata records this command's run)."""
    meta = json.loads((plan.out / "metadata.json").read_text(encoding="utf-8"))
    if (meta.get("command") or {}).get("oppoints"):
        return
    call(plan.oppoints())


def stage_gate_figures(plan: Plan) -> None:
    """The gate's figures recorded in the model folder (skipped without a gate, or when the
    figures are there)."""
    meta = json.loads((plan.out / "metadata.json").read_text(encoding="utf-8"))
    if not meta.get("gate") or (meta.get("gate_training") or {}).get("figures_markdown"):
        return
    call(plan.gate_figures())


def nncf_available() -> bool:
    """Whether NNCF (the ``quantize`` extra) can be imported, without importing it."""
    return importlib.util.find_spec("nncf") is not None


def stage_int8(plan: Plan) -> None:
    """The int8 graph of the final weights (skipped when the metadata records one for these
    weights, by the app's own rule, or when nncf is missing)."""
    from pneumoview.core.modelinfo import int8_graph, read_model_info

    try:
        int8_graph(read_model_info(plan.out))
        return
    except PneumoViewError:
        pass  # none recorded, or recorded for other weights: quantise
    if not nncf_available():
        log.warning("nncf is not installed: the model folder has no int8 graph (pip install "
                    "'.[quantize]', then `python -m training quantize --model %s`)", plan.out)
        return
    call(plan.quantize())


def run(args: argparse.Namespace) -> int:
    plan = Plan(args)
    stages = StageLog(plan.work / STAGE_LOG)
    steps = {"prepare": stage_prepare, "stage1": stage_stage1, "stage2": stage_stage2,
             "export": stage_export, "gate": stage_gate, "oppoints": stage_oppoints,
             "gate-figures": stage_gate_figures, "int8": stage_int8}
    for name in STAGES:
        stages.run(name, lambda fn=steps[name]: fn(plan))
        if args.stop_after == name:
            log.info("stopped after stage %s (run again to continue)", name)
            break
    for name, t in totals(stages.read()).items():
        cpu = "unknown" if t["cpu_s"] is None else f"{t['cpu_s']:.0f} s"
        log.info("%-12s %7.0f s wall, CPU %s", name, t["wall_s"], cpu)
    return 0
