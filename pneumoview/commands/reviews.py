"""``pneumoview reviews {export,info}``: the review store from the command line.

``export -o LABELS.csv`` writes the current labelled decisions for one model (default: the
bundled model; ``--model DIR`` or ``--model-id``) in the form ``pneumoview calibrate --labels``
and ``python -m training prepare --reviews`` read. The store is opened read-only, so an export
can run while the viewer records reviews.
"""

from __future__ import annotations

import argparse
import sys

from pneumoview.commands.console import say
from pneumoview.core.errors import PneumoViewError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = sub.add_parser("export", help="write the labelled reviews of one model as CSV")
    export.add_argument("-o", "--output", required=True, metavar="LABELS.csv")
    export.add_argument("--overwrite", action="store_true")
    info = sub.add_parser("info", help="where the store is and how many reviews it holds")
    for p in (export, info):
        group = p.add_mutually_exclusive_group()
        group.add_argument("--model", metavar="DIR", help="model folder (default: bundled)")
        group.add_argument("--model-id", metavar="ID", help="a model_id (pvm1-...)")
        p.add_argument("--store", metavar="FILE", help=argparse.SUPPRESS)


def _model_id(args: argparse.Namespace) -> str:
    if args.model_id:
        return str(args.model_id)
    from pneumoview.core.modelinfo import read_model_info

    return read_model_info(args.model).model_id


def run(args: argparse.Namespace) -> int:
    import os

    from pneumoview.core.review import store as rs

    try:
        model_id = _model_id(args)
        path = args.store or rs.store_path()
        if args.action == "export" and os.path.lexists(args.output) and not args.overwrite:
            raise PneumoViewError("the file exists; pass --overwrite to replace it",
                                  args.output)
        with rs.ReviewStore.open_readonly(path) as store:
            current = store.current(model_id)
            total = store.count()
        if args.action == "info":
            figures = rs.running_figures(current.values())
            say(f"review store {path}: {total} reviews in all, {len(current)} images "
                f"reviewed for model_id {model_id[:17]}...; {figures.text()}")
            return 0
        n = rs.write_export(args.output, current.values())
        say(f"wrote {n} labels ({len(current) - n} reviews give no label: uncertain or not "
            f"assessable) to {args.output}")
        return 0
    except PneumoViewError as exc:
        say(f"pneumoview reviews: {exc}", sys.stderr)
        return 1
