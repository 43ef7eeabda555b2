"""Window presets and the default window the viewer starts with."""

from __future__ import annotations

import numpy as np

from pneumoview.core import windowing


def test_default_window_taken_from_the_offered_presets_is_the_same_window() -> None:
    """The viewer passes the presets it computed; 'Auto' must be the window computed alone."""
    rng = np.random.default_rng(8)
    for shape in [(1024, 1024), (2000, 1500), (300, 7), (5, 5)]:
        values = (rng.gamma(2.0, 500.0, shape) - 100).astype(np.float32)
        offered = tuple(windowing.presets(values))
        assert windowing.default_window(values, (), None, offered) == \
            windowing.default_window(values)
    declared = windowing.Window("Lung", 500.0, 1000.0)
    assert windowing.default_window(values, (declared,), None, offered) is declared
