"""``pneumoview echo NODE``: check a PACS node answers (C-ECHO; a QIDO-RS probe for DICOMweb).

Exit status 0 when it answers, 1 when it does not (the reason is printed), 2 for a bad node."""

from __future__ import annotations

import argparse
import sys

from pneumoview.commands.console import say
from pneumoview.commands.pacs_common import add_connection_arguments, connection


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", help="dicom://AET@HOST:PORT, dicom+tls://AET@HOST:PORT or "
                                     "http(s)://HOST/PATH")
    add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pneumoview.core.pacs import transfer
    from pneumoview.core.pacs.nodes import PacsError, parse_node

    try:
        node = parse_node(args.node)
        conn = connection(args)
    except PacsError as exc:
        say(f"pneumoview echo: error: {exc}", sys.stderr)
        return 2
    try:
        ms = transfer.echo(node, conn)
    except PacsError as exc:
        say(f"pneumoview echo: {exc}", sys.stderr)
        return 1
    what = "QIDO-RS" if node.kind == "web" else "C-ECHO"
    say(f"{node.label}: {what} answered in {ms:.0f} ms", sys.stdout)
    return 0
