"""Population operating points: which threshold applies to a film, and why.

The bundled model's single threshold was chosen on a mostly paediatric validation mix; on adult
films it misses many pneumonias. A model may therefore carry one operating point per population
its training data has, in metadata ``operating_points``::

    "operating_points": {
        "adult":      {"threshold": 0.41, "target_sensitivity": 0.9, "n": 70, ...},
        "paediatric": {"threshold": 0.79, "target_sensitivity": 0.9, "n": 782, ...}
    }

Only ``threshold`` is behavioural (the rest describes how it was chosen). A film is *adult*
when its PatientAge is at least 18 years, else when its birth date lies at least 18 years
before its study date; *paediatric* when either says younger. When neither is known, the more
sensitive point applies (the lower threshold): this is triage, a missed pneumonia costs more
than a second look. ``threshold`` stays in the metadata as the default for models and readers
without operating points.

The one home of the precedence for a run's threshold: ``--threshold`` overrides everything, a
site profile overrides the model's points, the model's points override its single threshold
(:class:`ScoringPolicy`).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pneumoview.core.errors import PneumoViewError

if TYPE_CHECKING:  # pragma: no cover
    from pneumoview.core.modelinfo import ModelInfo
    from pneumoview.core.siteprofile import SiteProfile

ADULT = "adult"
PAEDIATRIC = "paediatric"
POPULATIONS = (ADULT, PAEDIATRIC)
#: Age (years) from which a film counts as adult.
ADULT_AGE_YEARS = 18

#: ``operating_point`` values that are not a population.
DEFAULT_POINT = "default"  # the model's single ``threshold``
OVERRIDE_POINT = "override"  # ``--threshold T``
PROFILE_PREFIX = "profile:"  # a site profile's threshold
UNKNOWN_AGE_PREFIX = "age-unknown:"  # no usable age: the more sensitive population point

_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)
_DAYS_PER = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}


# --------------------------------------------------------------------------------------------
# Age and population
# --------------------------------------------------------------------------------------------
def _date(text: str) -> _dt.date | None:
    digits = "".join(ch for ch in str(text or "") if ch.isdigit())[:8]
    if len(digits) != 8:
        return None
    try:
        return _dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def age_years(patient_age: str = "", birth_date: str = "", study_date: str = "") -> float | None:
    """The patient's age in years at the study, or None when the header does not say.

    PatientAge (DICOM AS, ``052Y``, ``018M``, ``003W``, ``010D``) wins; else the birth date
    against the study date (both ``YYYYMMDD``). A value that cannot be right (an age over 150
    years, a birth after the study) counts as unknown, never as a guess.
    """
    m = _AGE.match(str(patient_age or ""))
    if m:
        years = int(m.group(1)) * _DAYS_PER[m.group(2).upper()] / 365.25
        return years if years <= 150 else None
    born, seen = _date(birth_date), _date(study_date)
    if born is None or seen is None or seen < born:
        return None
    years = (seen - born).days / 365.25
    return years if years <= 150 else None


def _whole_years(born: _dt.date, seen: _dt.date) -> int:
    return seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))


def population_of(patient_age: str = "", birth_date: str = "",
                  study_date: str = "") -> str | None:
    """``adult``, ``paediatric`` or None (unknown): see the module docstring."""
    m = _AGE.match(str(patient_age or ""))
    if m:
        years = age_years(patient_age)
        if years is None:
            return None
        return ADULT if years >= ADULT_AGE_YEARS else PAEDIATRIC
    born, seen = _date(birth_date), _date(study_date)
    if born is None or seen is None or seen < born or age_years("", birth_date,
                                                                 study_date) is None:
        return None
    # whole birthdays, not days / 365.25: a patient is 18 on their 18th birthday
    return ADULT if _whole_years(born, seen) >= ADULT_AGE_YEARS else PAEDIATRIC


# --------------------------------------------------------------------------------------------
# The model's points
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OperatingPoints:
    """Population -> threshold on the model's calibrated probability."""

    thresholds: Mapping[str, float]

    def __bool__(self) -> bool:
        return bool(self.thresholds)

    @property
    def most_sensitive(self) -> str:
        """The population whose point has the lowest threshold (ties: the first listed)."""
        return min(POPULATIONS, key=lambda p: (self.thresholds.get(p, math.inf),
                                               POPULATIONS.index(p)))

    def choose(self, population: str | None) -> tuple[str, float]:
        """``(operating_point label, threshold)`` for a film of ``population`` (None: unknown)."""
        if population is not None and population in self.thresholds:
            return population, float(self.thresholds[population])
        name = self.most_sensitive
        return UNKNOWN_AGE_PREFIX + name, float(self.thresholds[name])

    def as_dict(self) -> dict[str, float]:
        return {k: float(self.thresholds[k]) for k in POPULATIONS if k in self.thresholds}


