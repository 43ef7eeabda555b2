"""Fitting a site profile: labelled cases of one report -> calibration, threshold, metrics.

``pneumoview calibrate REPORT.csv --labels LABELS.csv --target-sensitivity 0.9`` and the GUI's
Tools > Calibrate from Reviews both run :class:`SiteFit`, whose methods are the steps:

1. :meth:`SiteFit.match`: each label to its report row (by ``sop_instance_uid`` when the labels
   have one, else ``relpath``); only ``scored`` rows count; a label that matches no row is an
   error, since a typo in a labels file would otherwise shrink the sample silently;
2. :meth:`SiteFit.check`: one model in the report, the model it was asked for, the full-precision
   ``logit`` column present, at least :data:`calibration.MIN_PER_CLASS` of each class;
3. :meth:`SiteFit.fit`: recalibration (temperature or Platt by AIC), the target's threshold on
   the recalibrated probability, bootstrap CIs (by patient where the report names patients),
   ROC and reliability curves, written as a profile (:mod:`pneumoview.core.siteprofile`).
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np

from pneumoview.core import calibration as cal
from pneumoview.core.errors import PneumoViewError, ReportMismatchError
from pneumoview.core.paths import read_small_file
from pneumoview.core.siteprofile import PROFILE_FORMAT

MAX_LABELS_BYTES = 256 * 2**20
#: Most ROC points a profile stores (the curve is for plots; the metrics are exact).
MAX_ROC_POINTS = 400


@dataclass
class Cases:
    """Labelled scored cases: labels, raw logits, patient groups, and what was left out."""

    y: np.ndarray
    z: np.ndarray
    groups: np.ndarray | None
    model_ids: set[str] = field(default_factory=set)
    model_sha256: str = ""
    model_label: str = ""
    not_scored: int = 0  # labels whose row was not scored (refused, error...)
    duplicates: int = 0  # rows of the same SOP instance (copies) counted once
    sources: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------
def read_labels(path: str | PathLike[str]) -> tuple[str, dict[str, int]]:
    """``(key column, {key: label})`` of a labels CSV (``label`` 0/1 plus ``sop_instance_uid``
    or ``relpath``); the export of the review store is such a file."""
    try:
        text = read_small_file(path, MAX_LABELS_BYTES).decode("utf-8-sig")
    except FileNotFoundError:
        raise PneumoViewError("labels file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PneumoViewError(f"cannot read the labels file ({exc})", path) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    cols = set(reader.fieldnames or [])
    if "label" not in cols or not cols & {"sop_instance_uid", "relpath"}:
        raise PneumoViewError("the labels file needs a 'label' column (0/1) and a "
                              "'sop_instance_uid' or 'relpath' column", path)
    rows = list(reader)
    key = "sop_instance_uid" if "sop_instance_uid" in cols and rows and all(
        (r.get("sop_instance_uid") or "").strip() for r in rows) else "relpath"
    if key not in cols:
        raise PneumoViewError("some labels have no sop_instance_uid and the file has no "
                              "relpath column to match them by", path)
    labels: dict[str, int] = {}
    for i, r in enumerate(rows, start=2):
        value = (r.get("label") or "").strip()
        if value not in ("0", "1"):
            raise PneumoViewError(f"line {i}: label {value[:20]!r} is not 0 or 1", path)
        k = (r.get(key) or "").strip()
        if not k:
            raise PneumoViewError(f"line {i}: empty {key}", path)
        if k in labels and labels[k] != int(value):
            raise PneumoViewError(f"line {i}: {key} {k[:80]!r} is labelled both 0 and 1", path)
        labels[k] = int(value)
    if not labels:
        raise PneumoViewError("the labels file has no labels", path)
    return key, labels


def match_cases(rows: Sequence[Mapping[str, str]], key: str, labels: Mapping[str, int],
                where: str | None = None) -> Cases:
    """Labelled ``scored`` rows as arrays (see the module docstring, step 1)."""
    by_key: dict[str, list[Mapping[str, str]]] = {}
    for r in rows:
        k = r.get(key) or ""
        if k:
            by_key.setdefault(k, []).append(r)
    missing = [k for k in labels if k not in by_key]
    if missing:
        raise PneumoViewError(
            f"{len(missing)} label(s) match no row of the report by {key} (first: "
            f"{missing[0][:80]!r}); the labels must come from the same folder and report",
            where)
    ys, zs, gs = [], [], []
    cases = Cases(np.zeros(0), np.zeros(0), None)
    for k, label in labels.items():
        scored = [r for r in by_key[k] if r.get("status") == "scored"]
        if not scored:
            cases.not_scored += 1
            continue
        cases.duplicates += len(scored) - 1
        r = scored[0]
        if "logit" not in r or not r.get("logit"):
            raise PneumoViewError("the report has no logit column (it was made by an older "
                                  "PneumoView): flag the folder again to a new report; "
                                  "calibration never inverts a rounded probability", where)
        z = float(r["logit"])
        if not math.isfinite(z):
            continue
        ys.append(label)
        zs.append(z)
        gs.append(r.get("patient_id") or f"row:{k}")
        cases.model_ids.add(r.get("model_id") or "")
        cases.model_sha256 = r.get("model_sha256") or cases.model_sha256
        cases.model_label = r.get("model_label") or cases.model_label
    cases.y = np.asarray(ys, dtype=np.int64)
    cases.z = np.asarray(zs, dtype=np.float64)
    cases.groups = np.asarray(gs) if gs else None
    return cases


# --------------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------------
class SiteFit:
    """One calibration run; see the module docstring for the steps."""

    def __init__(self, *, metric: str, target: float, name: str, n_boot: int = cal.N_BOOT,
                 seed: int = 0) -> None:
        if metric not in (cal.SENSITIVITY, cal.SPECIFICITY):
            raise ValueError(metric)
        self.metric, self.target, self.name = metric, float(target), name
        self.n_boot, self.seed = n_boot, seed

    def check(self, cases: Cases, model_id: str, model_label: str = "") -> None:
        ids = {i for i in cases.model_ids if i}
        if len(ids) > 1 or (cases.model_ids and "" in cases.model_ids):
            raise PneumoViewError("the labelled rows come from different models; calibrate "
                                  "one model's report at a time")
        if ids and model_id and ids != {model_id}:
            have = next(iter(ids))
            raise ReportMismatchError(
                f"the report was made by another model (model_id {have[:17]}..., "
                f"{cases.model_label}) than the one to calibrate ({model_label}, model_id "
                f"{model_id[:17]}...)", field="model", report_value=have)
        n_pos = int(cases.y.sum())
        n_neg = int(len(cases.y) - n_pos)
        if n_pos < cal.MIN_PER_CLASS or n_neg < cal.MIN_PER_CLASS:
            raise PneumoViewError(
                f"too few labelled cases for a stable threshold: {n_pos} positive and {n_neg} "
                f"negative scored cases, at least {cal.MIN_PER_CLASS} of each are needed (with "
                f"fewer, one case moves the {self.metric} by more than "
                f"{100 / cal.MIN_PER_CLASS:.1f} points and its 95 % interval is wider than "
                "+-0.11); review or label more cases")

    def fit(self, cases: Cases, *, model_id: str, model_sha256: str = "",
            model_label: str = "", model_temperature: float = 1.0,
            sources: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The profile's content (:func:`siteprofile.save_profile` writes it);
        ``model_temperature`` gives the ECE of the model's own calibration beside the new one."""
        self.check(cases, model_id, model_label)
        y, z = cases.y, cases.z
        calib, fit_figures = cal.choose_calibration(y, z)
        p = calib.probabilities(z)
        threshold = cal.threshold_for(y, p, self.metric, self.target)
        at = cal.rates(y, p, threshold)
        ci = cal.bootstrap(y, p, threshold, metric=self.metric, target=self.target,
                           n_boot=self.n_boot, seed=self.seed, groups=cases.groups)
        fpr, tpr, _ = cal.roc_points(y, p)
        step = max(1, math.ceil(len(fpr) / MAX_ROC_POINTS))
        keep = sorted(set(range(0, len(fpr), step)) | {len(fpr) - 1})
        prevalence = float(y.mean())
        metrics = {"auroc": {"value": cal.auroc(y, p), "ci95": ci["auroc"]}}
        for k in ("sensitivity", "specificity", "ppv", "npv"):
            metrics[k] = {"value": at[k], "ci95": ci[k]}
        metrics["ece_before"] = {"value": cal.ece(y, cal.sigmoid(z / model_temperature))}
        metrics["ece_after"] = {"value": cal.ece(y, p)}
        return {
            "format": PROFILE_FORMAT, "name": self.name,
            "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "model_id": model_id, "model_sha256": model_sha256, "model_label": model_label,
            "n": int(len(y)), "n_positive": int(y.sum()), "n_negative": int(len(y) - y.sum()),
            "patients": int(len(set(cases.groups.tolist()))) if cases.groups is not None else 0,
            "prevalence": prevalence, "calibration": calib.as_dict(),
            "calibration_fit": fit_figures,
            "target": {"metric": self.metric, "value": self.target},
            "threshold": threshold, "threshold_ci95": ci["threshold"],
            "threshold_logit": calib.logit_at(threshold),
            "counts": {k: at[k] for k in ("tp", "fp", "tn", "fn")},
            "metrics": _finite(metrics),
            "roc": {"fpr": [float(fpr[i]) for i in keep], "tpr": [float(tpr[i]) for i in keep]},
            "reliability": cal.reliability(y, p),
            "bootstrap": {"replicates": self.n_boot, "resampled": "patients"
                          if cases.groups is not None else "cases", "seed": self.seed},
            "left_out": {"labels_not_scored": cases.not_scored,
                         "duplicate_rows": cases.duplicates},
            "sources": dict(sources or {}),
        }


