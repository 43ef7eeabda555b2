"""The threshold the user sets or resets on the AI panel: everything is relabelled at once (no
model run), and the choice is remembered per model in the settings.

Which threshold an image is read at (the user's, a site profile's, the model's population
points) is :class:`pneumoview.core.aistate.AIState`'s to say; this only applies the user's
moves.
"""

from __future__ import annotations

from typing import Any

from pneumoview.core.aistate import AIState
from pneumoview.qt.ai.onscreen import OnScreenFollower
from pneumoview.qt.ai.panel import AIPanel
from pneumoview.qt.ai.saving import DeferredSave
from pneumoview.qt.ai.treecolumn import AITreeColumn


class ThresholdControl:
    """Applies the panel's threshold moves to ``state``, the image on screen and the tree."""

    def __init__(self, state: AIState, panel: AIPanel, settings: Any, saver: DeferredSave,
                 screen: OnScreenFollower, column: AITreeColumn) -> None:
        self.state = state
        self.panel = panel
        self.settings = settings
        self.saver = saver
        self.screen = screen
        self.column = column

    def set_threshold(self, value: float) -> None:
        """Relabel everything at ``value`` (no model run) and remember it for this model."""
        self.state.set_threshold(value)
        if self.panel.threshold != self.state.threshold:
            self.panel.set_threshold(self.state.threshold)
        if self.state.info is not None and hasattr(self.settings, "ai_thresholds"):
            self.saver.later()
        self.screen.reshow_current()
        self.column.refresh()

    def reset_threshold(self) -> None:
        """Back to the profile's or the model's threshold(s) (population points per image)."""
        if self.state.info is None:
            return
        self.state.reset_threshold()
        if hasattr(self.settings, "ai_thresholds"):
            self.saver.later()
        self.panel.set_threshold(self.state.threshold_for(self.screen.current_path()))
        self.screen.reshow_current()
        self.column.refresh()
