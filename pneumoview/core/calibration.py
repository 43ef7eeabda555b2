"""Site calibration maths: recalibrated probabilities, a target operating point, bootstrap CIs.

Pure numpy on arrays of labels ``y`` (0/1) and raw logits ``z`` (the report's full-precision
``logit`` column, so nothing has to invert a rounded probability). Used by
:mod:`pneumoview.core.sitefit` (``pneumoview calibrate``) and the GUI's calibration dialog.

Two recalibrations are fitted by maximum likelihood and the better one by AIC is kept:

* **temperature** ``sigmoid(z / T)``: one parameter; keeps the model's decision boundary at
  ``z = 0`` and only sharpens or softens; right when the site ranks like the training data and
  has a similar base rate;
* **Platt** ``sigmoid(a z + b)``: two parameters; the intercept ``b`` moves the probabilities for
  a site whose prevalence or film mix differs (an adult hospital against a paediatric training
  mix). It costs one parameter, so it must improve the log-likelihood by more than 1 (AIC).

Both are monotonic increasing in ``z`` (``a > 0``, ``T > 0``): a recalibration never changes the
ranking, so the ROC is the model's and only the probabilities and the chosen threshold move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pneumoview.core.errors import PneumoViewError

TEMPERATURE, PLATT = "temperature", "platt"
METHODS = (TEMPERATURE, PLATT)
SENSITIVITY, SPECIFICITY = "sensitivity", "specificity"

#: Fewest positives and negatives a site calibration accepts. With 30 positives one case moves
#: the sensitivity by 3.3 points, and a 0.90 sensitivity has a 95 % interval of about +-0.11;
#: the threshold for 0.90 is then the 27th of 30 positive scores, so 3 cases below it decide
#: it. Fewer gives a threshold that is mostly noise.
MIN_PER_CLASS = 30
#: Bootstrap replicates behind every interval.
N_BOOT = 2000


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _nll_sum(y: np.ndarray, s: np.ndarray) -> float:
    """Summed negative log-likelihood of labels ``y`` under logits ``s``."""
    return float(np.sum(np.log1p(np.exp(-np.abs(s))) + np.maximum(s, 0) - y * s))


# --------------------------------------------------------------------------------------------
# Recalibration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    """A fitted map from logit to probability (``sigmoid(a z + b)``; temperature: ``b = 0``)."""

    method: str
    a: float
    b: float = 0.0
    why: str = ""

    @property
    def temperature(self) -> float | None:
        return 1.0 / self.a if self.method == TEMPERATURE else None

    def probability(self, z: float) -> float:
        return float(sigmoid(np.array([self.a * z + self.b]))[0])

    def probabilities(self, z: np.ndarray) -> np.ndarray:
        return sigmoid(self.a * np.asarray(z, dtype=np.float64) + self.b)

    def logit_at(self, p: float) -> float:
        """The raw logit whose probability is ``p`` (a threshold on the logit scale)."""
        p = min(max(p, 1e-300), 1 - 1e-16)
        return (math.log(p / (1 - p)) - self.b) / self.a

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "a": self.a, "b": self.b,
                               "why": self.why}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        return out

    @classmethod
    def from_dict(cls, d: Any, where: str | None = None) -> Calibration:
        def bad(what: str) -> PneumoViewError:
            return PneumoViewError(f"the site profile's calibration {what}", where)

        if not isinstance(d, dict) or d.get("method") not in METHODS:
            raise bad(f"must name a method ({', '.join(METHODS)})")
        try:
            a, b = float(d["a"]), float(d.get("b", 0.0))
        except (KeyError, TypeError, ValueError):
            raise bad("has no numeric 'a' and 'b'") from None
        if not (math.isfinite(a) and math.isfinite(b)) or not 1e-3 <= a <= 100 \
                or abs(b) > 50 or (d["method"] == TEMPERATURE and b != 0.0):
            raise bad(f"has out-of-range parameters a={a!r}, b={b!r}")
        return cls(d["method"], a, b, str(d.get("why", ""))[:500])


def _newton(X: np.ndarray, t: np.ndarray, w: np.ndarray,
            bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Maximum-likelihood weights of ``sigmoid(X w)`` for targets ``t`` in [0, 1]: Newton
    steps, halved until the loss falls (plain Newton overshoots from a far start)."""
    def loss(v: np.ndarray) -> float:
        s = X @ v
        return float(np.sum(np.log1p(np.exp(-np.abs(s))) + np.maximum(s, 0) - t * s))

    current = loss(w)
    for _ in range(200):
        p = sigmoid(X @ w)
        grad = X.T @ (p - t)
        hess = X.T @ (X * (p * (1 - p))[:, None]) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6:
            cand = w - scale * step
            if bounds is not None:
                cand[0] = min(max(cand[0], bounds[0]), bounds[1])
            value = loss(cand)
            if value <= current:
                break
            scale /= 2
        else:
            break
        moved = float(np.max(np.abs(cand - w)))
        w, current = cand, value
        if moved < 1e-10:
            break
    return w


