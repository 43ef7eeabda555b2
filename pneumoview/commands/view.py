"""``pneumoview view``: the GUI (Qt is imported only inside :func:`run`)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", help="folder or DICOM file to open")
    parser.add_argument("--demo", action="store_true", help="open the built-in demo studies")
    parser.add_argument("--screenshot", metavar="OUT.png",
                        help="open PATH, wait for all pending work, save the window and exit")
    parser.add_argument("--model", metavar="DIR", help="model folder exported by training")
    parser.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:N or mps")


def run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from pneumoview.qt.app import run_viewer

    return run_viewer(args)