def _finite(obj: Any) -> Any:
    """NaN and infinities as None (the profile is strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def file_sha256(path: str | PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def summary_table(profile: Mapping[str, Any]) -> str:
    """The table ``pneumoview calibrate`` prints."""
    m = profile["metrics"]
    calib = profile["calibration"]
    target = profile["target"]

    def ci(key: str) -> str:
        entry = m.get(key) or {}
        v, c = entry.get("value"), entry.get("ci95") or [None, None]
        if v is None:
            return "n/a"
        lo, hi = c if c and None not in c else (float("nan"), float("nan"))
        return f"{v:.3f}  ({lo:.3f}-{hi:.3f})"

    tlo, thi = profile["threshold_ci95"]
    lines = [
        f"site profile {profile['name']!r} for {profile['model_label']}",
        f"  cases            {profile['n']} ({profile['n_positive']} positive, "
        f"{profile['n_negative']} negative; {profile['patients']} patients), prevalence "
        f"{profile['prevalence']:.3f}",
        f"  calibration      {calib['why']}",
        f"  target           {target['metric']} >= {target['value']:.2f}",
        f"  threshold        {profile['threshold']:.4f}  (bootstrap {tlo:.4f}-{thi:.4f}) on the "
        "recalibrated probability",
        "  metric           value  (95 % CI, bootstrap by patient)",
    ]
    for key in ("auroc", "sensitivity", "specificity", "ppv", "npv"):
        lines.append(f"  {key:<16} {ci(key)}")
    lines.append(f"  ECE              {m['ece_before']['value']:.3f} with the model's "
                 f"calibration -> {m['ece_after']['value']:.3f}")
    left = profile["left_out"]
    if left["labels_not_scored"] or left["duplicate_rows"]:
        lines.append(f"  left out         {left['labels_not_scored']} labelled rows not scored, "
                     f"{left['duplicate_rows']} duplicate rows")
    return "\n".join(lines)
