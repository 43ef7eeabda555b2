"""The bundled model's recipe (model 1.1) and the configurations ``search`` compares.

Two stages. The *base* is trained from scratch on the Kermany training split only, so that no
adult image has been seen before cross-validation. The *fine-tune* starts from the base and
trains on the adult NIH images plus a Kermany share at the fine-tune resolution; it runs once
per cross-validation fold (training on four fifths of the 417 non-test NIH images, scored on
the fifth: out-of-fold predictions) and once on all 417 for the final model. Each named
configuration below is a complete fine-tune (argument list for ``python -m training train``);
``search`` runs the cross-validation for several and tabulates them, ``reproduce`` runs
:data:`CHOSEN` only.
"""

from __future__ import annotations

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
#: The orientation auxiliary task (training/auxrot.py): the backbone learns which way up a film
#: is, for the input gate's orientation head.
_ROT = ("--aux-rotation", "0.5", "--aux-rotation-share", "0.25")
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

#: The configuration ``reproduce`` trains. Chosen before any measurement (the issue's first
#: suggestion: the NIH films are 512 px, 224 squashes them) because the CPU budget allowed one
#: cross-validated configuration; ``search`` compares the others by mean fold adult AUROC.
CHOSEN = "320"

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
