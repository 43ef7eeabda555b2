"""Command-line entry point: ``pneumoview [view] [PATH] ...`` and the display-less subcommands.

Each subcommand lives in its own module under :mod:`pneumoview.commands` exposing
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their command
runs, so ``info``/``render``/``flag`` never import Qt and the GUI path never imports torch early.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pneumoview import __version__

#: subcommand -> (module, one-line help). ``view`` is the default.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "view": ("pneumoview.commands.view", "start the viewer (default)"),
    "info": ("pneumoview.commands.info", "print what a DICOM file holds and how it decodes"),
    "render": ("pneumoview.commands.render", "render a DICOM image to PNG with a window"),
    "flag": ("pneumoview.commands.flag", "score and flag every file in a folder (CSV report)"),
    "merge-reports": ("pneumoview.commands.merge_reports",
                      "join the reports of a sharded flag run into one"),
    "cache": ("pneumoview.commands.cache",
              "show what PneumoView stores where (info), delete the index cache (clear)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pneumoview",
        description="Chest X-ray DICOM viewer with a pneumonia classifier. Not for diagnostic use.",
    )
    parser.add_argument("--version", action="version", version=f"pneumoview {__version__}")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation (model sha256, codecs, one inference and "
                             "CAM, Qt plugins) and exit 0 or 1; takes --model/--device")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        _load(module).add_arguments(sp)
    return parser


def _load(module: str):  # noqa: ANN202 - a command module
    return importlib.import_module(module)


def _with_default_command(argv: list[str]) -> list[str]:
    """``pneumoview PATH`` means ``pneumoview view PATH``; help and version stay top-level."""
    if argv and (argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help", "--version")):
        return argv
    return ["view", *argv]


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw and raw[0] == "--self-test":  # top-level flag, before subcommand parsing
        return int(_load("pneumoview.selftest").main(raw[1:]))
    args_list = _with_default_command(raw)
    parser = build_parser()
    args = parser.parse_args(args_list)
    module, _ = SUBCOMMANDS[args.command]
    return int(_load(module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
