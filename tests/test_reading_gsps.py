"""Presentation states: written with highdicom, valid for dciodvfy, read back the same."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from pneumoview.core.reading.annotations import Annotation, Kind
from pneumoview.core.reading.gsps import (
    build_presentation_state,
    is_presentation_state,
    read_presentation_state,
)
from pneumoview.core.reading.orientation import ViewTransform
from pneumoview.core.windowing import Window
from tests.support.dicom_factory import make_dataset


def _source():
    ds = make_dataset(np.zeros((64, 80), np.uint16), PixelSpacing=[0.2, 0.1],
                      PatientOrientation=["L", "F"], StudyDate="20260101", StudyTime="101010",
                      AccessionNumber="A1", ReferringPhysicianName="", StudyID="1",
                      SeriesNumber=1, PatientBirthDate="", PatientSex="F")
    return ds


ANNOTATIONS = [
    Annotation(Kind.DISTANCE, ((1.5, 2.5), (40.0, 30.0))),
    Annotation(Kind.ANGLE, ((10.0, 0.0), (0.0, 0.0), (0.0, 10.0))),
    Annotation(Kind.RECTANGLE, ((5.0, 6.0), (25.0, 16.0))),
    Annotation(Kind.ELLIPSE, ((30.0, 10.0), (70.0, 30.0))),
    Annotation(Kind.ARROW, ((60.0, 60.0), (50.0, 40.0))),
    Annotation(Kind.TEXT, ((3.0, 50.0),), text="line tip"),
]


def _gsps(tmp_path):
    src = _source()
    labels = {a.id: [f"value of {a.kind.value}"] for a in ANNOTATIONS}
    gsps = build_presentation_state(src, ANNOTATIONS, labels, Window("Soft", 1000, 2000),
                                    invert=True, transform=ViewTransform(1, True))
    path = tmp_path / "pr.dcm"
    gsps.save_as(path, enforce_file_format=True)
    return src, path


def test_round_trip_through_highdicom(tmp_path) -> None:
    src, path = _gsps(tmp_path)
    ds = pydicom.dcmread(path)
    assert is_presentation_state(ds)
    state = read_presentation_state(ds)
    assert state.referenced == (src.SOPInstanceUID,)
    assert state.window == (1000.0, 2000.0)
    assert state.invert is True and state.transform == ViewTransform(1, True)
    back = state.annotations[src.SOPInstanceUID]
    assert [(a.kind, a.points, a.text) for a in back] == [
        (a.kind, a.points, a.text) for a in ANNOTATIONS]
    assert state.skipped == 0


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools' dciodvfy not installed")
def test_dciodvfy_finds_no_error(tmp_path) -> None:
    _src, path = _gsps(tmp_path)
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    report = run.stdout + run.stderr
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, report


@pytest.mark.skipif(shutil.which("dcmpschk") is None, reason="dcmtk's dcmpschk not installed")
def test_dcmtk_presentation_state_checker_passes(tmp_path) -> None:
    _src, path = _gsps(tmp_path)
    run = subprocess.run(["dcmpschk", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "Test passed" in run.stdout + run.stderr, run.stderr


def test_forms_not_drawn_are_counted_not_guessed(tmp_path) -> None:
    _src, path = _gsps(tmp_path)
    ds = pydicom.dcmread(path)
    obj = ds.GraphicAnnotationSequence[0].GraphicObjectSequence[0]
    obj.GraphicData = [0.0, 0.0, 5.0, 0.0, 5.0, 5.0, 2.0, 9.0]  # a 4-point open polyline
    obj.NumberOfGraphicPoints = 4
    state = read_presentation_state(ds)
    assert state.skipped == 1
    assert all(a.kind is not Kind.DISTANCE for a in next(iter(state.annotations.values())))
