"""Worklist dock and calibration dialog (offscreen): order, filters, review keys, plots."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from pneumoview.core import worklist as wl
from pneumoview.core.review.store import Decision, Truth
from pneumoview.core.sitefit import Cases

pytest.importorskip("pytestqt")


def _shots(tmp_path: Path) -> Path:
    """Where screenshots go: ``$PNEUMOVIEW_TEST_SCREENSHOTS`` (e.g. ``docs/`` to refresh the
    README's pictures), else the test's temp folder; a test run never rewrites tracked files."""
    return Path(os.environ.get("PNEUMOVIEW_TEST_SCREENSHOTS") or tmp_path)


def rows() -> list[dict]:
    out = []
    rng = np.random.default_rng(0)
    for s in range(12):
        p = float(rng.uniform())
        out.append({"path": f"/d/s{s}/1.dcm", "relpath": f"s{s}/1.dcm", "status": "scored",
                    "probability": p, "flagged": p >= 0.6, "patient_id": f"PID{s:03d}",
                    "study_instance_uid": f"1.2.{s}", "sop_instance_uid": f"1.3.{s}",
                    "study_date": f"202601{s + 1:02d}", "frame": 0})
    out.append({"path": "/d/lat/1.dcm", "relpath": "lat/1.dcm", "status": "not_scored",
                "message": "looks like a lateral view", "patient_id": "PIDLAT",
                "study_instance_uid": "1.2.lat", "sop_instance_uid": "1.3.lat"})
    out.append({"path": "/d/bad/1.dcm", "relpath": "bad/1.dcm", "status": "error",
                "message": "truncated", "patient_id": "", "study_instance_uid": "1.2.bad",
                "sop_instance_uid": "1.3.bad"})
    return out


@pytest.fixture
def panel(qtbot):
    from pneumoview.qt.worklist.panel import WorklistPanel

    w = WorklistPanel()
    qtbot.addWidget(w)
    w.resize(760, 420)
    w.set_entries(wl.build(rows()))
    w.show()
    return w


def column(panel, c: int) -> list[str]:
    return [panel.table.item(r, c).text() for r in range(panel.table.rowCount())]


def test_worklist_order_and_filters(panel) -> None:
    ai = column(panel, 4)
    first_unflagged = next(i for i, t in enumerate(ai) if not t.startswith("flagged"))
    assert all(t.startswith("flagged") for t in ai[:first_unflagged])
    probs = [float(t) for t in column(panel, 3) if t]
    flagged_p = probs[:first_unflagged]
    assert flagged_p == sorted(flagged_p, reverse=True) and min(flagged_p) >= 0.6
    assert ai[-2:] == ["not scored", "error"]
    panel.set_filter(wl.Filter.FLAGGED)
    assert len(column(panel, 4)) == first_unflagged
    panel.set_filter(wl.Filter.NOT_SCORED)
    assert column(panel, 0) == ["PIDLAT"]
    panel.set_filter(wl.Filter.ALL)
    panel.search.setText("pid003")
    assert column(panel, 0) == ["PID003"]


def test_review_keys_record_and_move_on(panel, qtbot, tmp_path: Path) -> None:
    got: list[tuple] = []
    opened: list[str] = []
    panel.reviewRequested.connect(lambda e, d, t, n: got.append((e.key, d, t, n)))
    panel.openRequested.connect(lambda e: opened.append(e.key))
    panel.table.setFocus()
    first = panel.entries()[0].key
    panel.note.setText("consolidation RLL")
    qtbot.keyClick(panel.table, Qt.Key.Key_A)
    assert got[-1] == (first, Decision.AGREE, None, "consolidation RLL")
    assert panel.note.text() == ""
    qtbot.keyClick(panel.table, Qt.Key.Key_Return)
    assert opened[-1] == first
    for key, want in ((Qt.Key.Key_P, (Decision.DISAGREE, Truth.PNEUMONIA)),
                      (Qt.Key.Key_N, (Decision.DISAGREE, Truth.NO_PNEUMONIA)),
                      (Qt.Key.Key_X, (Decision.DISAGREE, Truth.NOT_ASSESSABLE)),
                      (Qt.Key.Key_U, (Decision.UNCERTAIN, None))):
        qtbot.keyClick(panel.table, key)
        assert got[-1][1:3] == want
    # typing a note never reviews
    n = len(got)
    qtbot.keyClicks(panel.note, "a pna")
    assert len(got) == n
    # after a stored review the controller asks to move on: the next unreviewed is opened
    entries = [wl.Entry(**{**e.__dict__, "review": wl.ReviewState.AGREE}) if e.key == first
               else e for e in panel.entries()]
    panel.set_entries(entries, keep_key=first)
    panel.advance(first)
    assert panel.current().key == entries[1].key and opened[-1] == entries[1].key
    panel.note.clear()
    panel.set_source("report: ward7-2026-12-01.csv (14 files, model pneumoview-resnet18 1.0)")
    panel.set_figures("reviewed 1: sensitivity n/a (0/0), PPV 1.00 (1/1)")
    assert panel.grab().save(str(_shots(tmp_path) / "worklist.png"))


def site_cases(n: int = 160) -> Cases:
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)]
    z = np.where(y == 1, rng.normal(1.2, 1.3, n), rng.normal(-1.0, 1.3, n)) * 1.6 - 1.0
    return Cases(y, z, np.array([f"P{i}" for i in range(n)]))


def test_calibration_dialog_plots_picks_and_saves(qtbot, tmp_path: Path) -> None:
    from pneumoview.core.siteprofile import load_profile
    from pneumoview.qt.worklist.calibration import CalibrationDialog

    dlg = CalibrationDialog(site_cases(), model_id="pvm1-" + "d" * 64, model_sha256="e" * 64,
                            model_label="test model 1.0", model_temperature=1.2)
    qtbot.addWidget(dlg)
    dlg.resize(1000, 560)
    dlg.show()
    assert dlg.save_button.isEnabled() and not dlg.warning.isVisible()
    assert "AUROC" in dlg.roc.plotItem.titleLabel.text
    f = dlg.figures()
    assert f["sensitivity"] >= 0.9  # starts at the 0.90-sensitivity point
    dlg.prevalence.setValue(0.05)
    low = dlg.figures()
    assert low["ppv"] < f["ppv"] and low["npv"] > f["npv"]
    dlg.set_threshold(0.95)
    assert dlg.figures()["specificity"] > f["specificity"]
    dlg.set_threshold(0.3)
    dlg.name.setText("Ward 7")
    saved = []
    dlg.saved.connect(saved.append)
    out = tmp_path / "ward7.json"
    dlg.save_to(str(out))
    assert saved and load_profile(out).name == "Ward 7"
    assert "Saved" in dlg.status.text()
    assert dlg.grab().save(str(_shots(tmp_path) / "calibration-dialog.png"))


def test_calibration_dialog_says_why_it_cannot_save(qtbot) -> None:
    from pneumoview.qt.worklist.calibration import CalibrationDialog

    dlg = CalibrationDialog(site_cases(40), model_id="pvm1-" + "d" * 64,
                            model_sha256="e" * 64, model_label="m", model_temperature=1.0)
    qtbot.addWidget(dlg)
    assert not dlg.save_button.isEnabled()
    assert "at least 30 of each" in dlg.warning.text()
