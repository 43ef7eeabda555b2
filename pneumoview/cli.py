"""Command-line entry point: ``pneumoview [view] [PATH] ...`` and the display-less subcommands.

Each subcommand lives in its own module under :mod:`pneumoview.commands` exposing
``add_arguments(parser)`` and ``run(args) -> int``. Building the parser imports every command
module, so those import Qt and torch inside ``run`` only (pydicom and numpy do load with the
parser: ``info`` and ``render`` use them at module level): ``info``/``render``/``flag`` never
import Qt and the GUI path never imports torch early (subprocess tests check it, e.g. in
tests/test_batch_cli.py).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence

from pneumoview import __version__

#: Exit status when stdout or stderr was closed by the reader (``info FILE | head -1``): what a
#: shell reports for a program ended by SIGPIPE.
EXIT_BROKEN_PIPE = 128 + 13

#: subcommand -> (module, one-line help). ``view`` is the default.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "view": ("pneumoview.commands.view", "start the viewer (default)"),
    "info": ("pneumoview.commands.info", "print what a DICOM file holds and how it decodes"),
    "render": ("pneumoview.commands.render", "render a DICOM image to PNG with a window"),
    "flag": ("pneumoview.commands.flag", "score and flag every file in a folder (CSV report)"),
    "merge-reports": ("pneumoview.commands.merge_reports",
                      "join the reports of a sharded flag run into one"),
    "calibrate": ("pneumoview.commands.calibrate",
                  "fit a site profile (calibration + operating point) from labelled cases"),
    "reviews": ("pneumoview.commands.reviews",
                "export the readers' reviews as labels (export), or count them (info)"),
    "cache": ("pneumoview.commands.cache",
              "show what PneumoView stores where (info), delete the index cache (clear)"),
    "echo": ("pneumoview.commands.echo", "check that a PACS node answers (C-ECHO)"),
    "send": ("pneumoview.commands.send", "send DICOM files to a PACS (C-STORE or STOW-RS)"),
    "pull": ("pneumoview.commands.pull",
             "query and retrieve studies from a PACS (C-FIND/C-GET or QIDO-RS/WADO-RS)"),
    "listen": ("pneumoview.commands.listen",
               "receive DICOM (a Storage SCP) and score what arrives"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with its error line escaped: it quotes what the user typed."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from pneumoview.commands.console import printable

        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {printable(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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


def _load(module: str):
    return importlib.import_module(module)


def _with_default_command(argv: list[str]) -> list[str]:
    """``pneumoview PATH`` means ``pneumoview view PATH``; help and version stay top-level."""
    if argv and (argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help", "--version")):
        return argv
    return ["view", *argv]


def mistyped_command(argv: list[str]) -> str | None:
    """The message for ``pneumoview flg ...``: a first word that is neither an existing path
    nor a command but close to one; None otherwise (the viewer opens PATH)."""
    if not argv or argv[0] in SUBCOMMANDS or argv[0].startswith("-") \
            or os.path.lexists(argv[0]):
        return None
    close = difflib.get_close_matches(argv[0], list(SUBCOMMANDS), n=1, cutoff=0.6)
    if not close:
        return None
    from pneumoview.commands.console import printable

    return f"no file or command '{printable(argv[0])}' (did you mean '{close[0]}'?)"


def _reconfigure_streams() -> None:
    """Text a terminal's encoding cannot show is escaped, not an exception."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def _quiet_broken_pipe() -> int:
    """The reader went away (``| head -1``): stop quietly; point stdout at the null device so
    that the interpreter's final flush does not raise again."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            except (OSError, ValueError, AttributeError):
                pass
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    _reconfigure_streams()
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except SystemExit:  # argparse's --help / --version / usage errors print, then exit
        _quiet_broken_pipe()
        raise


def _main(raw: list[str]) -> int:
    if raw and raw[0] == "--self-test":  # top-level flag, before subcommand parsing
        return int(_load("pneumoview.selftest").main(raw[1:]))
    typo = mistyped_command(raw)
    if typo:
        print(f"pneumoview: error: {typo}", file=sys.stderr)
        return 2
    args_list = _with_default_command(raw)
    parser = build_parser()
    args = parser.parse_args(args_list)
    module, _ = SUBCOMMANDS[args.command]
    result = int(_load(module).run(args) or 0)
    sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
    return result


if __name__ == "__main__":
    sys.exit(main())
