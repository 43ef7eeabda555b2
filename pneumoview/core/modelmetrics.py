"""Test-split metrics from a model's metadata, read the way the AI panel shows them.

Training writes ``metrics["test"]["all"] = {"sensitivity": v, "ci95": {"sensitivity": [lo,
hi]}, ...}`` plus one entry per data source; older or hand-made metadata may be flat or spell
the interval ``{"value", "ci_low", "ci_high"}``. Anything that is not a finite number is missing
("n/a"), never a made-up figure.
"""

from __future__ import annotations

import math
from typing import Any

#: (value, low, high) of a proportion; the bounds are None without an interval.
Metric = tuple[float, float | None, float | None]


def finite_number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _metric(entry: Any) -> Metric | None:
    """(value, low, high) from a number, ``{"value", "ci_low", "ci_high"}`` or similar."""
    if isinstance(entry, dict):
        value = finite_number(entry.get("value", entry.get("point", entry.get("estimate"))))
        if value is None:
            return None
        lo = finite_number(entry.get("ci_low", entry.get("low", entry.get("lower"))))
        hi = finite_number(entry.get("ci_high", entry.get("high", entry.get("upper"))))
        ci = entry.get("ci")
        if (lo is None or hi is None) and isinstance(ci, list | tuple) and len(ci) == 2:
            lo, hi = finite_number(ci[0]), finite_number(ci[1])
        return value, lo, hi
    value = finite_number(entry)
    return None if value is None else (value, None, None)


def _entry_metric(entry: dict, name: str) -> Metric | None:
    """A metric from one metrics entry: training's ``{name: v, "ci95": {name: [lo, hi]}}``,
    or ``{name: v}`` / ``{name: {"value", "ci_low", "ci_high"}}``."""
    if name not in entry:
        return None
    parsed = _metric(entry[name])
    ci = entry.get("ci95")
    if parsed is not None and parsed[1] is None and isinstance(ci, dict):
        bounds = ci.get(name)
        if isinstance(bounds, list | tuple) and len(bounds) == 2:
            parsed = (parsed[0], finite_number(bounds[0]), finite_number(bounds[1]))
    return parsed


def _test_split(metrics: dict | None) -> dict:
    if not isinstance(metrics, dict):
        return {}
    for key in ("test", "test_split", "test_internal"):
        if isinstance(metrics.get(key), dict):
            return metrics[key]
    return metrics


def split_metrics(metrics: dict | None) -> dict[str, Metric | None]:
    """Sensitivity and specificity on the test split at the model's threshold, from the
    metadata's ``metrics`` (``metrics["test"]["all"]`` as training writes it; a flat
    ``metrics["test"]`` or top level is accepted too). Missing numbers are None ("n/a")."""
    out: dict[str, Metric | None] = {
        "sensitivity": None, "specificity": None}
    test = _test_split(metrics)
    candidates = [test.get("all"), test]
    for name in out:
        for cand in candidates:
            parsed = _entry_metric(cand, name) if isinstance(cand, dict) else None
            if parsed is not None:
                out[name] = parsed
                break
    return out


def per_source_text(metrics: dict | None) -> str:
    """One line per data source of the test split (populations differ: children, adults)."""
    lines = []
    for source, entry in sorted(_test_split(metrics).items()):
        if source == "all" or not isinstance(entry, dict):
            continue
        sens, spec = _entry_metric(entry, "sensitivity"), _entry_metric(entry, "specificity")
        if sens is None and spec is None:
            continue
        n = entry.get("n")
        lines.append(f"{source}{f' (n={n})' if n else ''}: sensitivity "
                     f"{format_metric(sens)}, specificity {format_metric(spec)}")
    return "\n".join(lines)


def format_metric(entry: Metric | None) -> str:
    if entry is None:
        return "n/a"
    value, lo, hi = entry
    text = f"{value * 100:.1f} %"
    if lo is not None and hi is not None:
        text += f" (95 % CI {lo * 100:.1f}-{hi * 100:.1f})"
    return text

