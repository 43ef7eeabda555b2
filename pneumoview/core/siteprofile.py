"""Site profiles: a hospital's own calibration and operating point for one model.

A profile is a small versioned JSON file (``pneumoview-site-profile-1``) written by
``pneumoview calibrate`` or the GUI's calibration dialog. It is bound to the model's identity
(``model_id``: the weights and every behavioural metadata field), because a threshold chosen
for one model version means nothing for another: :meth:`SiteProfile.check_model` refuses it with
"re-calibrate for model X". Its own identity is the sha256 of its bytes, which the batch
manifest records so ``--resume`` and ``merge-reports`` never mix profiles.

Only ``calibration`` and ``threshold`` change results; everything else (name, date, n,
prevalence, metrics with CIs, curves) describes the profile for the AI panel and the reader.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pneumoview.core.calibration import Calibration
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.paths import read_small_file, write_private_file

if TYPE_CHECKING:  # pragma: no cover
    from pneumoview.core.modelinfo import ModelInfo

PROFILE_FORMAT = "pneumoview-site-profile-1"
MAX_PROFILE_BYTES = 4 * 2**20
MAX_NAME_CHARS = 120


@dataclass(frozen=True)
class SiteProfile:
    """A parsed, checked profile (``raw`` keeps every field for display)."""

    name: str
    model_id: str
    model_label: str
    calibration: Calibration
    threshold: float
    n: int
    prevalence: float
    created: str
    sha256: str
    path: str = ""
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def metrics(self) -> dict[str, Any]:
        m = self.raw.get("metrics")
        return m if isinstance(m, dict) else {}

    def check_model(self, info: ModelInfo) -> None:
        """Refuse a profile made for another model (weights or behavioural metadata)."""
        if self.model_id != info.model_id:
            raise PneumoViewError(
                f"the site profile {self.name!r} was made for model {self.model_label or ''} "
                f"(model_id {self.model_id[:17]}...), not for {info.label} (model_id "
                f"{info.model_id[:17]}...): re-calibrate for model {info.label} "
                "(pneumoview calibrate)", self.path or None)

    def summary(self) -> str:
        """One line for the AI panel: name, n and sensitivity/specificity with CIs."""
        parts = [f"site profile {self.name!r} (n={self.n}, prevalence {self.prevalence:.2f})"]
        for key, short in (("sensitivity", "sens"), ("specificity", "spec")):
            m = self.metrics.get(key)
            if isinstance(m, dict) and isinstance(m.get("value"), int | float):
                ci = m.get("ci95") or [float("nan"), float("nan")]
                parts.append(f"{short} {m['value']:.2f} ({ci[0]:.2f}-{ci[1]:.2f})")
        return ", ".join(parts)


def profile_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def save_profile(path: str | PathLike[str], data: dict[str, Any]) -> SiteProfile:
    """Write a profile (0600, atomically) and return it parsed, with its sha256."""
    blob = profile_bytes(data)
    parsed = parse_profile(blob, str(path))
    write_private_file(path, blob)
    return parsed


def load_profile(path: str | PathLike[str]) -> SiteProfile:
    """Read and check a profile file; a clear :class:`PneumoViewError` naming it otherwise."""
    try:
        blob = read_small_file(path, MAX_PROFILE_BYTES)
    except FileNotFoundError:
        raise PneumoViewError("site profile not found", path) from None
    except OSError as exc:
        raise PneumoViewError(f"cannot read the site profile ({exc.strerror or exc})",
                              path) from None
    return parse_profile(blob, str(path))


def parse_profile(blob: bytes, where: str = "") -> SiteProfile:
    def bad(what: str) -> PneumoViewError:
        return PneumoViewError(f"not a valid PneumoView site profile: {what}", where or None)

    try:
        data = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("not JSON") from None
    if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
        raise bad(f"its format is not {PROFILE_FORMAT!r}")
    model_id = data.get("model_id")
    if not isinstance(model_id, str) or not model_id.startswith("pvm"):
        raise bad("it names no model_id")
    t = data.get("threshold")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) \
            or not 0.0 <= t <= 1.0:
        raise bad("its threshold is not a number in [0, 1]")
    n = data.get("n")
    prevalence = data.get("prevalence")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise bad("its n is not a count")
    if not isinstance(prevalence, int | float) or not 0.0 <= prevalence <= 1.0:
        raise bad("its prevalence is not in [0, 1]")
    name = str(data.get("name") or "site profile")[:MAX_NAME_CHARS]
    return SiteProfile(
        name=name, model_id=model_id, model_label=str(data.get("model_label", ""))[:300],
        calibration=Calibration.from_dict(data.get("calibration"), where or None),
        threshold=float(t), n=n, prevalence=float(prevalence),
        created=str(data.get("created", ""))[:40], sha256=hashlib.sha256(blob).hexdigest(),
        path=where, raw=data)


def profile_for(info: ModelInfo, path: str | PathLike[str] | None) -> SiteProfile | None:
    """The profile at ``path`` checked against the model (None: no profile)."""
    if not path:
        return None
    profile = load_profile(Path(path))
    profile.check_model(info)
    return profile


def active_profile_path(settings: object, model_id: str) -> str | None:
    """The profile the settings remember for ``model_id`` (File > Use Site Profile...), if its
    file still exists."""
    saved = getattr(settings, "site_profiles", None)
    path = saved.get(model_id) if isinstance(saved, dict) else None
    return path if isinstance(path, str) and path and Path(path).is_file() else None
