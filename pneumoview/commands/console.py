"""What the command-line tools print: text from files and file names shown, never obeyed.

A header value or a file name can hold terminal control sequences (``ESC [ 2 J`` clears the
screen, OSC sequences set the window title or write hyperlinks), bidirectional overrides that
reorder what the reader sees, or bytes that are not text. Every string that came from outside
goes through :func:`printable` before it reaches stdout or stderr, one line at a time.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

#: C0 controls (tab and line breaks included: callers print line by line), DEL, C1 controls,
#: the bidirectional marks, embeddings, overrides and isolates, the line and paragraph
#: separators, and lone surrogates (bytes of a file name that are not UTF-8).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name (os.fsdecode)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` with every control character written as a visible escape (``\\x1b``)."""
    return _UNSAFE.sub(_escape, str(text))


def say(text: object, file: TextIO | None = None) -> None:
    """Print one line of text that may hold outside strings, escaped."""
    print(printable(text), file=sys.stdout if file is None else file)


def say_lines(lines: list[str], file: TextIO | None = None) -> None:
    """Print several lines, each escaped on its own."""
    for line in lines:
        say(line, file)


class PrintableFormatter(logging.Formatter):
    """A log formatter whose lines are escaped like :func:`printable` (tracebacks kept)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))
