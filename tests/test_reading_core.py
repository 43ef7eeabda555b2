"""The reading tools' maths without Qt: scale, distances, angles, regions, orientation,
annotation store and export layout."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.reading import geometry, roi
from pneumoview.core.reading.annotations import Annotation, Kind, measure_lines
from pneumoview.core.reading.exportlayout import export_layout, scale_for
from pneumoview.core.reading.orientation import (
    ViewTransform,
    cosine_letters,
    image_axes,
    opposite,
)
from pneumoview.core.reading.spacing import PIXELS, SpacingSource, pixel_scale
from pneumoview.core.reading.store import AnnotationStore, image_key
from tests.support.dicom_factory import make_dataset


def _ds(**tags: object) -> Dataset:
    return make_dataset(np.zeros((20, 30), np.uint16), **tags)


# -- scale -------------------------------------------------------------------------------------
def test_pixel_spacing_is_row_then_column_along_both_axes() -> None:
    """PixelSpacing 0.2\\0.1: 0.2 mm between rows (vertical), 0.1 mm between columns."""
    scale = pixel_scale(_ds(PixelSpacing=[0.2, 0.1]))
    assert scale.source is SpacingSource.PATIENT
    vertical = geometry.distance((5, 0), (5, 10), scale)  # 10 rows down
    horizontal = geometry.distance((0, 5), (10, 5), scale)  # 10 columns across
    assert vertical.value == pytest.approx(2.0) and vertical.unit == "mm"
    assert horizontal.value == pytest.approx(1.0)
    diagonal = geometry.distance((0, 0), (10, 10), scale)
    assert diagonal.value == pytest.approx(math.hypot(1.0, 2.0))
    assert vertical.text() == "2.0 mm"


def test_imager_spacing_alone_is_at_the_detector_with_the_magnification() -> None:
    scale = pixel_scale(_ds(ImagerPixelSpacing=[0.15, 0.15],
                            EstimatedRadiographicMagnificationFactor=1.2))
    assert scale.source is SpacingSource.DETECTOR and scale.magnification == 1.2
    d = geometry.distance((0, 0), (100, 0), scale)
    assert d.value == pytest.approx(15.0) and d.at_patient == pytest.approx(12.5)
    assert d.text() == "15.0 mm at detector (≈12.5 mm at patient)"
    assert "measured at the detector" in scale.description
    a = geometry.area("rectangle", (0, 0), (10, 10), scale)
    assert a.at_patient == pytest.approx(1.5 * 1.5 / 1.44)
    plain = pixel_scale(_ds(ImagerPixelSpacing=[0.15, 0.15]))
    assert geometry.distance((0, 0), (100, 0), plain).text() == "15.0 mm at detector"


def test_pixel_spacing_equal_to_the_imagers_is_still_the_detectors() -> None:
    scale = pixel_scale(_ds(PixelSpacing=[0.15, 0.15], ImagerPixelSpacing=[0.15, 0.15]))
    assert scale.source is SpacingSource.DETECTOR


def test_calibrated_pixel_spacing_wins_and_says_how() -> None:
    scale = pixel_scale(_ds(PixelSpacing=[0.12, 0.12], ImagerPixelSpacing=[0.15, 0.15],
                            PixelSpacingCalibrationType="GEOMETRY"))
    assert scale.source is SpacingSource.CALIBRATED and scale.row_mm == 0.12
    assert "GEOMETRY" in scale.description
    assert geometry.distance((0, 0), (10, 0), scale).text() == "1.2 mm"
    differing = pixel_scale(_ds(PixelSpacing=[0.12, 0.12], ImagerPixelSpacing=[0.15, 0.15]))
    assert differing.source is SpacingSource.CALIBRATED


@pytest.mark.parametrize("bad", [None, [0.2], [0, 0.1], [-1, 1], ["x", "y"], [math.nan, 1]])
def test_without_a_valid_spacing_measurements_are_in_pixels(bad: object) -> None:
    ds = _ds()
    if bad is not None:  # as read from a damaged file: converted only when used
        raw = "\\".join(str(v) for v in bad).encode()
        ds[0x00280030] = RawDataElement(Tag(0x00280030), "DS", len(raw), raw, 0, True, True)
    scale = pixel_scale(ds)
    assert scale == PIXELS and not scale.in_mm
    assert geometry.distance((0, 0), (3, 4), scale).text() == "5.0 px"
    assert "pixels" in scale.description


def test_enhanced_per_frame_pixel_measures() -> None:
    ds = _ds()
    shared, item = Dataset(), Dataset()
    item.PixelSpacing = [0.5, 0.25]
    shared.PixelMeasuresSequence = [item]
    ds.SharedFunctionalGroupsSequence = [shared]
    assert (pixel_scale(ds).row_mm, pixel_scale(ds).col_mm) == (0.5, 0.25)


# -- angles ------------------------------------------------------------------------------------
def test_angle_is_measured_in_millimetres() -> None:
    """On 0.2\\0.1 pixels a pixel diagonal is not 45 degrees: it is atan(0.2/0.1)."""
    square = pixel_scale(_ds(PixelSpacing=[0.1, 0.1]))
    assert geometry.angle((10, 0), (0, 0), (0, 10), square).value == pytest.approx(90)
    assert geometry.angle((10, 0), (0, 0), (10, 10), square).value == pytest.approx(45)
    tall = pixel_scale(_ds(PixelSpacing=[0.2, 0.1]))
    assert geometry.angle((10, 0), (0, 0), (10, 10), tall).value == pytest.approx(
        math.degrees(math.atan2(2.0, 1.0)))
    assert geometry.angle((10, 0), (0, 0), (-10, 0), square).text() == "180.0°"
    assert geometry.angle((0, 0), (0, 0), (1, 1), square).value == 0.0


# -- regions -----------------------------------------------------------------------------------
def test_rectangle_statistics_use_pixel_centres() -> None:
    values = np.arange(100, dtype=np.float32).reshape(10, 10)
    scale = pixel_scale(_ds(PixelSpacing=[0.5, 0.5]))
    # corners (2, 3)-(5, 6): columns 2..4, rows 3..5 (centres 2.5..4.5, 3.5..5.5)
    stats = roi.roi_stats(values, "rectangle", (5, 6), (2, 3), scale, "HU")
    block = values[3:6, 2:5]
    assert stats.count == 9
    assert stats.mean == pytest.approx(block.mean()) and stats.sd == pytest.approx(block.std())
    assert (stats.minimum, stats.maximum) == (32.0, 54.0)
    assert stats.area.value == pytest.approx(3 * 3 * 0.25) and stats.area.unit == "mm²"
    assert stats.lines()[0].startswith("Mean 43.0 HU")


def test_ellipse_statistics_and_clipping() -> None:
    values = np.zeros((50, 50), np.float32)
    values[20:30, 20:30] = 100  # inside an ellipse around (25, 25), radius 10
    stats = roi.roi_stats(values, "ellipse", (15, 15), (35, 35), PIXELS)
    assert stats.count == pytest.approx(math.pi * 100, rel=0.05)
    assert stats.maximum == 100 and stats.minimum == 0
    assert stats.area.value == pytest.approx(math.pi * 100) and stats.area.unit == "px²"
    # a region off the image is clipped; one outside entirely has no pixel
    assert roi.roi_stats(values, "rectangle", (-10, -10), (2, 2), PIXELS).count == 4
    assert roi.roi_stats(values, "rectangle", (60, 60), (70, 70), PIXELS) is None
    with pytest.raises(ValueError):
        roi.roi_stats(np.zeros((4, 4, 3)), "rectangle", (0, 0), (2, 2), PIXELS)


def test_modality_units() -> None:
    assert roi.modality_units(_ds(Modality="CT", RescaleIntercept=-1024, RescaleSlope=1)) == "HU"
    assert roi.modality_units(_ds(RescaleType="OD")) == "OD"
    assert roi.modality_units(_ds(RescaleType="US")) == ""
    assert roi.modality_units(_ds()) == ""


# -- orientation -------------------------------------------------------------------------------
def test_markers_of_a_pa_chest_follow_rotation_and_flips() -> None:
    axes = image_axes(_ds(PatientOrientation=["L", "F"]))
    assert axes == ("L", "F")
    t = ViewTransform()
    assert t.edge_markers(axes) == {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    cw = t.rotated()
    assert cw.edge_markers(axes) == {"left": "F", "right": "H", "top": "R", "bottom": "L"}
    assert t.flipped_horizontally().edge_markers(axes) == {
        "left": "L", "right": "R", "top": "H", "bottom": "F"}
    assert t.flipped_vertically().edge_markers(axes) == {
        "left": "R", "right": "L", "top": "F", "bottom": "H"}
    assert t.rotated().rotated(clockwise=False).is_identity
    assert t.flipped_horizontally().flipped_horizontally().is_identity
    # a flip after a rotation mirrors the screen, not the image
    assert cw.flipped_horizontally().edge_markers(axes) == {
        "left": "H", "right": "F", "top": "R", "bottom": "L"}


def test_markers_from_image_orientation_patient() -> None:
    axial = _ds(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    assert image_axes(axial) == ("L", "P")
    oblique = _ds(ImageOrientationPatient=[0.9, 0, -0.43589, 0, 1, 0])
    assert image_axes(oblique) == ("LF", "P")
    assert opposite("LF") == "RH"
    assert cosine_letters((0, -1, 0)) == "A"
    assert image_axes(_ds(ImageOrientationPatient=[5, 0, 0, 0, 1, 0])) is None
    assert image_axes(_ds(PatientOrientation=["CR", "CD"])) is None  # quadruped terms
    assert image_axes(_ds()) is None


@pytest.mark.parametrize("turns", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_points_and_arrays_transform_alike(turns: int, flip: bool) -> None:
    t = ViewTransform(turns, flip)
    image = np.arange(6 * 9).reshape(6, 9)
    shown = t.apply(image)
    assert shown.shape == t.display_shape(image.shape)
    for r, c in [(0, 0), (5, 8), (2, 7), (4, 1)]:
        x, y = t.to_display((c + 0.5, r + 0.5), image.shape)
        assert shown[int(y), int(x)] == image[r, c]
        assert t.to_image((x, y), image.shape) == pytest.approx((c + 0.5, r + 0.5))


# -- annotations and their store ---------------------------------------------------------------
def test_measure_lines() -> None:
    scale = pixel_scale(_ds(PixelSpacing=[0.2, 0.1]))
    values = np.full((20, 30), 7, np.float32)
    assert measure_lines(Annotation(Kind.DISTANCE, ((0, 0), (0, 10))), scale) == ["2.0 mm"]
    ellipse = measure_lines(Annotation(Kind.ELLIPSE, ((0, 0), (10, 10))), scale, values)
    assert ellipse[0].startswith("Mean 7.0") and "Area" in ellipse[2]
    assert measure_lines(Annotation(Kind.TEXT, ((1, 1),), text="effusion"), scale) == ["effusion"]
    with pytest.raises(ValueError):
        Annotation(Kind.ANGLE, ((0, 0), (1, 1)))
    with pytest.raises(ValueError):
        Annotation(Kind.DISTANCE, ((0, 0), (math.inf, 1)))


def test_store_round_trip_private_and_outside_the_folder(tmp_path) -> None:
    store = AnnotationStore(tmp_path / "data" / "annotations")
    ds = _ds()
    key = image_key(ds)
    assert key == f"uid:{ds.SOPInstanceUID}"
    items = [Annotation(Kind.DISTANCE, ((1, 2), (3, 4))),
             Annotation(Kind.TEXT, ((5, 5),), frame=2, text="tip of the line")]
    path = store.save(key, items)
    assert store.load(key) == items
    assert ds.SOPInstanceUID not in path.name  # no identifier in the listing
    if hasattr(os, "getuid"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.load("uid:1.2.3") == []
    store.save(key, [])
    assert not path.exists()


def test_store_keys_files_without_a_uid_by_digest(tmp_path) -> None:
    f = tmp_path / "a.dcm"
    f.write_bytes(b"some bytes")
    ds = Dataset()
    ds.SOPInstanceUID = "not a uid"
    key = image_key(ds, f)
    assert key.startswith("sha256:") and len(key) == 7 + 64
    with pytest.raises(PneumoViewError):
        image_key(None)


@pytest.mark.parametrize("content", [
    b"{not json", b'{"format": "other"}', b"\xff\xfe",
    json.dumps({"format": "pneumoview-annotations-1", "key": "uid:1.2",
                "annotations": [{"kind": "distance", "points": [[0, 0]]}]}).encode(),
    json.dumps({"format": "pneumoview-annotations-1", "key": "uid:9.9",
                "annotations": []}).encode(),
])
def test_a_damaged_store_file_is_named_and_left_alone(tmp_path, content: bytes) -> None:
    store = AnnotationStore(tmp_path)
    path = store.path_for("uid:1.2")
    path.write_bytes(content)
    with pytest.raises(PneumoViewError) as err:
        store.load("uid:1.2")
    assert str(path) in str(err.value)
    assert path.read_bytes() == content


# -- export layout -----------------------------------------------------------------------------
def test_export_layout_is_the_images_own_grid() -> None:
    layout = export_layout((2000, 1500), colourbar=True, caption_lines=3, line_height=16)
    assert (layout.image.width, layout.image.height) == (1500, 2000)
    assert layout.scale == 1.0
    assert layout.colourbar.x > 1500 and layout.colourbar.height < 2000
    assert layout.height == 2000 + 3 * 16 + 16
    assert layout.place((10, 20)) == (10, 20)
    half = export_layout((2000, 1500), scale=scale_for((2000, 1500), 1000))
    assert (half.image.width, half.image.height) == (750, 1000)
    assert half.place((100, 100)) == (50, 50)
    with pytest.raises(ValueError):
        scale_for((10, 10), 0)
    with pytest.raises(ValueError):
        export_layout((20000, 20000))


def test_composite_blends_layers_on_the_image_grid() -> None:
    from pneumoview.core.reading.composite import blend, nearest_resize, to_rgb

    base = to_rgb(np.full((4, 6), 100, np.uint8))
    assert base.shape == (4, 6, 3)
    layer = np.zeros((2, 3, 4), np.uint8)
    layer[0, 0] = (255, 0, 0, 255)  # covers the top-left 2x2 pixels once resampled
    out = blend(base, layer, opacity=0.5)
    assert out[0, 0].tolist() == [178, 50, 50] and out[1, 1].tolist() == [178, 50, 50]
    assert out[2, 2].tolist() == [100, 100, 100]
    assert nearest_resize(np.arange(4).reshape(2, 2), (4, 4))[3].tolist() == [2, 2, 3, 3]


def test_cine_rate_from_the_file() -> None:
    from pneumoview.core.reading.cine import DEFAULT_FPS, cine_fps

    assert cine_fps(_ds(CineRate=25)) == 25
    assert cine_fps(_ds(RecommendedDisplayFrameRate=15)) == 15
    assert cine_fps(_ds(FrameTime=40.0)) == 25
    assert cine_fps(_ds(FrameTime=0)) == DEFAULT_FPS
    assert cine_fps(_ds(CineRate=1000)) == 60
    assert cine_fps(None) == DEFAULT_FPS


def test_study_series_in_series_order() -> None:
    from types import SimpleNamespace

    from pneumoview.core.reading.series import study_series

    def inst(path, series, number, inum, study="1.1"):
        return SimpleNamespace(path=path, study_instance_uid=study, series_instance_uid=series,
                               series_number=number, series_description="", modality="CR",
                               instance_number=inum)

    items = [inst("b2", "s2", 2, 2), inst("b1", "s2", 2, 1), inst("a", "s1", 1, None),
             inst("x", "s9", None, 1), inst("other", "s3", 3, 1, study="2.2")]
    entries = study_series(items, "1.1")
    assert [e.series_uid for e in entries] == ["s1", "s2", "s9"]
    assert entries[1].first.path == "b1" and entries[1].count == 2
    assert entries[0].title == "Se 1 CR"
