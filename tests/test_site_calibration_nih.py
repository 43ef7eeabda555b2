"""The issue's goal on real adult films: calibrate on one half of the shared NIH adults (split
by patient) for sensitivity 0.90, flag the other half with the profile, and land within 0.05
of the target. The whole path runs: DICOM files -> flag -> calibrate -> flag --profile."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from pneumoview.cli import main
from pneumoview.core import calibration as cal
from pneumoview.core import report as rep
from pneumoview.core.batch import BatchOptions, run_batch
from pneumoview.core.siteprofile import load_profile


def _half(patient_id: str) -> int:
    return int(hashlib.sha256(patient_id.encode()).hexdigest(), 16) % 2


def _wrap(nih: Path, out: Path) -> dict[str, dict[int, dict]]:
    """The adult NIH films as DICOM files with their age, in two folders by patient half."""
    import pydicom

    from training.dicomwrap import grey_of, write_dicom

    halves: dict[str, dict[int, dict]] = {"A": {}, "B": {}}
    with open(nih / "labels.csv", newline="") as fh:
        for i, r in enumerate(csv.DictReader(fh)):
            if int(r["age"]) < 18:
                continue
            half = "AB"[_half(r["patient_id"])]
            path = write_dicom(out / half / f"{i:04d}.dcm", grey_of(nih / r["image"]),
                               patient_id=f"NIH{r['patient_id']}")
            ds = pydicom.dcmread(path)
            ds.PatientAge = f"{int(r['age']):03d}Y"
            ds.ViewPosition = r["view"]
            ds.save_as(path)
            halves[half][i] = {"label": int(r["label"]), "sop": str(ds.SOPInstanceUID)}
    return halves


@pytest.mark.shared_data("nih")
def test_site_profile_meets_its_target_on_held_out_adults(shared_data: Path,
                                                          tmp_path: Path) -> None:
    halves = _wrap(shared_data / "nih", tmp_path / "nih")
    report_a = tmp_path / "a.csv"
    run_batch(BatchOptions(tmp_path / "nih" / "A", report_a, device="cpu", quiet=True))
    labels = tmp_path / "labels-a.csv"
    with open(labels, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sop_instance_uid", "label"])
        w.writerows((c["sop"], c["label"]) for c in halves["A"].values())
    profile_path = tmp_path / "nih-adults.json"
    assert main(["calibrate", str(report_a), "--labels", str(labels), "--target-sensitivity",
                 "0.9", "-o", str(profile_path), "--name", "NIH adults half A"]) == 0
    profile = load_profile(profile_path)

    report_b = tmp_path / "b.csv"
    run_batch(BatchOptions(tmp_path / "nih" / "B", report_b, device="cpu", quiet=True,
                           profile=profile_path))
    truth = {c["sop"]: c["label"] for c in halves["B"].values()}
    rows = [r for r in rep.read_report(report_b) if r["status"] == "scored"]
    assert len(rows) >= 0.9 * len(truth)  # the gate refuses few of these films
    assert {r["operating_point"] for r in rows} == {"profile:NIH adults half A"}
    y = np.array([truth[r["sop_instance_uid"]] for r in rows])
    flagged = np.array([r["flagged"] == "true" for r in rows])
    p = np.array([float(r["probability"]) for r in rows])
    r = cal.rates(y, p, profile.threshold)
    assert (flagged == (p >= profile.threshold)).all()
    print(f"\ncalibrated on {profile.n} films ({profile.raw['n_positive']} positive), "
          f"{profile.raw['calibration']['method']}, threshold {profile.threshold:.4f}; "
          f"held-out {len(y)} films ({y.sum()} positive): sensitivity {r['sensitivity']:.3f}, "
          f"specificity {r['specificity']:.3f}, PPV {r['ppv']:.3f}")
    assert abs(r["sensitivity"] - 0.9) <= 0.05
