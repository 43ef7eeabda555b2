"""AI results as DICOM objects: the SR and the Secondary Capture, built, written by
``flag --dicom-out``, read back with highdicom and pydicom, and validated by dciodvfy."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pydicom
import pytest
from batch_support import build_small_folder
from dicomout_support import (
    dciodvfy_errors,
    evidence_uids,
    sr_evaluations,
    sr_measurements,
    sr_texts,
)

from pneumoview.cli import main
from pneumoview.core import report as rep
from pneumoview.core.dicomio import decode
from pneumoview.core.dicomout.output import check_output_folder
from pneumoview.core.dicomout.picture import NOT_FOR_DIAGNOSTIC_USE, compose, film_rgb
from pneumoview.core.dicomout.result import AIResult, ModelIdentity
from pneumoview.core.dicomout.sc import build_sc
from pneumoview.core.dicomout.sr import build_sr
from pneumoview.core.errors import PneumoViewError
from tests.support.dicom_factory import ct_dataset, make_dataset, save

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
MODEL = ModelIdentity("pneumoview-test", "0.0-test", "ab" * 32, "pv-model-1-" + "cd" * 32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.model_fixture import make_random_model_dir

    return make_random_model_dir(tmp_path_factory.mktemp("model") / "m", seed=3)


@pytest.fixture(scope="module")
def flagged(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict[str, Path]:
    """``flag --dicom-out`` over 3 films and a CT (not scored: no objects)."""
    base = tmp_path_factory.mktemp("dicomout")
    folder = build_small_folder(base / "data", 3, size=192)
    save(ct_dataset(np.zeros((64, 64), np.int16)), folder / "ct.dcm")
    out, report = base / "results", base / "r.csv"
    status = main(["flag", str(folder), "-o", str(report), "--model", str(model_dir),
                   "--workers", "1", "-q", "--dicom-out", str(out)])
    assert status == 0
    return {"folder": folder, "out": out, "report": report}


def _objects(out: Path) -> dict[str, list[pydicom.Dataset]]:
    by_class: dict[str, list[pydicom.Dataset]] = {}
    for f in sorted(out.iterdir()):
        ds = pydicom.dcmread(f)
        assert f.name == f"{ds.SOPInstanceUID}.dcm"
        by_class.setdefault(ds.SOPClassUID, []).append(ds)
    return by_class


def test_one_sr_and_one_sc_per_scored_image_and_nothing_else(flagged: dict[str, Path]) -> None:
    rows = [rep.parse_row(r) for r in rep.read_report(flagged["report"])]
    scored = [r for r in rows if r["status"] == "scored"]
    assert len(scored) == 3 and len(rows) == 4
    objects = _objects(flagged["out"])
    assert set(objects) == {SR_CLASS, SC_CLASS}
    assert len(objects[SR_CLASS]) == len(objects[SC_CLASS]) == 3
    assert len(list(flagged["out"].iterdir())) == 6  # no sidecar, log or DICOMDIR
    assert stat.S_IMODE(flagged["out"].stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in flagged["out"].iterdir())


def test_sr_says_what_the_report_says(flagged: dict[str, Path]) -> None:
    rows = {r["sop_instance_uid"]: rep.parse_row(r) for r in rep.read_report(flagged["report"])}
    for f in flagged["out"].iterdir():
        ds = pydicom.dcmread(f)
        if ds.SOPClassUID != SR_CLASS:
            continue
        (source_uid,) = evidence_uids(ds)
        row = rows[source_uid]
        source = pydicom.dcmread(row["path"], stop_before_pixels=True)
        nums = sr_measurements(f)
        assert nums["Probability"] == (row["probability"], "1")
        assert nums["Operating point threshold"][0] == pytest.approx(row["threshold"])
        state = sr_evaluations(f)["AI flag state"]
        assert state == ("Flagged: possible pneumonia" if row["flagged"] else "Not flagged")
        assert ds.VerificationFlag == "UNVERIFIED" and ds.CompletionFlag == "COMPLETE"
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.PatientID == source.PatientID
        texts = sr_texts(ds)
        assert any(NOT_FOR_DIAGNOSTIC_USE in t for t in texts)
        # TID 4019 algorithm parameters carry the values, not only their names
        assert f"model_id={row['model_id']}" in texts
        assert f"weights_sha256={row['model_sha256']}" in texts


def test_secondary_capture_references_its_source(flagged: dict[str, Path]) -> None:
    rows = {r["sop_instance_uid"]: r for r in rep.read_report(flagged["report"])}
    for ds in _objects(flagged["out"])[SC_CLASS]:
        source_uid = ds.SourceImageSequence[0].ReferencedSOPInstanceUID
        assert source_uid in rows
        assert ds.BurnedInAnnotation == "YES" and ds.PhotometricInterpretation == "RGB"
        assert ds.StudyInstanceUID == rows[source_uid]["study_instance_uid"]
        assert ds.pixel_array.shape[2] == 3 and ds.Columns >= 768


def test_dciodvfy_reports_no_errors(flagged: dict[str, Path]) -> None:
    for f in sorted(flagged["out"].iterdir()):
        assert dciodvfy_errors(f) == [], f


def test_real_films_give_valid_objects(tmp_path: Path, shared_data: Path | None) -> None:
    if shared_data is None:
        pytest.skip("../shared/data is not available")
    for path in sorted((shared_data / "dicom").glob("*.dcm")):
        decoded = decode(path)
        result = AIResult(probability=0.8123456, threshold=0.790642, flagged=True, model=MODEL,
                          operating_point="adult", gate="scored anyway despite: a test")
        sr = build_sr(result, decoded.header, str(path))
        cam = np.random.default_rng(0).random((7, 7)).astype(np.float32)
        sc = build_sc(result, decoded.header, compose(film_rgb(decoded), cam, result), str(path))
        for name, ds in (("sr", sr), ("sc", sc)):
            target = tmp_path / f"{path.stem}-{name}.dcm"
            ds.save_as(target, enforce_file_format=True)
            assert dciodvfy_errors(target) == [], target
        assert sr_measurements(tmp_path / f"{path.stem}-sr.dcm")["Probability"][0] == 0.8123456


def test_source_without_study_uid_is_refused_by_name(tmp_path: Path) -> None:
    ds = make_dataset(np.zeros((32, 32), np.uint8))
    del ds.StudyInstanceUID
    result = AIResult(probability=0.5, threshold=0.5, flagged=True, model=MODEL)
    with pytest.raises(PneumoViewError, match="StudyInstanceUID") as info:
        build_sr(result, ds, "/x/film.dcm")
    assert "film.dcm" in str(info.value)


def test_invalid_source_values_are_left_out_not_copied(tmp_path: Path) -> None:
    ds = make_dataset(np.zeros((32, 32), np.uint8), PatientAge="81")  # AS needs '081Y'
    result = AIResult(probability=0.25, threshold=0.5, flagged=False, model=MODEL)
    sr = build_sr(result, ds)
    assert "PatientAge" not in sr
    target = tmp_path / "sr.dcm"
    sr.save_as(target, enforce_file_format=True)
    assert dciodvfy_errors(target) == []


@pytest.mark.parametrize("inside", ["same", "below"])
def test_output_inside_the_scanned_folder_is_a_usage_error(tmp_path: Path, model_dir: Path,
                                                           inside: str) -> None:
    folder = build_small_folder(tmp_path / "data", 1, size=64)
    out = folder if inside == "same" else folder / "s0" / "results"
    with pytest.raises(PneumoViewError, match="inside the scanned folder"):
        check_output_folder(out, [folder])
    status = main(["flag", str(folder), "-o", str(tmp_path / "r.csv"), "--model",
                   str(model_dir), "--dicom-out", str(out)])
    assert status == 2
    assert not (tmp_path / "r.csv").exists()
    assert sorted(p.name for p in folder.rglob("*")) == ["img000.dcm", "s0"]


def test_changed_file_gets_no_object(tmp_path: Path, model_dir: Path) -> None:
    from pneumoview.core.dicomout.export import export_report

    folder = build_small_folder(tmp_path / "data", 2, size=128)
    report = tmp_path / "r.csv"
    assert main(["flag", str(folder), "-o", str(report), "--model", str(model_dir),
                 "--workers", "1", "-q"]) == 0
    victim = folder / "s0" / "img000.dcm"
    os.utime(victim, ns=(1, 1))
    summary = export_report(report, tmp_path / "out", model_dir=model_dir, scanned=[folder])
    assert [Path(p).name for p, _ in summary.errors] == ["img000.dcm"]
    assert "changed" in summary.errors[0][1]
    assert len(summary.written) == 2
