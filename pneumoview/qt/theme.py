"""The colours that carry meaning, in one place: the AI panel, the study tree's AI column and
the batch table say "flagged" in the same red."""

from __future__ import annotations

from PySide6.QtGui import QBrush, QColor

FLAGGED_COLOUR = "#c62828"
NOT_FLAGGED_COLOUR = "#2e7d32"
#: Not scored, not applicable, waiting.
MUTED_COLOUR = "#757575"


def state_colour(flagged: bool | None) -> str:
    """Red for flagged, green for not flagged, grey for no decision (not scored)."""
    if flagged is None:
        return MUTED_COLOUR
    return FLAGGED_COLOUR if flagged else NOT_FLAGGED_COLOUR


def state_brush(flagged: bool | None) -> QBrush:
    return QBrush(QColor(state_colour(flagged)))
