"""``pneumoview send PATH... --to NODE``: C-STORE (``dicom://``) or STOW-RS (``http(s)://``)
files, or every file below folders (AI results written by ``flag --dicom-out``, or any DICOM).

Exit status 0 when every file was stored, 1 when any was not (each named with its reason),
2 for a usage error, 130 when interrupted."""

from __future__ import annotations

import argparse
import sys

from pneumoview.commands.console import say
from pneumoview.commands.pacs_common import (
    add_connection_arguments,
    connection,
    print_failures,
    progress_printer,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="DICOM files or folders")
    parser.add_argument("--to", required=True, metavar="NODE",
                        help="dicom://AET@HOST:PORT, dicom+tls://... or http(s)://HOST/PATH")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pneumoview.core.pacs import transfer
    from pneumoview.core.pacs.dimse import files_in
    from pneumoview.core.pacs.nodes import PacsError, parse_node

    err = sys.stderr
    try:
        node = parse_node(args.to)
        conn = connection(args)
    except PacsError as exc:
        say(f"pneumoview send: error: {exc}", err)
        return 2
    files = files_in(args.paths)
    if not files:
        say("pneumoview send: error: no files to send", err)
        return 2
    try:
        outcome = transfer.send(node, files, conn,
                                progress=progress_printer(err, "sent", args.quiet))
    except PacsError as exc:
        say(f"pneumoview send: {exc}", err)
        return 1
    except KeyboardInterrupt:
        say("pneumoview send: interrupted", err)
        return 130
    print_failures(outcome.failed, err, "pneumoview send")
    say(f"{node.label}: {len(outcome.done)} of {len(files)} files stored"
        f"{', cancelled' if outcome.cancelled else ''}", err)
    return 0 if not outcome.failed and not outcome.cancelled else 1
