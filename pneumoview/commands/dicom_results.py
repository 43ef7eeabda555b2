"""``flag --dicom-out DIR``: after the run, one SR and one Secondary Capture per scored image.

Kept out of :mod:`pneumoview.commands.flag` so that the batch command stays one job; flag calls
:func:`check` before the run (a bad folder is a usage error, found before any work) and
:func:`write` after it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TextIO

from pneumoview.commands.console import say
from pneumoview.core.errors import PneumoViewError


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dicom-out", metavar="DIR",
                        help="also write the AI results as DICOM: a Structured Report and a "
                             "Secondary Capture (CAM overlay) per scored image, one file per "
                             "object named by SOP Instance UID (DIR must not be inside FOLDER)")


def check(args: argparse.Namespace) -> str | None:
    """The usage problem with ``--dicom-out``, or None."""
    if not getattr(args, "dicom_out", None):
        return None
    from pneumoview.core.dicomout.output import check_output_folder

    try:
        check_output_folder(args.dicom_out, [args.folder])
    except PneumoViewError as exc:
        return f"--dicom-out: {exc}"
    return None


def write(args: argparse.Namespace, chosen: Any, err: TextIO,
          cancel: Callable[[], bool] = lambda: False) -> int:
    """Write the objects of the finished report with the run's model and device (``chosen``,
    the flag command's resolved :class:`~pneumoview.core.runoptions.RunOptions`); 0, or 1
    when any object could not be made."""
    if not getattr(args, "dicom_out", None):
        return 0
    from pneumoview.core.dicomout.export import export_report

    try:
        summary = export_report(args.output, args.dicom_out, model_dir=chosen.model_dir,
                                device=chosen.device, scanned=[args.folder], cancel=cancel)
    except PneumoViewError as exc:
        from pneumoview.commands.advice import run_advice

        say(f"pneumoview flag: error: --dicom-out: {exc}{run_advice(exc)}", err)
        return 1
    for path, reason in summary.errors:
        say(f"pneumoview flag: no DICOM result for {path}: {reason}", err)
    say(f"DICOM results: {len(summary.written)} objects written to {args.dicom_out} "
        f"({summary.not_evaluated} images not scored: no objects; "
        f"{len(summary.errors)} errors)", err)
    return 1 if summary.errors or summary.cancelled else 0
