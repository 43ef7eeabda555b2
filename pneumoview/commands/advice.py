"""What the command line tells a user to do about a fatal error, in its own words (options).

Core errors state facts and carry what a front end needs to advise (their type, ``errno``,
the report's value that differs); the viewer words the same errors in
:mod:`pneumoview.qt.advice`.
Each function returns a clause to append to ``str(exc)``, "" when there is nothing to add.
"""

from __future__ import annotations

from pneumoview.core.engines.base import EngineUnavailable
from pneumoview.core.errors import (
    DeviceUnavailableError,
    NotAReportError,
    OutputIsInputError,
    ReportExistsError,
    ReportLocked,
    ReportMismatchError,
    ReportUnfinishedError,
    ReportWriteError,
    ShardError,
)

__all__ = ["calibrate_advice", "flag_advice", "merge_advice", "run_advice"]

_NEW_OUTPUT = "write to a new --output or "


def flag_advice(exc: BaseException) -> str:
    """``pneumoview flag``: continuing, replacing or redirecting its report."""
    if isinstance(exc, ReportExistsError):
        return "; pass --resume to continue it or --overwrite to replace it"
    if isinstance(exc, ReportWriteError):
        return _write(exc, "run again with --resume")
    if isinstance(exc, ReportLocked):
        return "; wait for it to finish or choose another --output"
    if isinstance(exc, NotAReportError):
        return "; --resume leaves it alone: choose another --output"
    if isinstance(exc, ReportMismatchError):
        return _mismatch(exc)
    if isinstance(exc, ReportUnfinishedError):
        return "; finish it with --resume first"
    return run_advice(exc)


def run_advice(exc: BaseException) -> str:
    """Any command that loads the model (``flag``, ``view``, ``--self-test``, ``--dicom-out``):
    a device or engine this machine cannot run."""
    if isinstance(exc, DeviceUnavailableError):
        return "; use --device cpu or auto"
    if isinstance(exc, EngineUnavailable):
        if exc.option == "precision":
            return "; use --precision f32 or auto"
        if exc.option == "engine":
            return "; use --engine torch or auto"
    return ""


def _write(exc: ReportWriteError, again: str) -> str:
    if exc.disk_full:
        return f"; free space and {again}"
    return "; choose another --output" if exc.not_permitted else ""


def _mismatch(exc: ReportMismatchError) -> str:
    value = exc.report_value
    if exc.field == "shard" and isinstance(value, tuple):
        return f"; resume with the same --shard ({value[0]}/{value[1]})"
    if exc.field == "threshold":
        shown = repr(value) if isinstance(value, float) else str(value)
        return f"; {_NEW_OUTPUT}pass --threshold {shown}"
    if exc.field == "model":
        return f"; {_NEW_OUTPUT}use the same --model"
    if exc.field == "gate":
        gate = "without --no-gate" if value == "content" else "with --no-gate"
        return f"; {_NEW_OUTPUT}run as the report was made ({gate})"
    return f"; {_NEW_OUTPUT}use the same settings"


def calibrate_advice(exc: BaseException) -> str:
    """``pneumoview calibrate``: a report made by another model than the one named."""
    if isinstance(exc, ReportMismatchError) and exc.field == "model":
        return "; flag the folder with that model, or pass --model"
    return ""


def merge_advice(exc: BaseException) -> str:
    """``pneumoview merge-reports``: which shard to run or finish, where to write."""
    if isinstance(exc, OutputIsInputError):
        return "; choose another --output"
    if isinstance(exc, ReportUnfinishedError):
        shard = f" --shard {exc.shard[0]}/{exc.shard[1]}" if exc.shard else " --shard K/N"
        return f"; finish it with pneumoview flag ...{shard} --resume"
    if isinstance(exc, ShardError) and exc.missing:
        return "; run them (pneumoview flag FOLDER --shard K/N) and pass every shard's report"
    if isinstance(exc, NotAReportError):
        return "; pass the shards' reports (pneumoview flag ... --shard K/N -o REPORT)"
    if isinstance(exc, ReportWriteError):
        return _write(exc, "run merge-reports again")
    return ""
