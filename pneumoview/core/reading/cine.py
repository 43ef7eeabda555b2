"""The frame rate a multi-frame image asks to be played at (PS3.3 C.7.6.5, C.8.7.x).

Cine Rate (0018,0040) and Recommended Display Frame Rate (0008,2144) are frames per second;
Frame Time (0018,1063) is milliseconds per frame. The first valid one wins; without any,
:data:`DEFAULT_FPS`.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from pneumoview.core.reading.spacing import numbers

DEFAULT_FPS = 10.0
MIN_FPS, MAX_FPS = 1.0, 60.0


def _clamp(fps: float) -> float:
    return min(MAX_FPS, max(MIN_FPS, fps))


def cine_fps(ds: Dataset | None) -> float:
    """Frames per second to play ``ds`` at, within MIN_FPS..MAX_FPS."""
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        values = numbers(ds, keyword)
        if values and values[0] > 0:
            return _clamp(values[0])
    frame_time = numbers(ds, "FrameTime")
    if frame_time and frame_time[0] > 0:
        return _clamp(1000.0 / frame_time[0])
    return DEFAULT_FPS
