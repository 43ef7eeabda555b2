"""``pneumoview calibrate REPORT.csv --labels LABELS.csv --target-sensitivity S -o PROFILE.json``.

Fits a site profile (:mod:`pneumoview.core.sitefit`) from the labelled cases of a report made by
``pneumoview flag``: a recalibrated probability and the threshold that meets the target, with
bootstrap CIs, bound to the model's identity. Prints a summary table. Headless (no Qt, no
torch: the report's ``logit`` column is all it needs). Exit status 0, or 1 when it refuses
(labels that do not match the report, another model, too few positives or negatives).
"""

from __future__ import annotations

import argparse
import sys

from pneumoview.commands.advice import calibrate_advice
from pneumoview.commands.console import say
from pneumoview.core.errors import PneumoViewError


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("report", metavar="REPORT.csv", help="a report of pneumoview flag")
    parser.add_argument("--labels", required=True, metavar="LABELS.csv",
                        help="CSV with 'label' (0/1) and 'sop_instance_uid' or 'relpath' "
                             "(the review export is one); may cover part of the report")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-sensitivity", type=_fraction, metavar="S",
                        help="choose the highest threshold whose sensitivity reaches S")
    target.add_argument("--target-specificity", type=_fraction, metavar="S",
                        help="choose the lowest threshold whose specificity reaches S")
    parser.add_argument("-o", "--output", required=True, metavar="PROFILE.json",
                        help="the site profile to write")
    parser.add_argument("--name", help="the profile's name (default: the output's file name)")
    parser.add_argument("--model", metavar="DIR",
                        help="the model the report was made with (default: the bundled one); "
                             "the profile is bound to its model_id")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing profile")
    parser.add_argument("--n-boot", type=int, default=2000, metavar="N",
                        help="bootstrap replicates (default 2000)")


def run(args: argparse.Namespace) -> int:
    try:
        profile = calibrate(args)
    except PneumoViewError as exc:
        say(f"pneumoview calibrate: {exc}{calibrate_advice(exc)}", sys.stderr)
        return 1
    from pneumoview.core.sitefit import summary_table

    for line in summary_table(profile.raw).splitlines():
        say(line)
    say(f"wrote {args.output} (sha256 {profile.sha256[:12]}...)")
    return 0


def calibrate(args: argparse.Namespace):  # a SiteProfile
    import os
    from pathlib import Path

    from pneumoview.core import calibration as cal
    from pneumoview.core import report as rep
    from pneumoview.core.modelinfo import read_model_info
    from pneumoview.core.sitefit import SiteFit, file_sha256, match_cases, read_labels
    from pneumoview.core.siteprofile import save_profile

    if os.path.lexists(args.output) and not args.overwrite:
        raise PneumoViewError("the profile already exists; pass --overwrite to replace it",
                              args.output)
    if args.n_boot < 100:
        raise PneumoViewError("--n-boot must be at least 100 for a usable interval")
    info = read_model_info(args.model)
    rows = rep.read_report(args.report)
    key, labels = read_labels(args.labels)
    cases = match_cases(rows, key, labels, args.report)
    metric, target = ((cal.SENSITIVITY, args.target_sensitivity)
                      if args.target_sensitivity is not None
                      else (cal.SPECIFICITY, args.target_specificity))
    name = args.name or Path(args.output).stem
    fit = SiteFit(metric=metric, target=target, name=name, n_boot=args.n_boot)
    data = fit.fit(cases, model_id=info.model_id, model_sha256=info.weights_sha256,
                   model_label=info.label, model_temperature=info.temperature,
                   sources={"report": Path(args.report).name,
                            "report_sha256": file_sha256(args.report),
                            "labels": Path(args.labels).name,
                            "labels_sha256": file_sha256(args.labels),
                            "matched_by": key})
    from pneumoview import __version__

    data["pneumoview_version"] = __version__
    return save_profile(args.output, data)