def fit_temperature(y: np.ndarray, z: np.ndarray) -> float:
    """``a = 1/T`` maximising the likelihood of ``sigmoid(a z)``."""
    z = np.asarray(z, dtype=np.float64)
    w = _newton(z[:, None], np.asarray(y, dtype=np.float64), np.array([1.0]), (1e-3, 100.0))
    return float(w[0])


def fit_platt(y: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` maximising the likelihood of ``sigmoid(a z + b)``, with Platt's target
    smoothing (labels ``(n+ + 1)/(n+ + 2)`` and ``1/(n- + 2)``), which keeps the fit finite
    when the classes separate."""
    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    t = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    w = _newton(np.stack([z, np.ones_like(z)], axis=1), t, np.array([1.0, 0.0]))
    return float(w[0]), float(w[1])


def choose_calibration(y: np.ndarray, z: np.ndarray) -> tuple[Calibration, dict[str, float]]:
    """The better of temperature and Platt by AIC, with the figures that decided it
    (mean NLL of each, and of the model's own calibration is the caller's to add)."""
    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    a_t = fit_temperature(y, z)
    a_p, b_p = fit_platt(y, z)
    if not a_p > 0:
        raise PneumoViewError("the model's scores do not rank this site's cases (the fitted "
                              "slope is not positive): a calibration would invert it. Check "
                              "the labels (0 = no pneumonia, 1 = pneumonia) and the report")
    nll_t, nll_p = _nll_sum(y, a_t * z), _nll_sum(y, a_p * z + b_p)
    aic_t, aic_p = 2 * 1 + 2 * nll_t, 2 * 2 + 2 * nll_p
    n = len(y)
    figures = {"nll_temperature": nll_t / n, "nll_platt": nll_p / n, "aic_temperature": aic_t,
               "aic_platt": aic_p}
    if aic_p < aic_t:
        why = (f"Platt scaling: AIC {aic_p:.1f} against {aic_t:.1f} for a temperature (the "
               f"intercept b={b_p:+.2f} shifts the probabilities: this site's base rate or "
               "film mix differs from the training data)")
        return Calibration(PLATT, a_p, b_p, why), figures
    why = (f"temperature: AIC {aic_t:.1f} against {aic_p:.1f} for Platt scaling (an intercept "
           "does not improve the fit by more than its cost)")
    return Calibration(TEMPERATURE, a_t, 0.0, why), figures


# --------------------------------------------------------------------------------------------
# Operating point and metrics
# --------------------------------------------------------------------------------------------
def threshold_for(y: np.ndarray, p: np.ndarray, metric: str, target: float) -> float:
    """The threshold (flag when ``p >= t``) meeting ``target`` on the point estimate.

    Sensitivity: the *highest* threshold whose sensitivity reaches the target (the most
    specific such point). Specificity: the *lowest* threshold whose specificity reaches it (the
    most sensitive such point).
    """
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    if not 0.0 < target < 1.0:
        raise PneumoViewError(f"the target {metric} must be between 0 and 1, got {target:g}")
    if metric == SENSITIVITY:
        pos = np.sort(p[y])[::-1]
        k = max(math.ceil(target * len(pos) - 1e-9), 1)
        return float(pos[k - 1])
    if metric == SPECIFICITY:
        neg = np.sort(p[~y])
        k = max(math.ceil(target * len(neg) - 1e-9), 1)
        return float(min(np.nextafter(neg[k - 1], np.inf), 1.0))
    raise ValueError(f"unknown metric {metric!r}")


def rates(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV, NPV (and counts) at ``threshold``."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(p, dtype=np.float64) >= threshold
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    tn, fn = int((~pred & ~y).sum()), int((~pred & y).sum())

    def div(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {"sensitivity": div(tp, tp + fn), "specificity": div(tn, tn + fp),
            "ppv": div(tp, tp + fp), "npv": div(tn, tn + fn),
            "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def predictive_values(sensitivity: float, specificity: float,
                      prevalence: float) -> tuple[float, float]:
    """PPV and NPV at a prevalence (Bayes), for a threshold picker at the site's prevalence."""
    tp = sensitivity * prevalence
    fp = (1 - specificity) * (1 - prevalence)
    fn = (1 - sensitivity) * prevalence
    tn = specificity * (1 - prevalence)
    ppv = tp / (tp + fp) if tp + fp > 0 else float("nan")
    npv = tn / (tn + fn) if tn + fn > 0 else float("nan")
    return ppv, npv


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve: P(positive score > negative score), ties one half; NaN with
    one class."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    neg = np.sort(s[~y])
    pos = s[y]
    if not len(pos) or not len(neg):
        return float("nan")
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (len(pos) * len(neg)))


def roc_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` at every distinct score, from (0, 0) to (1, 1)."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    thr = np.unique(s)[::-1]
    pos_sorted = np.sort(s[y])
    neg_sorted = np.sort(s[~y])
    tp = len(pos_sorted) - np.searchsorted(pos_sorted, thr, side="left")
    fp = len(neg_sorted) - np.searchsorted(neg_sorted, thr, side="left")
    tpr = tp / max(len(pos_sorted), 1)
    fpr = fp / max(len(neg_sorted), 1)
    return np.r_[0.0, fpr, 1.0], np.r_[0.0, tpr, 1.0], np.r_[np.inf, thr, -np.inf]


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Equal-width reliability bins: count, mean probability, observed fraction positive."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "n": int(m.sum()),
                    "mean_p": float(p[m].mean()) if m.any() else None,
                    "frac_pos": float(y[m].mean()) if m.any() else None})
    return out


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over :func:`reliability`'s bins."""
    n = max(len(y), 1)
    return float(sum(b["n"] / n * abs(float(b["mean_p"]) - float(b["frac_pos"]))
                     for b in reliability(y, p, bins) if b["n"]))


