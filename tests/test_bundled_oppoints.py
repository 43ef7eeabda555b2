"""The bundled model carries population operating points (issue 18): before, it had one
threshold, so an adult film and a child film were read at the same, mostly paediatric, point.

The points come from ``python -m training oppoints`` (recorded in the metadata), chosen on the
model's own validation split; the split is rebuilt and checked against the metadata's counts.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from pneumoview.core import oppoints as op
from pneumoview.core.modelinfo import read_model_info
from pneumoview.core.resources import bundled_model_dir

BUNDLED = bundled_model_dir()


def _meta() -> dict:
    return json.loads((BUNDLED / "metadata.json").read_text())


def test_the_bundled_model_has_a_point_per_population() -> None:
    meta = _meta()
    info = read_model_info(None)  # verified: weights sha256 and ranges
    points = op.model_points(info)
    assert set(points.as_dict()) == {op.ADULT, op.PAEDIATRIC}
    # adults need the lower threshold for the same sensitivity (v1.0's one point gave 0.56)
    assert points.thresholds[op.ADULT] < points.thresholds[op.PAEDIATRIC]
    assert meta["threshold"] == min(points.as_dict().values())  # old readers: unknown age
    # chosen on the exported folder itself (reproduce writes it under WORK, then it is copied)
    out = meta["command"]["export"].split("--out ")[1].split()[0]
    assert meta["command"]["oppoints"].startswith(f"python -m training oppoints --model {out} ")
    adult = meta["metrics"]["operating_points"]["val"]["adult"]["adult point"]
    assert adult["sensitivity"] >= meta["operating_points"]["adult"]["target_sensitivity"]
    assert adult["n"] == int(meta["operating_points"]["adult"]["chosen_on"].split("n=")[1]
                             .split(",")[0])
    test = meta["metrics"]["operating_points"]["test"]["adult"]
    # the point of a point per population: the paediatric one would miss adults
    assert test["adult point"]["sensitivity"] > test["paediatric point"]["sensitivity"]


def test_the_split_check_refuses_other_counts() -> None:
    from training.pointscmd import Film, SplitMismatch, check_split
    from training.prepare import content_hash

    films = [Film("nih", f"/x/{i}.png", i % 2, f"p{i // 2}", "val", 40.0) for i in range(6)]
    hashes = [f"h{i}" for i in range(6)]
    data = {"sources": {"nih": {"content_sha256": content_hash(hashes),
                                "splits": {"val": {"n": 6, "positive": 3, "patients": 3}}}}}
    check_split(films, hashes, data)  # the recorded split
    for key, value in (("n", 7), ("positive", 2), ("patients", 4)):
        bad = copy.deepcopy(data)
        bad["sources"]["nih"]["splits"]["val"][key] = value
        with pytest.raises(SplitMismatch, match="split val"):
            check_split(films, hashes, bad)
    with pytest.raises(SplitMismatch, match="content sha256"):
        check_split(films, [*hashes[:5], "other"], data)


def test_flag_reads_an_adult_and_a_child_at_their_points(tmp_path: Path) -> None:
    """``pneumoview flag`` with the bundled model: the two films get different thresholds and
    ``operating_point`` values, each the metadata's; an unknown age gets the lower one. The
    films are synthetic, so the input gate (which rightly refuses them) is off."""
    from pneumoview.cli import main
    from pneumoview.core import report as rep
    from tests.support.dicom_factory import make_dataset, save

    root = tmp_path / "films"
    root.mkdir()
    rng = np.random.default_rng(4)
    for name, age in (("adult", "052Y"), ("child", "006Y"), ("unknown", "")):
        extra = {"PatientAge": age} if age else {}
        save(make_dataset(rng.integers(0, 255, (256, 256)).astype(np.uint8),
                          ViewPosition="PA", PatientID=name, **extra), root / f"{name}.dcm")
    out = tmp_path / "r.csv"
    assert main(["flag", str(root), "--output", str(out), "--device", "cpu", "--workers", "1",
                 "--no-gate"]) == 0
    rows = {r["relpath"]: r for r in rep.read_report(out)}
    points = _meta()["operating_points"]
    for rel, point, pop in (("adult.dcm", "adult", "adult"),
                            ("child.dcm", "paediatric", "paediatric"),
                            ("unknown.dcm", "age-unknown:adult", "adult")):
        assert rows[rel]["status"] == "scored", rows[rel]["message"]
        assert rows[rel]["operating_point"] == point
        assert float(rows[rel]["threshold"]) == pytest.approx(points[pop]["threshold"])
    assert rows["adult.dcm"]["threshold"] != rows["child.dcm"]["threshold"]
    assert set(rep.read_manifest(out)["operating_points"]) == {
        "adult", "paediatric", "age-unknown:adult"}
