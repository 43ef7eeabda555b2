"""``pneumoview merge-reports SHARD.csv... --output MERGED.csv``: join the shards of a batch.

Each shard report (``pneumoview flag ... --shard K/N``) has a manifest beside it; the merge
checks that each manifest is sound (types and ranges), that shards 0..N-1 are all present once,
finished, made with the same model and threshold, and that no file appears twice, and fails with
a clear message (exit 1) otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys

from pneumoview.core.errors import PneumoViewError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", metavar="SHARD.csv",
                        help="the shard reports (each with its .manifest.json beside it)")
    parser.add_argument("-o", "--output", required=True, metavar="MERGED.csv",
                        help="the merged report to write")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing merged report")


def run(args: argparse.Namespace) -> int:
    from pneumoview.commands.advice import merge_advice
    from pneumoview.commands.console import say
    from pneumoview.core.report import merge_reports

    if os.path.lexists(args.output) and not args.overwrite:
        say(f"pneumoview merge-reports: error: {args.output} exists; pass --overwrite to "
            "replace it", sys.stderr)
        return 1
    try:
        result = merge_reports(args.reports, args.output)
    except PneumoViewError as exc:
        say(f"pneumoview merge-reports: error: {exc}{merge_advice(exc)}", sys.stderr)
        return 1
    say(f"merged {result.shards} shard(s), {result.rows} files -> {result.output}", sys.stderr)
    return 0
