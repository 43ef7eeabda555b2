"""Applying a fitted gate to cached features, through the app's own :class:`InputGate`."""

from __future__ import annotations

from pneumoview.core.inputgate import GateVerdict, InputGate
from training.gate.features import STAT_KEYS, Features


def gate_of(fitted) -> InputGate:  # noqa: ANN001 - a FittedGate
    gate = InputGate.from_model({"gate": fitted.metadata}, fitted.tensors)
    assert gate is not None
    return gate


def verdicts(gate: InputGate, feats: Features) -> list[GateVerdict]:
    out = []
    for i in range(len(feats)):
        stats = dict(zip(STAT_KEYS, map(float, feats.stats[i]), strict=True))
        out.append(gate.judge_statistics(tuple(int(v) for v in feats.shape[i]), stats,
                                         feats.pooled[i]))
    return out


def judge_features(fitted, feats: Features) -> list[str]:  # noqa: ANN001
    """The verdict kind of each row (``passed`` or a refusal kind)."""
    return [v.kind.value for v in verdicts(gate_of(fitted), feats)]
