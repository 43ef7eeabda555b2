"""What the viewer tells a user to do about an error, in the GUI's words.

Core messages state facts only; the command line words its own advice
(:mod:`pneumoview.commands.advice`, in terms of its options), and this is the viewer's, in
terms of what the viewer offers: its settings, flagging a folder again, another file.
"""

from __future__ import annotations

from pneumoview.core.engines.base import EngineUnavailable
from pneumoview.core.errors import (
    DeviceUnavailableError,
    ImageTooLargeError,
    NotAReportError,
    ReportLocked,
    ReportMismatchError,
    ReportUnfinishedError,
    ReportWriteError,
)

__all__ = ["advice"]


def advice(exc: BaseException) -> str:
    """A sentence to append to ``str(exc)`` ("" when there is nothing to add)."""
    if isinstance(exc, ImageTooLargeError):
        return " (raise 'max image MiB' in the settings to open it)"
    if isinstance(exc, ReportWriteError):
        if exc.disk_full:
            return " (free some disk space and try again)"
        return " (choose another folder, or check its permissions)" if exc.not_permitted else ""
    if isinstance(exc, ReportLocked):
        return " (wait for that run to finish, then open the report again)"
    if isinstance(exc, NotAReportError):
        return " (choose a report that PneumoView wrote)"
    if isinstance(exc, ReportUnfinishedError):
        return " (flag the folder again to get a complete report)"
    if isinstance(exc, ReportMismatchError):
        if exc.field == "model":
            return " (load that model, or flag the folder again with this one)"
        return " (flag the folder again into a new report)"
    return _run_advice(exc)


def _run_advice(exc: BaseException) -> str:
    """A device or engine this machine cannot run: the viewer takes them from its settings
    file (``ai_device``, ``ai_engine``, ``ai_precision``) unless started with other ones."""
    if isinstance(exc, DeviceUnavailableError):
        return " (set ai_device to \"auto\" or \"cpu\" in settings.json, or start the viewer " \
            "with device auto)"
    if isinstance(exc, EngineUnavailable):
        if exc.option == "precision":
            return " (set ai_precision to \"auto\" or \"f32\" in settings.json)"
        if exc.option == "engine":
            return " (set ai_engine to \"auto\" or \"torch\" in settings.json)"
    return ""
