"""Settings file (typed, tolerant of damage) and the demo folder."""

from __future__ import annotations

import json
import logging

import numpy as np
import pydicom
import pytest

from pneumoview.core import dicomio, windowing
from pneumoview.core.demo import prepare_demo
from pneumoview.core.paths import config_dir
from pneumoview.core.settings import MAX_RECENT, Settings, load_settings, save_settings
from tests.support.dicom_factory import sample_file


def test_settings_round_trip_under_config_dir(tmp_path):
    assert str(config_dir()).startswith(str(tmp_path.parent))  # tests never touch ~/.config
    s = Settings(show_patient_overlay=False, max_image_mib=64)
    s.add_recent("/a")
    s.add_recent("/b")
    s.add_recent("/a")
    assert save_settings(s)
    loaded = load_settings()
    assert loaded.recent_folders == ["/a", "/b"]
    assert loaded.show_patient_overlay is False
    assert loaded.max_image_bytes == 64 * 2**20


def test_recent_list_is_bounded():
    s = Settings()
    for i in range(MAX_RECENT + 5):
        s.add_recent(f"/folder{i}")
    assert len(s.recent_folders) == MAX_RECENT
    assert s.recent_folders[0] == f"/folder{MAX_RECENT + 4}"


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "", "\x00\xff"])
def test_corrupt_settings_give_defaults_and_a_warning(tmp_path, caplog, text):
    path = tmp_path / "settings.json"
    path.write_text(text, encoding="latin-1")
    with caplog.at_level(logging.WARNING):
        s = load_settings(path)
    assert s == Settings()
    assert "using the defaults" in caplog.text


def test_wrong_types_fall_back_and_unknown_keys_survive(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"show_patient_overlay": "yes", "max_image_mib": True,
                                "recent_folders": ["/x", 3], "future_option": {"a": 1}}))
    s = load_settings(path)
    assert s.show_patient_overlay is True and s.max_image_mib == Settings().max_image_mib
    assert s.recent_folders == ["/x"]
    assert s.extra == {"future_option": {"a": 1}}
    save_settings(s, path)
    assert json.loads(path.read_text())["future_option"] == {"a": 1}


def test_unwritable_settings_do_not_raise(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert save_settings(Settings(), blocker / "sub" / "settings.json") is False


@pytest.mark.skipif(sample_file("RG1_UNCR.dcm") is None, reason="pydicom-data is not installed")
def test_demo_folder_three_series_same_picture(tmp_path):
    demo = prepare_demo(tmp_path / "demo")
    files = sorted(demo.iterdir())
    assert [f.name for f in files] == ["series1_uncompressed.dcm", "series2_jpeg2000.dcm",
                                       "series3_monochrome2.dcm"]
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert len({h.SeriesInstanceUID for h in headers}) == 3
    assert len({h.StudyInstanceUID for h in headers}) == 1
    assert [h.PhotometricInterpretation for h in headers] == ["MONOCHROME1", "MONOCHROME1",
                                                             "MONOCHROME2"]
    shown = []
    for f in files:
        d = dicomio.decode(f)
        shown.append(windowing.apply_window(d.values, windowing.default_window(d.values,
                                                                                d.windows),
                                            d.invert))
    # RG1_UNCI is the irreversible-JPEG 2000 round trip of the same radiograph
    assert np.corrcoef(shown[0].ravel(), shown[1].ravel())[0, 1] > 0.999
    # RG1_J2KR is RG1_UNCR losslessly: the inverted MONOCHROME2 copy must look the same
    assert np.abs(shown[1].astype(int) - shown[2].astype(int)).max() <= 1
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert prepare_demo(tmp_path / "demo") == demo  # idempotent: nothing rewritten
    assert [f.stat().st_mtime_ns for f in sorted(demo.iterdir())] == mtimes
