"""The viewer's decoded frames, kept for quick back-and-forth: bounded by count and bytes.

The newest frame is always kept, however large, so the image on screen can be redrawn; older
ones go first when either bound is passed (a few big images must not pile up).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

#: Frames kept, and bytes they may hold together.
MAX_FRAMES = 3
MAX_BYTES = 512 * 2**20

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class FrameCache(Generic[K, V]):
    """An LRU of frames; ``size(value)`` says how many bytes a frame holds."""

    def __init__(self, size: Callable[[V], int], max_frames: int = MAX_FRAMES,
                 max_bytes: int = MAX_BYTES) -> None:
        self.size = size
        self.max_frames = int(max_frames)
        self.max_bytes = int(max_bytes)
        self._frames: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The frame for ``key`` (now the most recently used), or None."""
        value = self._frames.get(key)
        if value is not None:
            self._frames.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._frames[key] = value
        self._frames.move_to_end(key)
        while len(self._frames) > self.max_frames or (
                len(self._frames) > 1 and self.nbytes() > self.max_bytes):
            self._frames.popitem(last=False)

    def nbytes(self) -> int:
        return sum(self.size(v) for v in self._frames.values())

    def __contains__(self, key: object) -> bool:
        return key in self._frames

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, key: K) -> V:
        return self._frames[key]

    def clear(self) -> None:
        self._frames.clear()
