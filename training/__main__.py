"""``python -m training {prepare,train,export,evaluate,reproduce,cv,oppoints,quantize,search,
gate,gate-eval} ...``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pneumoview.core.errors import PneumoViewError

COMMANDS = {
    "prepare": ("training.prepare", "decode, split by patient, cache model inputs"),
    "train": ("training.train", "train ResNet18 on a prepared cache (torchrun for DDP)"),
    "export": ("training.export", "calibrate, measure on test, write the model folder"),
    "evaluate": ("training.evaluate", "score a model on any source; metrics and plots"),
    "reproduce": ("training.reproduce", "the bundled model's whole recipe, stage by stage "
                  "(resumable)"),
    "cv": ("training.cv", "patient-grouped k-fold cross-validation of a fine-tune (adults)"),
    "oppoints": ("training.pointscmd", "population operating points for an exported model, "
                 "chosen on its own validation split"),
    "quantize": ("training.quantize", "an int8 graph for --precision int8 (NNCF), kept only "
                 "if it passes the accuracy guard on validation"),
    "search": ("training.search", "cross-validate several fine-tune configurations, tabulate"),
    "gate": ("training.gate.command", "train the input gate's heads on a model's backbone"),
    "gate-eval": ("training.gate.evaluate", "the input gate's figures (markdown tables)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if argv and argv[0] in COMMANDS:  # import only the module that runs
        names = [argv[0]]
    else:
        names = list(COMMANDS)
    for name in names:
        module, help_text = COMMANDS[name]
        sp = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(sp)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except PneumoViewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