def bootstrap(y: np.ndarray, p: np.ndarray, threshold: float, *, metric: str, target: float,
              n_boot: int = N_BOOT, seed: int = 0,
              groups: np.ndarray | None = None) -> dict[str, list[float]]:
    """Percentile 95 % intervals ``[low, high]`` for AUROC, sensitivity, specificity, PPV and
    NPV at the fixed ``threshold``, and for the threshold itself chosen again on each replicate.

    Resamples cases stratified by label (each replicate keeps both classes); with ``groups``
    (patient ids) whole patients are resampled, so a patient's correlated films travel together.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draw = _resampler(y, groups, rng)
    keys = ("auroc", "sensitivity", "specificity", "ppv", "npv", "threshold")
    reps: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(n_boot):
        idx = draw()
        yb, pb = y[idx], p[idx]
        if yb.min() == yb.max():
            continue
        r = rates(yb, pb, threshold)
        for k in ("sensitivity", "specificity", "ppv", "npv"):
            reps[k].append(r[k])
        reps["auroc"].append(auroc(yb, pb))
        reps["threshold"].append(threshold_for(yb, pb, metric, target))
    out = {}
    for k in keys:
        arr = np.asarray(reps[k], dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        out[k] = ([float(v) for v in np.quantile(arr, [0.025, 0.975])] if len(arr)
                  else [float("nan"), float("nan")])
    return out


def _resampler(y: np.ndarray, groups: np.ndarray | None, rng: np.random.Generator):
    if groups is None:
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        return lambda: np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
    _, inv = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(inv == k) for k in range(inv.max() + 1)]
    has_pos = np.array([y[m].max() for m in members])
    strata = [np.flatnonzero(has_pos == v) for v in (0, 1)]

    def draw() -> np.ndarray:
        picks = np.concatenate([rng.choice(s, len(s)) for s in strata if len(s)])
        return np.concatenate([members[k] for k in picks])
    return draw
