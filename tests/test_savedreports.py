"""The GUI's report files and study rows, without Qt (moved down from pneumoview.qt)."""

from __future__ import annotations

import os
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


# -- issue 18: the GUI finds the unfinished reports a restarted viewer can resume ---------------

def _report(folder: Path, name: str, root: str, rows: int, *, finished: bool,
            cancelled: bool = False, manifest_rows: bool = True, mtime: float = 0.0) -> Path:
    """A report of ``rows`` rows (plus a torn last line) and its manifest, as a run leaves it."""
    out = folder / name
    line = ",".join("x" for _ in rep.COLUMNS) + "\n"
    out.write_text(",".join(rep.COLUMNS) + "\n" + line * rows + "x,torn")
    fields = {"root": rep.escape_path(root), "shard_index": 0, "shard_count": 1,
              "files": 10, "model_sha256": "ab" * 32, "model_id": "m1",
              "model_label": "PneumoView ResNet18 1.0 (sha256 abab)", "model_name": "PneumoView",
              "model_version": "1.0", "threshold": 0.5,
              "finished": finished, "cancelled": cancelled}
    if manifest_rows:
        fields["rows"] = rows
    rep.write_manifest(out, fields)
    if mtime:
        os.utime(out, (mtime, mtime))
    return out


def test_unfinished_reports_are_listed_newest_first_and_the_rest_passed_over(
        tmp_path: Path) -> None:
    from pneumoview.core.savedreports import unfinished_for_folder, unfinished_reports

    d = tmp_path / "reports"
    d.mkdir()
    cancelled = _report(d, "a-cancelled.csv", "/data/one", 4, finished=False, cancelled=True,
                        mtime=1_000)
    killed = _report(d, "b.csv", "/data/two", 3, finished=False, manifest_rows=False,
                     mtime=2_000)  # killed mid-run: the manifest written at the start
    _report(d, "c.csv", "/data/one", 10, finished=True)  # finished: nothing to resume
    broken = _report(d, "d.csv", "/data/one", 2, finished=False)
    rep.manifest_path(broken).write_text("{not json")
    (d / "e.csv").write_text(",".join(rep.COLUMNS) + "\n")  # killed before its manifest
    (d / "notes.csv").write_text("hello\n")  # not a report
    (d / ".f.csv.tmp-1").write_text("")  # a writer's temporary file: not even looked at
    (d / "g.csv").write_text("")  # a run that failed before writing (older versions left it)

    found, skipped = unfinished_reports(d)

    assert [r.path for r in found] == [str(killed), str(cancelled)]  # newest first
    assert found[0].state == "interrupted" and found[0].rows == 3  # counted: torn line not
    assert found[1].state == "cancelled" and found[1].rows == 4
    assert found[1].folder == "/data/one" and found[1].files == 10
    assert found[1].model == "PneumoView 1.0" and found[1].when == 1_000
    assert not found[1].folder_exists
    why = {Path(s.path).name: s.reason for s in skipped}
    assert set(why) == {"d.csv", "e.csv", "g.csv", "notes.csv"}
    assert why["g.csv"].startswith("empty")
    assert "unreadable manifest" in why["d.csv"]
    assert "manifest" in why["e.csv"] and "missing" in why["e.csv"]
    assert "not a PneumoView batch report" in why["notes.csv"]
    assert unfinished_for_folder("/data/one/", found) == found[1]
    assert unfinished_for_folder("/data/three", found) is None
    # only looked: nothing renamed, created or removed
    assert sorted(p.name for p in d.iterdir()) == sorted(
        ["a-cancelled.csv", "a-cancelled.csv.manifest.json", "b.csv", "b.csv.manifest.json",
         "c.csv", "c.csv.manifest.json", "d.csv", "d.csv.manifest.json", "e.csv",
         "g.csv", "notes.csv", ".f.csv.tmp-1"])
    assert unfinished_reports(tmp_path / "none") == ([], [])  # never flagged: no folder


def test_a_report_another_run_is_writing_is_not_offered(tmp_path: Path) -> None:
    from pneumoview.core.savedreports import unfinished_reports

    out = _report(tmp_path, "r.csv", "/data/one", 2, finished=False)
    with rep.ReportLock(out):
        found, skipped = unfinished_reports(tmp_path)
        assert not found and "another run is writing it (PID" in skipped[0].reason
    assert [r.path for r in unfinished_reports(tmp_path)[0]] == [str(out)]
    assert not rep.lock_path(out).exists()  # the probe left no lock file behind


def test_resuming_with_other_weights_is_refused_as_other_weights(tmp_path: Path) -> None:
    """The manifest's sha256 is compared before its model_id, so the refusal says the weights
    differ (not "the same weights with other metadata")."""
    import pytest

    from pneumoview.core.errors import ReportMismatchError

    out = _report(tmp_path, "r.csv", "/data/one", 0, finished=False)
    with pytest.raises(ReportMismatchError) as info:
        rep.load_for_resume(out, model_sha256="cd" * 32, threshold=0.5, shard=None,
                            model_id="m2")
    assert info.value.field == "model" and "model sha256 abababababab" in str(info.value)
    assert "same weights" not in str(info.value)
    with pytest.raises(ReportMismatchError, match="same weights with other metadata"):
        rep.load_for_resume(out, model_sha256="ab" * 32, threshold=0.5, shard=None,
                            model_id="m2")
