"""Population operating points: age rules, the unknown-age choice, precedence, metadata checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pneumoview.core import oppoints as op
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.modelinfo import read_model_info
from pneumoview.core.resources import bundled_model_dir

POINTS = {"adult": {"threshold": 0.35, "target_sensitivity": 0.9},
          "paediatric": {"threshold": 0.79, "target_sensitivity": 0.9}}


def model_with_points(tmp_path: Path, points: object = POINTS) -> Path:
    """The bundled model with operating points added (same weights, another model_id)."""
    d = tmp_path / "model-op"
    shutil.copytree(bundled_model_dir(), d)
    meta = json.loads((d / "metadata.json").read_text())
    meta["operating_points"] = points
    (d / "metadata.json").write_text(json.dumps(meta))
    return d


@pytest.mark.parametrize(("age", "birth", "study", "want"), [
    ("052Y", "", "", op.ADULT),
    ("018Y", "", "", op.ADULT),
    ("017Y", "", "", op.PAEDIATRIC),
    ("216M", "", "", op.ADULT),  # 18 years in months
    ("215M", "", "", op.PAEDIATRIC),
    ("003W", "", "", op.PAEDIATRIC),
    ("010D", "", "", op.PAEDIATRIC),
    ("", "20000315", "20180315", op.ADULT),  # the 18th birthday
    ("", "20000315", "20180314", op.PAEDIATRIC),  # the day before
    ("", "20000229", "20180228", op.PAEDIATRIC),  # leap-day birth, not yet 18
    ("", "20000229", "20180301", op.ADULT),
    ("", "", "20180301", None),
    ("", "20190101", "20180101", None),  # born after the study: not a guess
    ("garbage", "", "", None),
    ("999Y", "", "", None),
    ("", "1800", "20180101", None),
    ("030Y", "20150101", "20180101", op.ADULT),  # PatientAge wins over the dates
])
def test_population_rules(age: str, birth: str, study: str, want: str | None) -> None:
    assert op.population_of(age, birth, study) == want


def test_unknown_age_takes_the_more_sensitive_point() -> None:
    pts = op.parse_operating_points(POINTS)
    assert pts.choose(op.ADULT) == ("adult", 0.35)
    assert pts.choose(op.PAEDIATRIC) == ("paediatric", 0.79)
    assert pts.choose(None) == ("age-unknown:adult", 0.35)
    flipped = op.parse_operating_points({"adult": 0.9, "paediatric": 0.2})
    assert flipped.choose(None) == ("age-unknown:paediatric", 0.2)


@pytest.mark.parametrize("bad", [
    [], {"elderly": 0.3, "adult": 0.4}, {"adult": 1.5, "paediatric": 0.3},
    {"adult": {"threshold": "x"}, "paediatric": 0.3}, {"adult": 0.4},
    {"adult": float("nan"), "paediatric": 0.3}, {"adult": True, "paediatric": 0.3},
])
def test_damaged_points_are_refused_when_the_model_is_read(tmp_path: Path, bad: object) -> None:
    with pytest.raises(PneumoViewError, match="operating_points"):
        read_model_info(model_with_points(tmp_path, bad))


def test_points_change_the_model_id_and_drive_the_policy(tmp_path: Path) -> None:
    plain = read_model_info(None)
    info = read_model_info(model_with_points(tmp_path))
    assert info.model_id != plain.model_id and info.weights_sha256 == plain.weights_sha256
    policy = op.ScoringPolicy(info)
    assert policy.uses_points
    assert policy.thresholds() == {"adult": 0.35, "paediatric": 0.79, "age-unknown:adult": 0.35}
    z = 0.5  # sigmoid(0.5 / T) ~ 0.60 with the bundled temperature
    adult, child = policy.decide(z, op.ADULT), policy.decide(z, op.PAEDIATRIC)
    assert adult.probability == child.probability
    assert adult.flagged and not child.flagged
    assert (adult.operating_point, child.operating_point) == ("adult", "paediatric")
    # --threshold overrides every point
    forced = op.ScoringPolicy(info, threshold=0.7)
    assert not forced.uses_points
    assert forced.decide(z, op.ADULT) == op.Decision(adult.probability, False, 0.7, "override")


def test_a_model_without_points_keeps_its_single_threshold(tmp_path: Path) -> None:
    """The bundled model with its ``operating_points`` removed (as v1.0 was exported)."""
    d = model_with_points(tmp_path)
    meta = json.loads((d / "metadata.json").read_text())
    del meta["operating_points"]
    (d / "metadata.json").write_text(json.dumps(meta))
    info = read_model_info(d)
    policy = op.ScoringPolicy(info)
    assert not policy.uses_points
    d = policy.decide(0.0, op.ADULT)
    assert (d.threshold, d.operating_point) == (info.threshold, "default")
    assert policy.manifest_fields() == {"operating_points": {"default": info.threshold}}


def test_probability_matches_the_engines_calibration() -> None:
    import numpy as np

    from pneumoview.core.calibration import sigmoid

    info = read_model_info(None)
    policy = op.ScoringPolicy(info)
    for z in (-800.0, -3.0, 0.0, 2.5, 800.0):
        assert policy.probability(z) == pytest.approx(
            float(sigmoid(np.array([z / info.temperature]))[0]), abs=1e-15)
