"""A read buffer over one file, addressed by absolute offsets, for the fast header parser.

The parser asks for byte ranges; the buffer serves them from what it holds and otherwise
reads again from that offset (at least :data:`CHUNK` bytes), so a typical header costs one
read. It raises :class:`Truncated` when a range runs past the end of the file and
:class:`Fallback` for a range no plausible header needs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReadBuffer", "Fallback", "Truncated", "CHUNK"]

CHUNK = 16384
_MAX_VALUE = 1 << 24  # a 16 MiB value we want is not a plausible header


class Fallback(Exception):
    """The fast parser met something it does not handle: let pydicom read the file."""


class Truncated(Exception):
    """The header ends in the middle of an element."""


class ReadBuffer:
    """A sliding window of bytes over an open file of known size."""

    __slots__ = ("f", "size", "base", "data")

    def __init__(self, f: Any, size: int, first: bytes) -> None:
        self.f = f
        self.size = size
        self.base = 0
        self.data = first

    def view(self, start: int, end: int) -> int:
        """Make [start, end) readable; return the offset of ``start`` inside ``self.data``."""
        if start >= self.base and end <= self.base + len(self.data):
            return start - self.base
        if end > self.size:
            raise Truncated
        if end - start > _MAX_VALUE:
            raise Fallback
        self.f.seek(start)
        self.data = self.f.read(max(end - start, CHUNK))
        self.base = start
        if len(self.data) < end - start:
            raise Truncated
        return 0
