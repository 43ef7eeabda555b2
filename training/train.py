"""``python -m training train``: train the ResNet18 classifier on a prepared cache.

Structured like torchvision's ``references/classification/train.py`` (``get_args_parser``,
``main``, ``train_one_epoch``, ``evaluate``). Runs on CUDA, then MPS, then CPU; under
``torchrun`` it uses DDP (NCCL on GPU, gloo on CPU) with a seeded, sharded sampler. A
checkpoint is written every epoch (model, optimiser, scheduler, epoch, RNG states, best score)
and ``--resume`` continues exactly: the sampler and the augmentation RNG are re-seeded from
(seed, epoch), so an interrupted run replays the same batches as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.model import build_model, select_device
from training import metrics as M
from training import precision as P
from training.auxrot import RotationTask, WithRotationHead, rotation_accuracy
from training.data import (
    Augment,
    CachedDataset,
    EpochSampler,
    read_index,
    read_prepared,
    sample_weights,
)
from training.provenance import command_line

log = logging.getLogger("training.train")

FREEZE_CHOICES = ("none", "stem", "layer1", "layer2")
FREEZE_MODULES = {"none": (), "stem": ("conv1", "bn1"), "layer1": ("conv1", "bn1", "layer1"),
                  "layer2": ("conv1", "bn1", "layer1", "layer2")}
PREDICTIONS = "val_predictions.csv"
GUARD_PREDICTIONS = "guard_predictions.csv"
CHECKPOINT = "checkpoint.pth"
BEST = "checkpoint_best.pth"
LOG_CSV = "log.csv"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train the PneumoView classifier", add_help=add_help)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="prepared cache (python -m training prepare)")
    p.add_argument("--output-dir", required=True, help="checkpoints and log.csv go here")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32, help="per process")
    p.add_argument("--opt", choices=("adam", "adamw", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--momentum", type=float, default=0.9, help="SGD only")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--lr-scheduler", choices=("none", "cosine", "step", "onecycle"),
                   default="none")
    p.add_argument("--lr-warmup-epochs", type=float, default=0.0,
                   help="linear warm-up from lr/100 (cosine/step)")
    p.add_argument("--lr-min", type=float, default=0.0, help="cosine floor")
    p.add_argument("--lr-step-size", type=int, default=5)
    p.add_argument("--lr-gamma", type=float, default=0.1)
    p.add_argument("--balance", choices=("none", "class", "source", "source-class"),
                   default="none", help="weighted sampling with replacement over these cells")
    p.add_argument("--balance-power", type=float, default=0.0,
                   help="cell share proportional to n_cell**POWER (0 equal, 1 natural)")
    p.add_argument("--samples-per-epoch", type=int, default=0, help="0: the train split size")
    p.add_argument("--pos-weight", default="none",
                   help="class weighting in the loss: none, auto (n_neg/n_pos) or a number")
    p.add_argument("--clip-grad-norm", type=float, default=0.0, help="0: off")
    p.add_argument("--image-size", type=int, default=0, help="0: the cache's size")
    p.add_argument("--crop-scale-min", type=float, default=0.35)
    p.add_argument("--aug-degrees", type=float, default=5.0, help="random rotation, +- degrees")
    p.add_argument("--aug-gamma", type=float, default=0.0,
                   help="random gamma exp(U(-G, G)) (0.35: gamma 0.7-1.4); 0: off")
    p.add_argument("--aug-contrast", type=float, default=0.0,
                   help="random contrast factor 1 + U(-C, C) about mid-grey; 0: off")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--label-smoothing", type=float, default=0.0,
                   help="BCE targets y (1 - E) + E / 2 (a guard against noisy report-mined "
                   "labels); 0: off")
    p.add_argument("--aux-rotation", type=float, default=0.0,
                   help="weight of an auxiliary rotation task (0: off): a training-only head "
                        "names each image's quarter turn, so the backbone carries orientation "
                        "for the input gate")
    p.add_argument("--aux-rotation-share", type=float, default=0.25,
                   help="expected share of each batch turned by 90, 180 or 270 degrees")
    p.add_argument("--ema", type=float, default=0.0,
                   help="keep an exponential moving average of the weights with this decay "
                   "(e.g. 0.999); validation, checkpoints and export then use the average")
    p.add_argument("--freeze", choices=FREEZE_CHOICES, default="none",
                   help="keep the first layers fixed (fine-tunes): stem = conv1+bn1, layer1 = "
                   "stem+layer1, layer2 = up to layer2; saves their backward pass")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="fp32",
                   help="autocast for the training forward pass: auto = bf16 only where it is "
                   "fast (CUDA with bf16, CPUs with AVX512-BF16/AMX), else float32; "
                   "validation is always float32")
    p.add_argument("--amp", action="store_true", help="same as --precision auto")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training model (measure first: bench_training.py)")
    p.add_argument("--train-index", default="",
                   help="index CSV (split,row,...) of the training images instead of the "
                   "cache's train split (cross-validation folds, one source only)")
    p.add_argument("--val-index", default="", help="index CSV of the validation images")
    p.add_argument("--guard-index", default="",
                   help="index CSV scored once after the last epoch (e.g. a Kermany check "
                   "during adult fine-tunes); AUROC per source in the last log row")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda[:N], mps")
    p.add_argument("--resume", default="", help="checkpoint path, or 'auto' (OUTPUT/checkpoint)")
    p.add_argument("--init", default="", help="torchvision ResNet18 state_dict file to start "
                   "from (conv1 summed over RGB; fc dropped), or an exported model.safetensors "
                   "(its folder's mean/std then normalise the inputs, as the network expects)")
    p.add_argument("--val-split", default="val")
    p.add_argument("--select-metric", choices=("auroc", "source-mean-auroc", "last"),
                   default="auroc",
                   help="best epoch by validation AUROC over all images, or by the mean of the "
                   "per-source AUROCs (so a small source counts as much as a large one), or "
                   "the last epoch (a fixed schedule: cross-validation estimates stay honest)")
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--max-steps", type=int, default=0, help="per epoch, for quick checks")
    p.add_argument("--stop-after-epoch", type=int, default=-1,
                   help="end the process after this epoch (as if interrupted; for tests)")
    p.add_argument("--print-freq", type=int, default=20)
    p.add_argument("--tensorboard", action="store_true", help="log to OUTPUT/tb if available")


# --------------------------------------------------------------------------- distributed

def init_distributed(device_pref: str) -> tuple[int, int, int, torch.device]:
    """(rank, world, local_rank, device); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_pref)
    if device.type == "cuda" and world > 1 and device.index is None:
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return rank, world, local, device


