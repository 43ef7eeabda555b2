"""Binary-classification metrics, calibration and bootstrap intervals (pure numpy)."""

from __future__ import annotations

import math

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))),
                    np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) with ties sharing their mean rank (vectorised)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts).astype(np.float64)  # rank of the last member of each tie group
    return (upper - (counts - 1) / 2.0)[inverse.reshape(-1)]


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count one half); NaN with one class."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = _ranks(s)
    return float((r[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    y = np.asarray(y).astype(bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(s, dtype=np.float64), kind="mergesort")
    ys = y[order]
    tp = np.cumsum(ys)
    precision = tp / np.arange(1, len(ys) + 1)
    return float((precision * ys).sum() / ys.sum())


def roc_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds), thresholds descending."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    thr = np.unique(s)[::-1]
    tpr = np.array([((s >= t) & y).sum() for t in thr]) / max(int(y.sum()), 1)
    fpr = np.array([((s >= t) & ~y).sum() for t in thr]) / max(int((~y).sum()), 1)
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thr]


def confusion(y: np.ndarray, p: np.ndarray, threshold: float | np.ndarray) -> dict[str, float]:
    """Threshold metrics (positive when p >= threshold; one threshold per image when
    ``threshold`` is an array, e.g. population operating points)."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(p, dtype=np.float64) >= threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    tn = int((~pred & ~y).sum())
    fn = int((~pred & y).sum())

    def div(a: float, b: float) -> float:
        return a / b if b else float("nan")

    sens = div(tp, tp + fn)
    prec = div(tp, tp + fp)
    return {
        "sensitivity": sens,
        "specificity": div(tn, tn + fp),
        "precision": prec,
        "accuracy": div(tp + tn, len(y)),
        "f1": div(2 * tp, 2 * tp + fp + fn),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE with equal-width bins: sum over bins of |mean(p) - mean(y)| weighted by bin size."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(ece)


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return [{"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int((idx == b).sum()),
             "mean_p": float(p[idx == b].mean()) if (idx == b).any() else float("nan"),
             "frac_pos": float(y[idx == b].mean()) if (idx == b).any() else float("nan")}
            for b in range(bins)]


def nll(y: np.ndarray, logits: np.ndarray, temperature: float = 1.0) -> float:
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(y, dtype=np.float64)
    # log(1 + exp(-|z|)) + max(z, 0) - y z
    return float(np.mean(np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0) - y * z))


def fit_temperature(y: np.ndarray, logits: np.ndarray) -> float:
    """Temperature minimising the validation NLL (golden-section search on log T)."""
    lo, hi = math.log(0.05), math.log(20.0)
    phi = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - phi * (b - a), a + phi * (b - a)
    fc, fd = nll(y, logits, math.exp(c)), nll(y, logits, math.exp(d))
    for _ in range(80):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - phi * (b - a)
            fc = nll(y, logits, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + phi * (b - a)
            fd = nll(y, logits, math.exp(d))
    return float(math.exp((a + b) / 2))


def threshold_for_sensitivity(y: np.ndarray, p: np.ndarray, target: float = 0.9) -> float:
    """The highest threshold whose sensitivity (p >= t counts positive) reaches ``target``."""
    y = np.asarray(y).astype(bool)
    pos = np.sort(np.asarray(p, dtype=np.float64)[y])[::-1]
    if len(pos) == 0:
        raise ValueError("no positive cases to set a sensitivity threshold on")
    k = max(math.ceil(target * len(pos) - 1e-9), 1)  # need at least k positives at or above t
    return float(pos[k - 1])


def summary(y: np.ndarray, p: np.ndarray,
            threshold: float | np.ndarray = 0.5) -> dict[str, float]:
    out = {"n": int(len(y)), "prevalence": float(np.mean(y)) if len(y) else float("nan"),
           "auroc": auroc(y, p), "ap": average_precision(y, p),
           "ece": expected_calibration_error(y, p)}
    out.update(confusion(y, p, threshold))
    return out


def _resampler(y: np.ndarray, groups: np.ndarray | None,
               rng: np.random.Generator):  # noqa: ANN202
    """A function giving one bootstrap replicate's image indices.

    Without groups: images, stratified by label so every replicate keeps both classes. With
    groups (patients): whole groups, stratified by whether the group has a positive image, so
    a patient's correlated images travel together (a cluster bootstrap).
    """
    if groups is None:
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)

        def draw() -> np.ndarray:
            return np.concatenate([rng.choice(pos, len(pos)) if len(pos) else pos,
                                   rng.choice(neg, len(neg)) if len(neg) else neg])
        return draw
    g = np.asarray(groups)
    uniq, inv = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(inv == k) for k in range(len(uniq))]
    has_pos = np.array([y[m].max() for m in members])
    strata = [np.flatnonzero(has_pos == v) for v in (0, 1)]

    def draw_groups() -> np.ndarray:
        picks = [rng.choice(s, len(s)) for s in strata if len(s)]
        return np.concatenate([members[k] for k in np.concatenate(picks)])
    return draw_groups


def bootstrap_ci(y: np.ndarray, p: np.ndarray, threshold: float | np.ndarray,
                 n_boot: int = 2000, seed: int = 0, alpha: float = 0.05,
                 groups: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Point estimate and percentile bootstrap interval for AUROC, sensitivity, specificity, ECE.

    Resamples images stratified by label, or whole ``groups`` (patients) when given.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), p.shape)
    rng = np.random.default_rng(seed)
    draw = _resampler(y, groups, rng)
    names = ("auroc", "sensitivity", "specificity", "ece")
    point = summary(y, p, thr)
    reps: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(n_boot):
        idx = draw()
        yb, pb = y[idx], p[idx]
        c = confusion(yb, pb, thr[idx])
        reps["auroc"].append(auroc(yb, pb))
        reps["sensitivity"].append(c["sensitivity"])
        reps["specificity"].append(c["specificity"])
        reps["ece"].append(expected_calibration_error(yb, pb))
    out = {}
    for k in names:
        arr = np.asarray(reps[k], dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        lo, hi = (np.quantile(arr, [alpha / 2, 1 - alpha / 2]) if len(arr)
                  else (float("nan"), float("nan")))
        out[k] = {"value": float(point[k]), "ci_low": float(lo), "ci_high": float(hi)}
    return out


def auroc_difference(y: np.ndarray, s_new: np.ndarray, s_old: np.ndarray, n_boot: int = 2000,
                     seed: int = 0, alpha: float = 0.05,
                     groups: np.ndarray | None = None) -> dict[str, float]:
    """AUROC(new) - AUROC(old) on the same images, with a paired bootstrap interval (the same
    replicate for both models, so their shared image difficulty cancels)."""
    y = np.asarray(y).astype(int)
    a, b = np.asarray(s_new, dtype=np.float64), np.asarray(s_old, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draw = _resampler(y, groups, rng)
    diffs = []
    for _ in range(n_boot):
        idx = draw()
        diffs.append(auroc(y[idx], a[idx]) - auroc(y[idx], b[idx]))
    arr = np.asarray(diffs)
    arr = arr[np.isfinite(arr)]
    lo, hi = np.quantile(arr, [alpha / 2, 1 - alpha / 2]) if len(arr) else (np.nan, np.nan)
    return {"value": auroc(y, a) - auroc(y, b), "ci_low": float(lo), "ci_high": float(hi),
            "p_not_better": float(np.mean(arr <= 0)) if len(arr) else float("nan")}
