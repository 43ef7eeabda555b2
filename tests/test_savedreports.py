"""The GUI's report files and study rows, without Qt (moved down from pneumoview.qt)."""

from __future__ import annotations

from pathlib import Path

from pneumoview.core import report as rep
from pneumoview.core.savedreports import mark_cancelled, report_name, unique_report_path
from pneumoview.core.studyrows import study_rows


def test_report_names_say_when_what_and_at_which_threshold(tmp_path: Path) -> None:
    name = report_name("/data/My Folder/", "1.0 beta", 0.4, when=0)
    assert name.endswith("_My-Folder_model-1.0-beta_t0.400.csv")
    (tmp_path / name).write_text("x")
    second = unique_report_path(tmp_path, name)
    assert second.name.endswith("~2.csv")
    second.write_text("x")
    assert unique_report_path(tmp_path, name).name.endswith("~3.csv")


def test_a_cancelled_report_is_renamed_with_its_manifest(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    out.write_text("a")
    rep.manifest_path(out).write_text("{}")
    csv, manifest = mark_cancelled(out)
    assert csv.endswith("r-cancelled.csv") and Path(csv).exists() and not out.exists()
    assert manifest is not None and Path(manifest).exists()


def test_study_rows_take_the_highest_probability_and_count_flags() -> None:
    rows = [
        {"study_instance_uid": "1", "relpath": "a", "status": "scored", "probability": 0.2,
         "flagged": False},
        {"study_instance_uid": "1", "relpath": "b", "status": "scored", "probability": 0.9,
         "flagged": True},
        {"study_instance_uid": "1", "relpath": "c", "status": "error", "probability": None},
        {"study_instance_uid": "", "relpath": "x.txt", "status": "skipped"},
    ]
    study, loose = study_rows(rows)
    assert study["probability"] == 0.9 and study["flagged"] is True
    assert study["n_images"] == 3 and study["relpath"].endswith("highest: b")
    assert study["message"] == "1 of 2 scored image(s) flagged; 1 not scored"
    assert loose["relpath"] == "x.txt" and loose["n_images"] == 1