def is_main(rank: int) -> bool:
    return rank == 0


# --------------------------------------------------------------------------- model / optim

def load_init(model: torch.nn.Module, path: str) -> None:
    """Start from a ResNet18 state_dict on disk: a torchvision ``.pth`` (RGB conv1 summed to one
    channel; loaded with ``weights_only``) or an exported ``model.safetensors``."""
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise PneumoViewError(f"cannot read the --init weights ({exc})", path) from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    w = state.get("conv1.weight")
    if w is not None and w.shape[1] == 3:
        state["conv1.weight"] = w.sum(dim=1, keepdim=True)
    own = model.state_dict()
    keep = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    dropped = sorted(set(state) - set(keep))
    model.load_state_dict(keep, strict=False)
    log.info("init from %s: %d tensors loaded, %d dropped (%s)", path, len(keep), len(dropped),
             ", ".join(dropped[:4]))


def init_normalisation(path: str) -> tuple[float, float] | None:
    """(mean, std) of the exported model an ``--init`` file belongs to, if it is one."""
    meta = Path(path).parent / "metadata.json" if path else None
    if meta is None or not str(path).endswith(".safetensors") or not meta.is_file():
        return None
    raw = json.loads(meta.read_text(encoding="utf-8"))
    try:
        return float(raw["mean"]), float(raw["std"])
    except (KeyError, TypeError, ValueError):
        return None


def freeze(model: torch.nn.Module, what: str) -> list[str]:
    """Fix the parameters of the first layers (``FREEZE_MODULES[what]``); their batch-norm
    statistics stay fixed too (see :func:`train_mode`). Returns the frozen module names."""
    names = list(FREEZE_MODULES[what])
    for name in names:
        for prm in getattr(model, name).parameters():
            prm.requires_grad_(False)
    return names


