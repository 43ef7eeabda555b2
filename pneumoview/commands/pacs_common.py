"""What ``echo``, ``send``, ``pull`` and ``listen`` share: the connection options, their
resolution (command line, then settings, then the defaults) and how outcomes are printed."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from pneumoview.commands.console import say

#: Failures listed one per line before "... and N more".
SHOW_FAILURES = 20


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calling-ae", metavar="AET",
                        help="this node's AE title (default: settings, else PNEUMOVIEW)")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="network time limit in seconds (default: settings, else 30)")
    parser.add_argument("--ca-file", metavar="PEM",
                        help="CA certificates to verify a TLS peer with (default: the "
                             "system's)")


def connection(args: argparse.Namespace) -> Any:
    """The :class:`~pneumoview.core.pacs.transfer.Connection` the options ask for."""
    from pneumoview.core.pacs.transfer import Connection
    from pneumoview.core.runoptions import resolve_network
    from pneumoview.core.settings import load_settings

    chosen = resolve_network(args, load_settings())
    return Connection(calling_ae=chosen.calling_ae, timeout_s=max(1.0, float(chosen.timeout_s)),
                      ca_file=args.ca_file)


def print_failures(failed: list[tuple[str, str]], err: TextIO, prog: str) -> None:
    for what, reason in failed[:SHOW_FAILURES]:
        say(f"{prog}: {what}: {reason}", err)
    if len(failed) > SHOW_FAILURES:
        say(f"{prog}: ... and {len(failed) - SHOW_FAILURES} more failures", err)


def progress_printer(err: TextIO, label: str, quiet: bool = False):
    """A (done, total) callback writing one updating line on a terminal, nothing otherwise."""
    tty = bool(getattr(err, "isatty", lambda: False)())

    def show(done: int, total: int) -> None:
        if quiet or not tty:
            return
        of = f"/{total}" if total else ""
        err.write(f"\r{label} {done}{of}")
        err.flush()

    return show
