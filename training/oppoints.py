"""Population operating points: one threshold per population the training data has.

The adult and paediatric films behave differently (v1.0's single threshold, chosen on a mostly
paediatric validation mix, gave adult sensitivity 0.56), so the exported model carries a
threshold per population, each chosen on that population's validation images for the target
sensitivity. Metadata ``operating_points``::

    {"adult": {"threshold": t, "target_sensitivity": 0.9,
               "criterion": "PatientAge >= 18 years (else birth date against study date)",
               "age_years": [18, null]},
     "paediatric": {... "age_years": [0, 18]}}

``age_years`` is the half-open age range [low, high) in years (``null``: open). When a film's
age is unknown the more sensitive (lower) threshold applies (this is triage); metadata
``threshold`` equals it, for readers that know one threshold only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training import metrics as M
from training import recipe as R

ADULT, PAEDIATRIC = "adult", "paediatric"
POPULATIONS = {
    ADULT: {"criterion": "PatientAge >= 18 years (else birth date against study date)",
            "age_years": [18, None], "sources": R.ADULT_SOURCES},
    PAEDIATRIC: {"criterion": "PatientAge < 18 years (else birth date against study date)",
                 "age_years": [0, 18], "sources": R.PAEDIATRIC_SOURCES},
}
UNKNOWN_AGE_RULE = "the lower (more sensitive) threshold"


def population_of(source: str) -> str | None:
    """The population of a data source (``kermany_val`` counts as ``kermany``)."""
    name = source.lower()
    for pop, d in POPULATIONS.items():
        if any(name == s or name.startswith(s + "_") for s in d["sources"]):
            return pop
    return None


def choose(y: np.ndarray, p: np.ndarray, sources: Sequence[str], target: float,
           chosen_on: dict[str, str] | None = None) -> dict[str, dict]:
    """Operating point per population with validation positives (calibrated probabilities);
    none when fewer than two populations have them."""
    pops = np.asarray([population_of(s) or "" for s in sources])
    out: dict[str, dict] = {}
    for pop, d in POPULATIONS.items():
        m = pops == pop
        if not m.any() or y[m].sum() == 0:
            continue
        out[pop] = {"threshold": M.threshold_for_sensitivity(y[m], p[m], target),
                    "target_sensitivity": target, "criterion": d["criterion"],
                    "age_years": list(d["age_years"])}
        if chosen_on and pop in chosen_on:
            out[pop]["chosen_on"] = chosen_on[pop]
    # one population is no choice between points: the single ``threshold`` says the same, and
    # the app refuses a one-population set (pneumoview.core.oppoints.parse_operating_points)
    return out if len(out) > 1 else {}


def unknown_age_threshold(points: dict[str, dict]) -> float:
    return min(float(v["threshold"]) for v in points.values())


def per_image(sources: Sequence[str], points: dict[str, dict]) -> np.ndarray:
    """Each image's threshold: its population's, or the unknown-age one."""
    default = unknown_age_threshold(points)
    return np.asarray([float(points[pop]["threshold"]) if (pop := population_of(s)) in points
                       else default for s in sources])
