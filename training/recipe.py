"""The bundled model's recipe (model 1.1) and the fine-tune configurations ``search`` compares.

Model 1.1 (:data:`STAGE1_ARGS`, :data:`STAGE2_ARGS`): v1.0's joint two-stage recipe at 224 px
(``pv-input-1``) with the training-only orientation task (:mod:`training.auxrot`) in both
stages. Stage 1 trains ResNet18 from scratch on the Kermany and NIH training splits together;
stage 2 continues from stage 1's export with the two sources sampled equally and keeps the
epoch with the best mean per-source validation AUROC. ``reproduce`` runs it.

The cross-validated fine-tunes (:data:`CONFIGS`) were the first attempt at model 1.1: a base
trained from scratch on the Kermany training split only (no adult image seen), then a short
fine-tune on the adult NIH images plus a Kermany share, run once per patient-grouped fold of the
417 non-test NIH images (out-of-fold predictions). None reached v1.0 on adults; ``search``
cross-validates them (it trains the base itself), ``cv`` runs one.
"""

from __future__ import annotations

#: The orientation auxiliary task (training/auxrot.py): the backbone learns which way up a film
#: is, for the input gate's orientation head; a quarter of each batch turned.
_ROT = ("--aux-rotation", "0.5", "--aux-rotation-share", "0.25")

#: Model 1.1's input size and contract (v1.0's: the candidate at 320 px lost on adults).
SIZE = 224
#: Stage 1: from scratch, 12 epochs, sources sampled in proportion to the square root of their
#: size (the adult images get about 23 % of the samples); the best validation epoch is exported.
STAGE1_ARGS = ["--epochs", "12", "--batch-size", "32", "--opt", "adamw", "--lr", "1e-3",
               "--weight-decay", "0.05", "--lr-scheduler", "cosine", "--lr-warmup-epochs", "1",
               "--balance", "source", "--balance-power", "0.5", "--precision", "auto",
               "--seed", "0", "--print-freq", "10", *_ROT]
#: Stage 2: 6 short epochs from stage 1 at a tenth of the rate, the two sources sampled equally,
#: the epoch with the best mean of the per-source validation AUROCs.
STAGE2_ARGS = ["--epochs", "6", "--samples-per-epoch", "2000", "--batch-size", "32",
               "--opt", "adamw", "--lr", "1e-4", "--weight-decay", "0.05",
               "--lr-scheduler", "cosine", "--lr-warmup-epochs", "0.5", "--balance", "source",
               "--balance-power", "0", "--precision", "auto", "--seed", "0",
               "--select-metric", "source-mean-auroc", "--print-freq", "20", *_ROT]
VERSION = "1.1"

#: The base: Kermany train only, fixed schedule (last epoch). 192 px rather than Kermany's own
#: 224 px: 0.73x the compute of the recipe's longest stage (two shared CPU cores), and the
#: fine-tune adapts the network to its own size anyway.
BASE_SIZE = 192
BASE_ARGS = ["--epochs", "5", "--batch-size", "32", "--opt", "adamw", "--lr", "1e-3",
             "--weight-decay", "0.05", "--lr-scheduler", "cosine", "--lr-warmup-epochs", "1",
             "--precision", "auto", "--seed", "0", "--select-metric", "last"]

#: Shared by every fine-tune: AdamW, cosine, adults and Kermany sampled equally, last epoch.
_FT_COMMON = ["--batch-size", "32", "--opt", "adamw", "--weight-decay", "0.05",
              "--lr-scheduler", "cosine", "--lr-warmup-epochs", "0.5", "--balance", "source",
              "--balance-power", "0", "--precision", "auto", "--seed", "0",
              "--select-metric", "last"]


def _ft(size: int, change: str, epochs: int = 5, samples: int = 512, lr: str = "3e-4",
        extra: tuple[str, ...] = ()) -> dict:
    return {"size": size, "change": change,
            "args": ["--epochs", str(epochs), "--samples-per-epoch", str(samples), "--lr", lr,
                     *_FT_COMMON, *extra]}


_L1 = ("--freeze", "layer1")
#: Named fine-tune configurations (size = input size of the fine-tune stage's cache); each
#: ``change`` says what differs from the configuration it is compared with.
CONFIGS: dict[str, dict] = {
    "224": _ft(224, "fine-tune at 224 px (pv-input-1), stem and layer1 frozen", extra=_L1),
    "320": _ft(320, "224 -> 320 px (pv-input-2)", extra=_L1),
    "320-stem": _ft(320, "only the stem frozen (layer1 trains too)",
                    extra=("--freeze", "stem")),
    "320-ema": _ft(320, "+ EMA of the weights (decay 0.99)", extra=(*_L1, "--ema", "0.99")),
    "320-aug": _ft(320, "+ gamma 0.7-1.4, contrast +-20 %, rotation +-10 deg",
                   extra=(*_L1, "--aug-gamma", "0.35", "--aug-contrast", "0.2",
                          "--aug-degrees", "10")),
    "320-ls": _ft(320, "+ label smoothing 0.1 (noisy NIH labels)",
                  extra=(*_L1, "--label-smoothing", "0.1")),
    "320-long": _ft(320, "10 epochs instead of 5", epochs=10, extra=_L1),
    "320-lr1e-4": _ft(320, "lr 1e-4 instead of 3e-4", lr="1e-4", extra=_L1),
    "384": _ft(384, "320 -> 384 px", extra=_L1),
    "320-rot": _ft(320, "+ rotation task (weight 0.5, a quarter of each batch turned)",
                   extra=(*_L1, *_ROT)),
    "320-rot-long": _ft(320, "+ rotation task, 10 epochs x 1,024 samples (4x the schedule)",
                        epochs=10, samples=1024, extra=(*_L1, *_ROT)),
}

#: ``cv``'s default configuration: the first one cross-validated, chosen before any
#: measurement (the NIH films are 512 px, 224 squashes them).
CV_DEFAULT = "320"

#: v1.0's contract and size: its cache scores v1.0 on the same test images (before/after).
COMPARE_SIZE = 224


def contract_for(size: int) -> str:
    """Contract of a cache: ``pv-input-1`` up to 224 px (v1.0's, unchanged), else
    ``pv-input-2``."""
    return "pv-input-1" if size <= 224 else "pv-input-2"


CV_FOLDS = 5
CV_SEED = 0
#: Adult sources (cross-validated, adult operating point) and paediatric ones.
ADULT_SOURCES = ("nih", "rsna")
PAEDIATRIC_SOURCES = ("kermany",)
#: Kermany validation images scored after each fold's last epoch (a paediatric guard).
GUARD_N = 300