def parse_operating_points(value: Any, where: str | Path | None = None) -> OperatingPoints:
    """Check metadata ``operating_points`` (absent: none). Raises :class:`PneumoViewError` for
    a value that is not a map of known populations to thresholds in [0, 1]."""
    if value is None:
        return OperatingPoints({})

    def bad(what: str) -> PneumoViewError:
        return PneumoViewError(f"metadata field 'operating_points' {what}; the metadata was "
                               "damaged or altered: re-export the model", where)

    if not isinstance(value, dict):
        raise bad("is not an object")
    out: dict[str, float] = {}
    for name, point in value.items():
        if name not in POPULATIONS:
            raise bad(f"names an unknown population {str(name)[:40]!r} (known: "
                      f"{', '.join(POPULATIONS)})")
        t = point.get("threshold") if isinstance(point, dict) else point
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) \
                or not 0.0 <= t <= 1.0:
            raise bad(f"has an invalid threshold for {name!r} (it must be a number in [0, 1])")
        out[name] = float(t)
    if len(out) == 1:
        raise bad("has one population only (an operating point per population, or none)")
    return OperatingPoints(out)


def model_points(info: ModelInfo) -> OperatingPoints:
    return parse_operating_points(info.raw.get("operating_points"),
                                  info.directory / "metadata.json")


# --------------------------------------------------------------------------------------------
# A run's policy
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """How one logit reads under a policy."""

    probability: float
    flagged: bool
    threshold: float
    operating_point: str


class ScoringPolicy:
    """Logit -> probability, threshold and flag for one run (viewer, batch, report).

    Precedence (the one home for it): an explicit threshold (``--threshold`` or the viewer's
    slider) > a site profile (its calibration and threshold) > the model's population points >
    the model's single threshold.
    """

    def __init__(self, info: ModelInfo, threshold: float | None = None,
                 profile: SiteProfile | None = None) -> None:
        if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise PneumoViewError(f"--threshold must be in [0, 1], got {threshold:g}")
        if profile is not None:
            profile.check_model(info)
        self.info = info
        self.override = None if threshold is None else float(threshold)
        self.profile = profile
        self.points = model_points(info)

    # ---- what the run uses
    @property
    def uses_points(self) -> bool:
        return self.override is None and self.profile is None and bool(self.points)

    @property
    def default_threshold(self) -> float:
        """The threshold of a film of unknown age (the manifest's and summary's ``threshold``)."""
        return self.decide_threshold(None)[1]

    def decide_threshold(self, population: str | None) -> tuple[str, float]:
        if self.override is not None:
            return OVERRIDE_POINT, self.override
        if self.profile is not None:
            return PROFILE_PREFIX + self.profile.name, self.profile.threshold
        if self.points:
            return self.points.choose(population)
        return DEFAULT_POINT, float(self.info.threshold)

    def thresholds(self) -> dict[str, float]:
        """Every operating point a row of this run may carry, by label (the manifest's set)."""
        if not self.uses_points:
            label, t = self.decide_threshold(None)
            return {label: t}
        out = {p: t for p, t in self.points.as_dict().items()}
        unknown, t = self.points.choose(None)
        out[unknown] = t
        return out

    def probability(self, logit: float) -> float:
        if self.profile is not None:
            return self.profile.calibration.probability(logit)
        return sigmoid(logit / self.info.temperature)

    def decide(self, logit: float, population: str | None = None) -> Decision:
        p = self.probability(logit)
        label, t = self.decide_threshold(population)
        return Decision(p, bool(p >= t), t, label)

    def manifest_fields(self) -> dict[str, Any]:
        """What the batch manifest records so ``--resume`` and merges never mix policies."""
        out: dict[str, Any] = {"operating_points": self.thresholds()}
        if self.profile is not None:
            out["profile"] = {"name": self.profile.name, "sha256": self.profile.sha256}
        return out

    def describe(self) -> str:
        """One line for the panel and the CLI: which threshold(s) apply and where they come
        from."""
        if self.override is not None:
            return f"threshold {self.override:.3f} (set by hand: overrides the model's)"
        if self.profile is not None:
            return (f"site profile {self.profile.name!r}: threshold "
                    f"{self.profile.threshold:.3f}")
        if self.points:
            parts = ", ".join(f"{p} {t:.3f}" for p, t in self.points.as_dict().items())
            return (f"population operating points: {parts} (age unknown: "
                    f"{self.points.most_sensitive})")
        return f"threshold {self.info.threshold:.3f} (the model's)"


