"""The input gate in a batch run: which waiting files the model runs on, and each row's
outcome after it (the decisions themselves live in :mod:`pneumoview.core.gatepolicy`).

The decode workers compute the model input's content statistics (pure numpy, in parallel);
the content gate's rules refuse a file on them before any forward pass (too small, extreme
aspect, no content), and the heads and the atypicality read the activations of the forward
pass that gives the score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pneumoview.core.gatepolicy import GateMode, gate_fields, refuses
from pneumoview.core.reportrow import Status

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from pneumoview.core.inference import Engine
    from pneumoview.core.inputgate import GateVerdict
    from pneumoview.core.oppoints import ScoringPolicy


@dataclass
class Ready:
    """A decoded file waiting for the model: its row, model input, decoded (height, width)
    and the input's content statistics (None when the content gate's rules do not run)."""

    row: dict[str, Any]
    input: np.ndarray
    shape: tuple[int, int]
    statistics: dict[str, float] | None


def apply_rules(pending: list[Ready], engine: Engine,
                mode: GateMode) -> tuple[list[Ready], list[dict[str, Any]]]:
    """Split waiting files into those the model runs on and the rows the content gate's rules
    refuse before any forward pass."""
    gate = engine.input_gate
    if gate is None or mode is not GateMode.CONTENT:
        return list(pending), []
    ready, refused = [], []
    for r in pending:
        verdict = None if r.statistics is None else \
            gate.pre_check_statistics(r.shape, r.statistics)
        if verdict is None:
            ready.append(r)
        else:
            r.row.update(status=Status.NOT_SCORED, message=verdict.reason,
                         **gate_fields(verdict, mode, True))
            refused.append(r.row)
    return ready, refused


def scored_row(row: dict[str, Any], logit: float, verdict: GateVerdict | None,
               policy: ScoringPolicy, mode: GateMode, has_gate: bool) -> dict[str, Any]:
    """A row after the model: refused by the content gate, scored under the run's policy
    (probability, threshold and operating point of the film's population), or an error
    (non-finite output)."""
    from pneumoview.core.oppoints import row_population

    row.update(gate_fields(verdict, mode, has_gate))
    if refuses(verdict, mode):
        assert verdict is not None
        row.update(status=Status.NOT_SCORED, message=verdict.reason)
        return row
    decision = policy.decide(logit, row_population(row)) if math.isfinite(logit) else None
    if decision is not None and math.isfinite(decision.probability):
        row.update(probability=decision.probability, flagged=decision.flagged,
                   threshold=decision.threshold, logit=logit,
                   operating_point=decision.operating_point)
    else:
        from pneumoview.core.inference import NON_FINITE

        row.update(status=Status.ERROR, probability=None, flagged=None, message=NON_FINITE)
    return row
