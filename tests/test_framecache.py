"""The viewer's decoded-frame cache, without Qt: bounded by count and by bytes."""

from __future__ import annotations

from pneumoview.core.framecache import FrameCache


def test_count_bound_drops_the_least_recently_used() -> None:
    cache: FrameCache[str, bytes] = FrameCache(len, max_frames=2, max_bytes=10**9)
    cache.put("a", b"1")
    cache.put("b", b"2")
    assert cache.get("a") == b"1"  # a is now the newest
    cache.put("c", b"3")
    assert "b" not in cache and "a" in cache and "c" in cache


def test_byte_bound_keeps_the_newest_frame_however_large() -> None:
    cache: FrameCache[str, bytes] = FrameCache(len, max_frames=5, max_bytes=10)
    cache.put("a", b"x" * 4)
    cache.put("b", b"x" * 4)
    assert len(cache) == 2 and cache.nbytes() == 8
    cache.put("c", b"x" * 4)
    assert "a" not in cache and cache.nbytes() == 8
    cache.put("huge", b"x" * 100)
    assert len(cache) == 1 and cache.get("huge") is not None
    cache.clear()
    assert len(cache) == 0 and cache.get("huge") is None