def train_mode(model: torch.nn.Module, frozen: list[str]) -> None:
    """``model.train()`` except the frozen modules, whose batch norms keep their statistics."""
    model.train()
    base = model
    while not hasattr(base, "conv1"):  # DDP, torch.compile or the rotation-head wrapper
        base = getattr(base, "module", None) or getattr(base, "_orig_mod", None) or base.net
    for name in frozen:
        getattr(base, name).eval()


class WeightEMA:
    """Exponential moving average of a model's weights (buffers copied), with the usual
    warm-up ``decay_t = min(decay, (1 + t) / (10 + t))`` so a short fine-tune is not dominated
    by its starting point."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        import copy

        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for prm in self.module.parameters():
            prm.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(current[k].detach(), alpha=1 - d)
            else:
                v.copy_(current[k])

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


def make_optimizer(args: argparse.Namespace, params) -> torch.optim.Optimizer:  # noqa: ANN001
    if args.opt == "adam":
        return torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.opt == "adamw":
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum,
                           weight_decay=args.weight_decay, nesterov=True)


def make_scheduler(args: argparse.Namespace, opt: torch.optim.Optimizer,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped every iteration, so warm-up and cosine are smooth."""
    total = max(args.epochs * steps_per_epoch, 1)
    if args.lr_scheduler == "none":
        return None
    if args.lr_scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total,
                                                   pct_start=0.25 if not args.lr_warmup_epochs
                                                   else args.lr_warmup_epochs / args.epochs)
    warm = int(round(args.lr_warmup_epochs * steps_per_epoch))
    floor = args.lr_min / args.lr if args.lr > 0 else 0.0

    def factor(step: int) -> float:
        if step < warm:
            return 0.01 + 0.99 * step / warm
        if args.lr_scheduler == "cosine":
            t = (step - warm) / max(total - warm, 1)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        return args.lr_gamma ** ((step // steps_per_epoch) // args.lr_step_size)

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


# --------------------------------------------------------------------------- loops

def _progress(prefix: str, step: int, total: int, t0: float, extra: str = "") -> str:
    el = time.time() - t0
    eta = el / max(step, 1) * (total - step)
    return f"{prefix} [{step}/{total}] {extra} elapsed {el:5.0f}s eta {eta:5.0f}s"


def train_one_epoch(model: torch.nn.Module, criterion: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, loader: torch.utils.data.DataLoader,
                    device: torch.device, epoch: int, args: argparse.Namespace,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    main_proc: bool = True, augment: Augment | None = None,
                    ema: WeightEMA | None = None, frozen: list[str] | None = None,
                    ema_source: torch.nn.Module | None = None,
                    rotation: RotationTask | None = None) -> dict[str, float]:
    train_mode(model, frozen or [])
    smoothing = float(getattr(args, "label_smoothing", 0.0) or 0.0)
    bf16 = bool(getattr(args, "use_bf16", False))
    total = len(loader) if not args.max_steps else min(len(loader), args.max_steps)
    t0 = time.time()
    loss_sum, n_seen = 0.0, 0
    for step, (x, y, _) in enumerate(loader, start=1):
        if args.max_steps and step > args.max_steps:
            break
        x = x.to(device, non_blocking=True)
        if augment is not None:
            x = augment(x)
        k = rotation.draw(len(x), device) if rotation is not None else None
        if rotation is not None:
            x = rotation.apply(x, k)
        x = ((x - args.mean) / args.std).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        target = y * (1 - smoothing) + smoothing / 2 if smoothing else y
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        if rotation is not None:
            loss = rotation.loss(out[0].reshape(-1).float(), out[1].float(), target, k,
                                 criterion)
        else:
            loss = criterion(out.reshape(-1).float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(ema_source if ema_source is not None else model)
        loss_sum += float(loss.detach()) * len(y)
        n_seen += len(y)
        if main_proc and (step % args.print_freq == 0 or step == total):
            lr = optimizer.param_groups[0]["lr"]
            rate = n_seen / (time.time() - t0)
            log.info(_progress(f"epoch {epoch}", step, total, t0,
                               f"loss {loss_sum / n_seen:.4f} lr {lr:.2e} {rate:.1f} img/s"))
    dt = time.time() - t0
    return {"train_loss": loss_sum / max(n_seen, 1), "train_img_per_s": n_seen / max(dt, 1e-9),
            "train_time_s": dt}


@torch.inference_mode()
def predict(model: torch.nn.Module, loader: torch.utils.data.DataLoader, device: torch.device,
            mean: float, std: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits float64, labels, dataset indices) over a whole loader of [0, 1] images."""
    model.eval()
    logits, labels, idxs = [], [], []
    for x, y, i in loader:
        x = ((x.to(device) - mean) / std).contiguous(memory_format=torch.channels_last)
        logits.append(model(x).reshape(-1).to("cpu", torch.float64).numpy())
        labels.append(y.numpy())
        idxs.append(np.asarray(i))
    if not logits:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(logits), np.concatenate(labels), np.concatenate(idxs)


def evaluate(model: torch.nn.Module, criterion: torch.nn.Module,
             loader: torch.utils.data.DataLoader, device: torch.device, mean: float, std: float,
             sources: list[str] | None = None,
             predictions: Path | None = None) -> dict[str, float]:
    """Validation metrics (threshold 0.5 on the uncalibrated probability) + per-source AUROC;
    with ``predictions``, also a CSV of every image's logit (out-of-fold scores for CV)."""
    logits, y, idx = predict(model, loader, device, mean, std)
    if predictions is not None:
        write_predictions(predictions, loader.dataset.index, logits, idx)
    loss = float(criterion(torch.from_numpy(logits), torch.from_numpy(y).double()))
    p = M.sigmoid(logits)
    s = M.summary(y, p, 0.5)
    out = {"val_loss": loss, **{f"val_{k}": v for k, v in s.items() if k != "n"}}
    if sources is not None:
        src = np.asarray([sources[i] for i in idx])
        per = []
        for name in sorted(set(src)):
            m = src == name
            out[f"val_auroc_{name}"] = M.auroc(y[m], p[m])
            per.append(out[f"val_auroc_{name}"])
        out["val_source_mean_auroc"] = float(np.nanmean(per)) if per else float("nan")
    return out


def write_predictions(path: Path, index, logits: np.ndarray, idx: np.ndarray) -> None:  # noqa: ANN001
    """``path, source, patient_id, label, logit`` per image (full-precision logits)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "source", "patient_id", "label", "logit"])
        for i, lo in zip(idx, logits, strict=True):
            w.writerow([index.paths[i], index.sources[i], index.patient_ids[i],
                        int(index.labels[i]), repr(float(lo))])
    os.replace(tmp, path)


# --------------------------------------------------------------------------- checkpoints

def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write atomically: a crash mid-write never destroys the previous checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    """Our own training checkpoints (they hold RNG states, so not ``weights_only``)."""
    p = Path(path)
    if not p.is_file():
        raise PneumoViewError("checkpoint not found", p)
    return torch.load(p, map_location="cpu", weights_only=False)


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    s = (seed * 1_000_003 + epoch * 1009 + rank) % (2**31)
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)


# --------------------------------------------------------------------------- main

def main(args: argparse.Namespace) -> dict:
    rank, world, _, device = init_distributed(args.device)
    main_proc = is_main(rank)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    out_dir = Path(args.output_dir)
    if main_proc:
        out_dir.mkdir(parents=True, exist_ok=True)
    prepared = read_prepared(args.data)
    size = args.image_size or int(prepared["image_size"])
    mean, std = float(prepared["mean"]), float(prepared["std"])
    norm = init_normalisation(args.init)
    if norm is not None:
        mean, std = norm
        if main_proc:
            log.info("inputs normalised as the --init model's: mean %.5f std %.5f", mean, std)
    prec = P.choose("auto" if args.amp else args.precision, device)
    args.use_bf16 = prec.autocast
    if main_proc:
        log.info("precision %s (%s: %s)", prec.dtype, prec.requested, prec.reason)
    aug = None if args.no_augment else Augment(
        degrees=args.aug_degrees, crop_scale=(args.crop_scale_min, 1.0), gamma=args.aug_gamma,
        contrast=args.aug_contrast)
    train_ds = CachedDataset(args.data, "train", size,
                             read_index(args.train_index) if args.train_index else None)
    val_ds = CachedDataset(args.data, args.val_split, size,
                           read_index(args.val_index) if args.val_index else None)
    guard_ds = CachedDataset(args.data, "guard", size, read_index(args.guard_index)) \
        if args.guard_index else None
    args.mean, args.std = mean, std
    weights = sample_weights(train_ds.labels, train_ds.index.sources, args.balance,
                             args.balance_power)
    sampler = EpochSampler(len(train_ds), args.seed, rank, world, weights,
                           args.samples_per_epoch or None)
    loader_gen = torch.Generator()
    train_loader = torch.utils.data.DataLoader(
        train_ds, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
        drop_last=True, persistent_workers=False, generator=loader_gen,
        pin_memory=device.type == "cuda")
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=args.eval_batch_size,
                                             shuffle=False, num_workers=args.workers)
    steps = len(train_loader) if not args.max_steps else min(len(train_loader), args.max_steps)
    torch.manual_seed(args.seed)
    model = build_model()
    if args.init:
        load_init(model, args.init)
    model = model.to(device, memory_format=torch.channels_last)
    frozen = freeze(model, args.freeze)
    ema = WeightEMA(model, args.ema) if args.ema > 0 else None
    rotation, trained = None, model
    if args.aux_rotation > 0:
        rotation = RotationTask(args.aux_rotation_share, args.aux_rotation)
        trained = WithRotationHead(model).to(device, memory_format=torch.channels_last)
    n_pos = int(train_ds.labels.sum())
    n_neg = len(train_ds) - n_pos
    if args.pos_weight == "none":
        pos_weight = None
    elif args.pos_weight == "auto":
        pos_weight = torch.tensor(n_neg / max(n_pos, 1), device=device)
    else:
        pos_weight = torch.tensor(float(args.pos_weight), device=device)
    criterion = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    eval_criterion = torch.nn.BCEWithLogitsLoss()
    optimizer = make_optimizer(args, [q for q in trained.parameters() if q.requires_grad])
    scheduler = make_scheduler(args, optimizer, steps)
    start_epoch, best_auroc, best_epoch = 0, -1.0, -1
    if args.resume:
        ck_path = out_dir / CHECKPOINT if args.resume == "auto" else Path(args.resume)
        ck = load_checkpoint(ck_path)
        model.load_state_dict(ck["model"])
        if rotation is not None:
            trained.head.load_state_dict(ck["rotation_head"])
        optimizer.load_state_dict(ck["optimizer"])
        if scheduler is not None and ck.get("scheduler"):
            scheduler.load_state_dict(ck["scheduler"])
        _set_rng_state(ck["rng"])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        start_epoch = int(ck["epoch"]) + 1
        best_auroc, best_epoch = float(ck["best_auroc"]), int(ck["best_epoch"])
        if main_proc:
            log.info("resumed from %s at epoch %d (best AUROC %.4f at epoch %d)", ck_path,
                     start_epoch, best_auroc, best_epoch)
    ddp_model = trained
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            trained, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        ddp_model = torch.compile(ddp_model)
    tb = None
    if args.tensorboard and main_proc:
        try:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(out_dir / "tb"))
        except ImportError:
            log.warning("tensorboard is not installed; --tensorboard ignored")
    if main_proc:
        log.info("train %d images, val %d, %d steps/epoch x %d process(es), batch %d, %s, "
                 "size %d, threads %d, frozen %s, EMA %s, rotation task %s", len(train_ds),
                 len(val_ds), steps, world, args.batch_size, device, size,
                 torch.get_num_threads(), ",".join(frozen) or "none", args.ema or "off",
                 rotation or "off")
    command = command_line(getattr(args, "argv", []))  # paths relative to the checkout
    last: dict = {}
    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        seed_epoch(args.seed, epoch, rank)
        loader_gen.manual_seed(args.seed * 7919 + epoch)
        t0 = time.time()
        stats = train_one_epoch(ddp_model, criterion, optimizer, train_loader, device, epoch,
                                args, scheduler, main_proc, aug, ema, frozen, model, rotation)
        if main_proc:
            scored = ema.module if ema is not None else model
            vals = evaluate(scored, eval_criterion, val_loader, device, mean, std,
                            val_ds.index.sources, out_dir / PREDICTIONS)
            row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], **stats, **vals}
            if rotation is not None:
                row.update(rotation_accuracy(trained, val_loader, device, mean, std,
                                             args.use_bf16))
            if guard_ds is not None and epoch == args.epochs - 1:
                row.update(_guard(scored, eval_criterion, guard_ds, device, mean, std, args,
                                  out_dir))
            row["epoch_time_s"] = time.time() - t0
            if args.select_metric == "last":
                score, is_best = float(vals["val_auroc"]), True
            else:
                score = vals["val_auroc" if args.select_metric == "auroc"
                             else "val_source_mean_auroc"]
                is_best = score > best_auroc
            if is_best:
                best_auroc, best_epoch = float(score), epoch
            row["best_epoch"] = best_epoch
            payload = {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "epoch": epoch, "best_auroc": best_auroc, "best_epoch": best_epoch,
                "rng": _rng_state(), "args": vars(args), "command": command,
                "prepared": prepared, "image_size": size, "row": row,
                "torch_version": torch.__version__, "precision": prec.record(),
                "normalisation": {"mean": mean, "std": std},
            }
            if rotation is not None:
                payload["rotation_head"] = trained.head.state_dict()
            if ema is not None:
                payload["ema"] = ema.state_dict()
                payload["model_ema"] = ema.module.state_dict()
            save_checkpoint(out_dir / CHECKPOINT, payload)
            if is_best:
                save_checkpoint(out_dir / BEST, payload)
            _append_log(out_dir / LOG_CSV, row)
            if tb is not None:
                for k, v in row.items():
                    if isinstance(v, int | float):
                        tb.add_scalar(k, v, epoch)
            log.info("epoch %d: train loss %.4f, val loss %.4f, val AUROC %.4f (%s), best %.4f "
                     "@%d, %.0fs", epoch, row["train_loss"], row["val_loss"], row["val_auroc"],
                     ", ".join(f"{k[10:]} {v:.3f}" for k, v in row.items()
                               if k.startswith("val_auroc_")), best_auroc, best_epoch,
                     row["epoch_time_s"])
            last = row
        if world > 1:
            torch.distributed.barrier()
        if args.stop_after_epoch >= 0 and epoch >= args.stop_after_epoch:
            break
    if tb is not None:
        tb.close()
    if world > 1:
        torch.distributed.destroy_process_group()
    return {"best_auroc": best_auroc, "best_epoch": best_epoch, "last": last}


def _guard(model: torch.nn.Module, criterion: torch.nn.Module, ds: CachedDataset,
           device: torch.device, mean: float, std: float, args: argparse.Namespace,
           out_dir: Path) -> dict[str, float]:
    """The guard set's AUROC per source, once, after the last epoch."""
    loader = torch.utils.data.DataLoader(ds, batch_size=args.eval_batch_size, shuffle=False,
                                         num_workers=args.workers)
    vals = evaluate(model, criterion, loader, device, mean, std, ds.index.sources,
                    out_dir / GUARD_PREDICTIONS)
    return {"guard_" + k[4:]: v for k, v in vals.items() if k.startswith("val_auroc")}


def exported_state(ck: dict, weights: str = "auto") -> dict:
    """The weights to export from a checkpoint: the EMA when the run kept one (``auto``)."""
    if weights == "raw" or (weights == "auto" and "model_ema" not in ck):
        return ck["model"]
    if "model_ema" not in ck:
        raise PneumoViewError("the run kept no EMA of the weights (train with --ema)")
    return ck["model_ema"]


def _append_log(path: Path, row: dict) -> None:
    """One CSV row per epoch; rewrites the header when new columns appear."""
    rows: list[dict] = []
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) < int(row["epoch"])]
    rows.append(row)
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def run(args: argparse.Namespace) -> int:
    args.argv = sys.argv[1:]
    result = main(args)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"best_auroc": result["best_auroc"],
                          "best_epoch": result["best_epoch"]}))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.exit(run(get_args_parser().parse_args()))
