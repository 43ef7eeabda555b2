"""What the viewer tells a user to do about an error, in the GUI's words.

Core messages state facts only; the command line words its own advice
(``pneumoview.commands.flag.advice``), and this is the viewer's.
"""

from __future__ import annotations

from pneumoview.core.errors import ImageTooLargeError

__all__ = ["advice"]


def advice(exc: BaseException) -> str:
    """A sentence to append to ``str(exc)`` ("" when there is nothing to add)."""
    if isinstance(exc, ImageTooLargeError):
        return " (raise 'max image MiB' in the settings to open it)"
    return ""
