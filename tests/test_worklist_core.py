"""The worklist's order, filters, search, review states and report-path resolution (no Qt)."""

from __future__ import annotations

from pathlib import Path

from pneumoview.core import worklist as wl
from pneumoview.core.review import store as rs

MODEL = "pvm1-" + "c" * 64


def row(study: str, i: int, status: str = "scored", prob: float | None = 0.5,
        flagged: bool | None = False, **kw: object) -> dict:
    return {"path": f"/d/{study}/{i}.dcm", "relpath": f"{study}/{i}.dcm", "status": status,
            "probability": prob if status == "scored" else None,
            "flagged": flagged if status == "scored" else None, "patient_id": f"PID-{study}",
            "study_instance_uid": f"1.2.{study}" if study != "nouid" else "",
            "sop_instance_uid": f"1.3.{study}.{i}", "study_date": "20260101", "frame": 0,
            "message": kw.pop("message", ""), **kw}


ROWS = [
    row("a", 1, prob=0.2), row("a", 2, prob=0.95, flagged=True),  # flagged, 0.95
    row("b", 1, prob=0.85, flagged=True),  # flagged, 0.85
    row("c", 1, prob=0.6),  # not flagged, 0.6
    row("d", 1, status="not_scored", message="lateral view"),
    row("e", 1, status="error", message="truncated"),
    row("f", 1, status="skipped"),  # not a study
    row("nouid", 1, status="not_scored", message="no UID"),
]


def test_order_flagged_first_by_probability_then_unscored_then_errors() -> None:
    entries = wl.build(ROWS)
    assert [e.key for e in entries] == ["1.2.a", "1.2.b", "1.2.c", "1.2.d",
                                        "file:nouid/1.dcm", "1.2.e"]
    a = entries[0]
    assert (a.n_images, a.n_flagged, a.probability, a.state) == (2, 1, 0.95, wl.AIState.FLAGGED)
    assert a.best["relpath"] == "a/2.dcm"  # opens at its highest-scoring image
    assert entries[3].state is wl.AIState.NOT_SCORED and entries[3].message == "lateral view"


def test_filters_and_search() -> None:
    entries = wl.build(ROWS)
    keys = lambda es: [e.key for e in es]  # noqa: E731
    assert keys(wl.select(entries, wl.Filter.FLAGGED)) == ["1.2.a", "1.2.b"]
    assert keys(wl.select(entries, wl.Filter.NOT_SCORED)) == ["1.2.d", "file:nouid/1.dcm"]
    assert keys(wl.select(entries, wl.Filter.ERRORS)) == ["1.2.e"]
    assert keys(wl.select(entries, wl.Filter.ALL, "pid-c")) == ["1.2.c"]
    assert keys(wl.select(entries, wl.Filter.ALL, "a/1.dcm")) == ["1.2.a"]


def test_review_states_follow_the_store(tmp_path: Path) -> None:
    entries = wl.build(ROWS)
    with rs.ReviewStore(tmp_path / "r.sqlite3") as store:
        best = entries[0].best
        store.add(rs.ImageRef(MODEL, "s" * 64, sop_instance_uid=best["sop_instance_uid"],
                              path=best["path"], ai_flagged=True, probability=0.95),
                  "agree", reader="dr x")
        reviews = store.current(MODEL)
    updated = wl.with_reviews(entries, reviews)
    assert updated[0].review is wl.ReviewState.AGREE and updated[0].reviewer == "dr x"
    assert [e.key for e in wl.select(updated, wl.Filter.UNREVIEWED)][:1] == ["1.2.b"]
    assert wl.next_unreviewed(updated, 0) == 1
    assert wl.next_unreviewed(updated, len(updated) - 1) == 1  # wraps past the reviewed one
    assert wl.build(ROWS, reviews)[0].review is wl.ReviewState.AGREE


def test_a_report_from_elsewhere_resolves_against_a_chosen_folder(tmp_path: Path) -> None:
    rows = [{"path": "C:\\\\pacs\\\\x.dcm", "relpath": "s1/x.dcm"},
            {"path": "/elsewhere/y", "relpath": "../../etc/passwd"}]
    out = wl.resolve_rows(rows, str(tmp_path))
    assert out[0]["path"] == str(tmp_path / "s1" / "x.dcm")
    assert out[1]["path"] == str(tmp_path / "etc" / "passwd")  # never outside the folder
