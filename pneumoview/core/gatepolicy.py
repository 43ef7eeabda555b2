"""How the app applies the content gate to a result: the one home of the gate mode, of the
decision "refused or scored", of the "scored anyway" objection text and of the report's gate
cells (``gate``, ``atypicality``, ``atypicality_percentile``).

The tag gate (:mod:`pneumoview.core.gate`) runs first and is never switched off. The content
gate (:mod:`pneumoview.core.inputgate`) is part of the model: a model folder without a ``gate``
block has none. ``--no-gate`` (:attr:`GateMode.TAGS_ONLY`) keeps the tag gate only, for
research runs: the content gate's verdict is then not applied, and the atypicality is still
measured and reported (it costs nothing beyond the score's own forward pass).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only (this module stays numpy-free to import)
    from pneumoview.core.inputgate import GateVerdict


class GateMode(str, enum.Enum):
    """Which gates decide whether an image is scored."""

    CONTENT = "content"  # the tag gate, then the model's content gate (the default)
    TAGS_ONLY = "tags_only"  # --no-gate: the tag gate alone


#: ``gate`` cell of a row that never reached the content gate (tag refusal, skipped, error)
GATE_NOT_RUN = ""
#: ``gate`` cell when ``--no-gate`` switched the content gate off
GATE_OFF = "off"
#: ``gate`` cell when the model carries no content gate
GATE_ABSENT = "absent"


def effective_gate(mode: GateMode, has_gate: bool) -> str:
    """What a run's rows were gated by, as the manifest's ``gate`` field records it:
    ``"content"`` (tag and content gate) or ``"tags"`` (tag gate alone: ``--no-gate``, or a
    model without a content gate; reports written before the content gate are ``"tags"``).
    Rows gated one way and rows gated the other never share a report."""
    return "content" if mode is GateMode.CONTENT and has_gate else "tags"


def gate_note(mode: GateMode, has_gate: bool) -> str:
    """What a run summary says about its gating ('' for the normal case)."""
    if not has_gate:
        return "tag gate only (the model has no content gate)"
    if mode is GateMode.TAGS_ONLY:
        return "tag gate only (--no-gate: the content gate's verdicts were not applied)"
    return ""


def refuses(verdict: GateVerdict | None, mode: GateMode) -> bool:
    """Whether the content gate's verdict stops the score."""
    return verdict is not None and verdict.refused and mode is GateMode.CONTENT


def gate_cell(verdict: GateVerdict | None, mode: GateMode, has_gate: bool) -> str:
    """The report's ``gate`` cell: the verdict kind (``passed``, ``rotated``, ``not_chest``,
    ``too_small``...), ``off`` under ``--no-gate``, ``absent`` for a model without a gate."""
    if not has_gate:
        return GATE_ABSENT
    if mode is GateMode.TAGS_ONLY:
        return GATE_OFF
    return GATE_NOT_RUN if verdict is None else verdict.kind.value


def gate_fields(verdict: GateVerdict | None, mode: GateMode,
                has_gate: bool) -> dict[str, Any]:
    """The three gate cells of one row (typed values; the report writer formats them)."""
    return {"gate": gate_cell(verdict, mode, has_gate),
            "atypicality": None if verdict is None else verdict.atypicality,
            "atypicality_percentile": None if verdict is None
            else verdict.atypicality_percentile}


def objection(tag_reason: str, verdict: GateVerdict | None) -> str:
    """Every gate's objection to one image, joined (what a result scored anyway carries)."""
    parts = [tag_reason] if tag_reason else []
    if verdict is not None and verdict.refused:
        parts.append(verdict.reason)
    return "; ".join(parts)
