"""Site calibration: the maths, the profile file, and `pneumoview calibrate` on a report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pneumoview.cli import main
from pneumoview.core import calibration as cal
from pneumoview.core import report as rep
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.modelinfo import read_model_info
from pneumoview.core.oppoints import ScoringPolicy
from pneumoview.core.siteprofile import load_profile


def site_logits(n_pos: int, n_neg: int, seed: int = 0, shift: float = -1.5,
                scale: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and logits of a site whose logits are off by an intercept (adult films read
    too low): the true model is sigmoid((z - shift) / scale)."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    z = np.where(y == 1, rng.normal(1.0, 1.2, len(y)), rng.normal(-1.0, 1.2, len(y)))
    return y, scale * z + shift


def write_report(path: Path, y: np.ndarray, z: np.ndarray, *, model_id: str,
                 extra_rows: int = 0) -> list[dict]:
    info = read_model_info(None)
    rows = []
    for i, zi in enumerate(z):
        rows.append({"path": f"/data/site/img{i:04d}.dcm", "relpath": f"img{i:04d}.dcm",
                     "file_size": 100, "mtime_ns": 1, "status": "scored",
                     "probability": 1 / (1 + math.exp(-zi / info.temperature)),
                     "flagged": False, "threshold": info.threshold, "message": "",
                     "patient_id": f"P{i // 2}", "study_instance_uid": f"1.2.{i}",
                     "series_instance_uid": f"1.3.{i}", "sop_instance_uid": f"1.4.{i}",
                     "view_position": "PA", "model_sha256": info.weights_sha256,
                     "model_label": info.label, "model_id": model_id, "logit": float(zi),
                     "operating_point": "default"})
    for j in range(extra_rows):
        rows.append({"path": f"/data/site/bad{j}.dcm", "relpath": f"bad{j}.dcm",
                     "status": "not_scored", "message": "lateral", "sop_instance_uid":
                     f"9.9.{j}", "model_sha256": info.weights_sha256, "model_id": model_id})
    rep.write_report_atomic(path, rows)
    return rows


def write_labels(path: Path, rows: list[dict], y: np.ndarray, key: str = "sop_instance_uid",
                 extra: list[tuple[str, int]] = ()) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([key, "label"])
        for r, label in zip(rows, y, strict=False):
            w.writerow([r[key], int(label)])
        w.writerows(extra)


@pytest.fixture
def site(tmp_path: Path) -> dict:
    info = read_model_info(None)
    y, z = site_logits(80, 120)
    report = tmp_path / "report.csv"
    rows = write_report(report, y, z, model_id=info.model_id, extra_rows=2)
    labels = tmp_path / "labels.csv"
    write_labels(labels, rows, y, extra=[("9.9.0", 1)])
    return {"info": info, "y": y, "z": z, "report": report, "labels": labels, "rows": rows}


# ---- maths


def test_platt_recovers_an_intercept_and_temperature_a_scale() -> None:
    y, z = site_logits(4000, 4000, shift=-1.5, scale=2.0)
    c, figures = cal.choose_calibration(y, z)
    assert c.method == cal.PLATT and "AIC" in c.why
    # logit of truth = (2.0 / 1.2^2)(z/2 + 0.75)... the slope and intercept are positive
    assert c.a > 0 and c.b > 0.5
    y2, z2 = site_logits(4000, 4000, shift=0.0, scale=3.0)
    c2, _ = cal.choose_calibration(y2, z2)
    assert c2.method == cal.TEMPERATURE
    assert c2.temperature == pytest.approx(3.0 * 1.2**2 / 2.0, rel=0.08)
    assert figures["nll_platt"] < figures["nll_temperature"]


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_threshold_is_the_highest_meeting_the_sensitivity(target: float) -> None:
    y, z = site_logits(97, 150, seed=3)
    p = cal.sigmoid(z)
    t = cal.threshold_for(y, p, cal.SENSITIVITY, target)
    assert cal.rates(y, p, t)["sensitivity"] >= target
    above = p[p > t]
    if len(above):
        assert cal.rates(y, p, above.min())["sensitivity"] < target


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_threshold_is_the_lowest_meeting_the_specificity(target: float) -> None:
    y, z = site_logits(97, 150, seed=4)
    p = cal.sigmoid(z)
    t = cal.threshold_for(y, p, cal.SPECIFICITY, target)
    assert cal.rates(y, p, t)["specificity"] >= target
    below = p[p < t]
    assert cal.rates(y, p, below.max())["specificity"] < target


def test_auroc_and_roc_agree_and_handle_ties() -> None:
    y = np.array([1, 1, 0, 0, 1, 0])
    s = np.array([0.9, 0.5, 0.5, 0.1, 0.7, 0.7])
    assert cal.auroc(y, s) == pytest.approx((3 + 1.5 + 2.5) / 9)  # ties count one half
    fpr, tpr, _ = cal.roc_points(y, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(cal.auroc(y, s))
    assert cal.predictive_values(0.9, 0.8, 0.1) == pytest.approx(
        (0.09 / (0.09 + 0.18), 0.72 / (0.72 + 0.01)))


def test_bootstrap_interval_covers_the_point_and_shrinks_with_n() -> None:
    widths = []
    for n in (60, 600):
        y, z = site_logits(n, n, seed=1)
        p = cal.sigmoid(z)
        t = cal.threshold_for(y, p, cal.SENSITIVITY, 0.9)
        ci = cal.bootstrap(y, p, t, metric=cal.SENSITIVITY, target=0.9, n_boot=300)
        sens = cal.rates(y, p, t)["sensitivity"]
        assert ci["sensitivity"][0] <= sens <= ci["sensitivity"][1]
        assert ci["threshold"][0] <= t <= ci["threshold"][1]
        widths.append(ci["sensitivity"][1] - ci["sensitivity"][0])
    assert widths[1] < widths[0] / 2


# ---- the command


def test_calibrate_writes_a_bound_profile(site: dict, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "site.json"
    code = main(["calibrate", str(site["report"]), "--labels", str(site["labels"]),
                 "--target-sensitivity", "0.9", "-o", str(out), "--name", "Ward 7 adults",
                 "--n-boot", "300"])
    text = capsys.readouterr()
    assert code == 0, text.err
    assert "threshold" in text.out and "sensitivity" in text.out and "Platt" in text.out
    assert "1 labelled rows not scored" in text.out and "\\x0a" not in text.out
    assert len(text.out.splitlines()) >= 12
    profile = load_profile(out)
    assert profile.name == "Ward 7 adults" and profile.n == 200
    assert profile.model_id == site["info"].model_id
    assert profile.prevalence == pytest.approx(0.4)
    assert (out.stat().st_mode & 0o777) == 0o600
    sens = profile.metrics["sensitivity"]
    assert sens["value"] >= 0.9 and sens["ci95"][0] < sens["value"] <= sens["ci95"][1]
    # the profile's threshold on its own calibration gives the target on the site's cases
    policy = ScoringPolicy(site["info"], profile=profile)
    flagged = np.array([policy.decide(z).flagged for z in site["z"]])
    assert flagged[site["y"] == 1].mean() == pytest.approx(sens["value"])
    assert policy.decide(0.0).operating_point == "profile:Ward 7 adults"
    assert "n=200" in profile.summary() and "sens 0." in profile.summary()


def test_calibrate_by_relpath_and_for_specificity(site: dict, tmp_path: Path) -> None:
    labels = tmp_path / "by-path.csv"
    write_labels(labels, site["rows"], site["y"], key="relpath")
    out = tmp_path / "spec.json"
    assert main(["calibrate", str(site["report"]), "--labels", str(labels),
                 "--target-specificity", "0.95", "-o", str(out), "--n-boot", "200"]) == 0
    data = json.loads(out.read_text())
    assert data["sources"]["matched_by"] == "relpath"
    assert data["metrics"]["specificity"]["value"] >= 0.95
    assert data["target"] == {"metric": "specificity", "value": 0.95}


@pytest.mark.parametrize(("mutate", "message"), [
    ("unknown_label", "match no row of the report"),
    ("few_positives", "at least 30 of each"),
    ("other_model", "another model"),
    ("no_logit", "no logit column"),
])
def test_calibrate_refuses_with_the_reason(site: dict, tmp_path: Path, mutate: str,
                                           message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    report, labels = site["report"], site["labels"]
    if mutate == "unknown_label":
        write_labels(labels, site["rows"], site["y"], extra=[("1.4.does-not-exist", 0)])
    elif mutate == "few_positives":
        keep = [i for i, v in enumerate(site["y"]) if v == 0 or i < 29]
        write_labels(labels, [site["rows"][i] for i in keep], site["y"][keep])
    elif mutate == "other_model":
        write_report(report, site["y"], site["z"], model_id="pvm1-" + "0" * 64, extra_rows=2)
    elif mutate == "no_logit":
        n = rep.COLUMNS.index("logit")  # a report of format 3: no logit, no operating_point
        cells = list(csv.reader(report.read_text().splitlines()))
        with open(report, "w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(c[:n] for c in cells)
    out = tmp_path / "p.json"
    assert main(["calibrate", str(report), "--labels", str(labels), "--target-sensitivity",
                 "0.9", "-o", str(out), "--n-boot", "200"]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_profile_for_another_model_is_refused(site: dict, tmp_path: Path) -> None:
    import shutil

    from pneumoview.core.resources import bundled_model_dir

    out = tmp_path / "site.json"
    assert main(["calibrate", str(site["report"]), "--labels", str(site["labels"]),
                 "--target-sensitivity", "0.9", "-o", str(out), "--n-boot", "200"]) == 0
    other = tmp_path / "other-model"
    shutil.copytree(bundled_model_dir(), other)
    meta = json.loads((other / "metadata.json").read_text())
    meta["temperature"] = 1.5
    (other / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PneumoViewError, match="re-calibrate for model"):
        ScoringPolicy(read_model_info(other), profile=load_profile(out))


@pytest.mark.parametrize("edit", [
    {"format": "x"}, {"threshold": 2}, {"calibration": {"method": "platt", "a": -1, "b": 0}},
    {"calibration": {"method": "magic"}}, {"model_id": None},
])
def test_damaged_profiles_are_refused(site: dict, tmp_path: Path, edit: dict) -> None:
    out = tmp_path / "site.json"
    assert main(["calibrate", str(site["report"]), "--labels", str(site["labels"]),
                 "--target-sensitivity", "0.9", "-o", str(out), "--n-boot", "200"]) == 0
    data = json.loads(out.read_text())
    data.update(edit)
    out.write_text(json.dumps(data))
    with pytest.raises(PneumoViewError, match="site profile"):
        load_profile(out)


def test_view_profile_is_checked_and_remembered_per_model(site: dict, tmp_path: Path) -> None:
    from pneumoview.commands.view import remember_profile
    from pneumoview.core.settings import load_settings
    from pneumoview.core.siteprofile import active_profile_path

    out = tmp_path / "site.json"
    assert main(["calibrate", str(site["report"]), "--labels", str(site["labels"]),
                 "--target-sensitivity", "0.9", "-o", str(out), "--n-boot", "200"]) == 0
    remember_profile(str(out), None)
    settings = load_settings()
    assert active_profile_path(settings, site["info"].model_id) == str(out)
    import shutil

    from pneumoview.core.resources import bundled_model_dir

    other = tmp_path / "other"
    shutil.copytree(bundled_model_dir(), other)
    meta = json.loads((other / "metadata.json").read_text())
    meta["threshold"] = 0.5
    (other / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PneumoViewError, match="re-calibrate"):
        remember_profile(str(out), str(other))


def test_the_viewer_state_uses_the_active_profile(site: dict, tmp_path: Path) -> None:
    from pneumoview.core.aistate import AIState
    from pneumoview.core.inference import Prediction
    from pneumoview.core.settings import Settings

    out = tmp_path / "site.json"
    assert main(["calibrate", str(site["report"]), "--labels", str(site["labels"]),
                 "--target-sensitivity", "0.9", "-o", str(out), "--n-boot", "200"]) == 0
    profile = load_profile(out)
    info = site["info"]
    settings = Settings(site_profiles={info.model_id: str(out)})
    state = AIState(settings)
    state.model_loaded(info)
    assert state.profile is not None and state.threshold == profile.threshold
    from pneumoview.core.modelinfo import calibrated_probability

    own = float(calibrated_probability(np.array([-0.4]), info.temperature)[0])
    pred = Prediction(path="x.dcm", frame=0, status="scored", probability=own, logit=-0.4,
                      threshold=info.threshold, flagged=False, reason="", model_label="m",
                      model_sha256=info.weights_sha256, model_id=info.model_id)
    shown = state.shown(pred)
    assert shown.probability == pytest.approx(profile.calibration.probability(-0.4))
    assert shown.threshold == profile.threshold
    assert shown.flagged == (shown.probability >= profile.threshold)
    # without a profile (or with a missing file) the model's own calibration stays
    plain = AIState(Settings(site_profiles={info.model_id: str(tmp_path / "gone.json")}))
    plain.model_loaded(info)
    assert own != pytest.approx(profile.calibration.probability(-0.4))
    assert plain.profile is None and plain.shown(pred).probability == pytest.approx(own)
