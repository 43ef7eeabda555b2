"""The one error type that core functions let escape.

Every failure a user can cause (a broken file, a missing codec, an image too large) is reported
as a :class:`PneumoViewError` whose message names the file and the reason, so that the GUI, the
batch report and the command line can show it as it is, without a traceback.
"""

from __future__ import annotations

from os import PathLike


class PneumoViewError(Exception):
    """A failure with a user-facing message naming the file (when there is one) and the reason."""

    def __init__(self, reason: str, path: str | PathLike[str] | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {reason}" if self.path else reason)