def point_text(label: str) -> str:
    """An ``operating_point`` label in words (the AI panel's "Operating point" line)."""
    if label == ADULT:
        return f"adult (age {ADULT_AGE_YEARS} y or more)"
    if label == PAEDIATRIC:
        return f"paediatric (under {ADULT_AGE_YEARS} y)"
    if label.startswith(UNKNOWN_AGE_PREFIX):
        return (f"age unknown: the more sensitive point "
                f"({label[len(UNKNOWN_AGE_PREFIX):]})")
    if label.startswith(PROFILE_PREFIX):
        return f"site profile {label[len(PROFILE_PREFIX):]!r}"
    if label == OVERRIDE_POINT:
        return "set by hand (overrides the model's and any profile's)"
    if label == DEFAULT_POINT:
        return "the model's threshold"
    return label


def sigmoid(z: float) -> float:
    """A numerically safe logistic function (no overflow for |z| > 709)."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def row_population(row: Mapping[str, Any]) -> str | None:
    """The population of a report row's film from the header facts the decoder keeps."""
    return population_of(str(row.get("patient_age") or ""), str(row.get("birth_date") or ""),
                         str(row.get("study_date") or ""))


# --------------------------------------------------------------------------------------------
# Reports: what a manifest records, and the refusal to mix
# --------------------------------------------------------------------------------------------
def manifest_policy(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The policy fields of a manifest; a manifest written before them used its one
    ``threshold`` for every row (``{"default": threshold}``; an override looks the same)."""
    points = manifest.get("operating_points")
    if not isinstance(points, dict):
        points = {DEFAULT_POINT: float(manifest["threshold"])}
    out: dict[str, Any] = {"operating_points": points}
    if isinstance(manifest.get("profile"), dict):
        out["profile"] = manifest["profile"]
    return out


def _same_points(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal sets of thresholds; a one-threshold set matches whatever it is labelled
    (``default`` in an old manifest, ``override`` when --threshold gave the same value)."""
    if len(a) == 1 and len(b) == 1:
        return float(next(iter(a.values()))) == float(next(iter(b.values())))
    return {k: float(v) for k, v in a.items()} == {k: float(v) for k, v in b.items()}


def policy_mismatch(have: Mapping[str, Any], want: Mapping[str, Any], *,
                    single_thresholds: bool = True) -> str | None:
    """Why a report made under ``have`` cannot be continued or merged with ``want`` (the
    :meth:`ScoringPolicy.manifest_fields` of each), or None. ``single_thresholds=False``
    leaves two different single thresholds to the caller's own message."""
    hp, wp = have.get("profile"), want.get("profile")
    if (hp or {}).get("sha256") != (wp or {}).get("sha256"):
        def name(p: Any) -> str:
            return f"site profile {p.get('name')!r}" if p else "no site profile"
        return f"refusing to mix profiles: the report used {name(hp)}, this run {name(wp)}"
    hpts, wpts = have["operating_points"], want["operating_points"]
    if not single_thresholds and len(hpts) == 1 and len(wpts) == 1:
        return None
    if not _same_points(hpts, wpts):
        def text(points: Mapping[str, Any]) -> str:
            return ", ".join(f"{k} {float(v):.6g}" for k, v in sorted(points.items()))
        return ("refusing to mix operating points: the report used "
                f"{text(have['operating_points'])}, this run {text(want['operating_points'])}")
    return None


def check_manifest_policy(data: Mapping[str, Any], where: str) -> None:
    """Types of the manifest's ``operating_points`` and ``profile`` (when present)."""
    points = data.get("operating_points")
    if points is not None:
        if not isinstance(points, dict) or not points or len(points) > 16 or not all(
                isinstance(k, str) and not isinstance(v, bool) and isinstance(v, int | float)
                and math.isfinite(v) and 0.0 <= v <= 1.0 for k, v in points.items()):
            raise PneumoViewError(f"{where}: 'operating_points' must map names to thresholds "
                                  "in [0, 1]")
    profile = data.get("profile")
    if profile is not None and not (isinstance(profile, dict)
                                    and isinstance(profile.get("sha256"), str)
                                    and isinstance(profile.get("name"), str)):
        raise PneumoViewError(f"{where}: 'profile' must name a site profile and its sha256")
