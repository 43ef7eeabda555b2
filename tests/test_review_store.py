"""The review store: append-only history, labels, export, kill-safety, concurrent reading."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.review import store as rs

MODEL = "pvm1-" + "a" * 64
SHA = "b" * 64


def ref(i: int, flagged: bool | None = True, prob: float = 0.8) -> rs.ImageRef:
    return rs.ImageRef(model_id=MODEL, model_sha256=SHA, sop_instance_uid=f"1.2.3.{i}",
                       study_instance_uid=f"1.2.{i // 2}", relpath=f"s{i // 2}/img{i}.dcm",
                       path=f"/data/s{i // 2}/img{i}.dcm", ai_flagged=flagged,
                       probability=prob, threshold=0.5, operating_point="adult")


def test_history_is_append_only_and_the_latest_decision_counts(tmp_path: Path) -> None:
    with rs.ReviewStore(tmp_path / "r.sqlite3") as store:
        first = store.add(ref(1), "agree", reader="dr a")
        second = store.add(ref(1), rs.Decision.DISAGREE, truth="no_pneumonia", note="artefact",
                           reader="dr b")
        store.add(ref(2, flagged=False, prob=0.1), "agree")
        store.add(ref(3), "uncertain")
        store.add(ref(4), "disagree", truth="not_assessable")
        hist = store.history(MODEL, ref(1).key)
        assert [r.id for r in hist] == [first.id, second.id]
        assert [r.label for r in hist] == [1, 0]
        current = store.current(MODEL)
        assert current[ref(1).key].reader == "dr b" and current[ref(1).key].note == "artefact"
        assert {k: r.label for k, r in current.items()} == {
            ref(1).key: 0, ref(2).key: 0, ref(3).key: None, ref(4).key: None}
        assert store.current("pvm1-other") == {}
        # the database itself refuses to rewrite history
        import sqlite3

        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store._db.execute("UPDATE reviews SET decision = 'agree'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store._db.execute("DELETE FROM reviews")
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.path.parent.stat().st_mode & 0o777 == 0o700


def test_a_disagreement_says_what_is_right(tmp_path: Path) -> None:
    with rs.ReviewStore(tmp_path / "r.sqlite3") as store:
        with pytest.raises(PneumoViewError, match="says what is right"):
            store.add(ref(1), "disagree")
        with pytest.raises(PneumoViewError, match="says what is right"):
            store.add(ref(1), "agree", truth="pneumonia")
        with pytest.raises(ValueError):
            store.add(ref(1), "maybe")
        assert store.count() == 0


def test_default_store_lives_in_the_data_folder_never_the_scanned_one(tmp_path: Path) -> None:
    assert rs.store_path().parent == Path(os.environ["PNEUMOVIEW_DATA_DIR"])
    assert rs.default_reader()


def test_export_is_a_labelled_csv_calibrate_reads(tmp_path: Path) -> None:
    from pneumoview.core.sitefit import read_labels

    with rs.ReviewStore(tmp_path / "r.sqlite3") as store:
        store.add(ref(1), "agree", reader="=cmd|' /C calc'!A0")
        store.add(ref(2, flagged=False, prob=0.123456789012), "agree")
        store.add(ref(3), "uncertain")
        store.add(ref(4, flagged=False), "disagree", truth="pneumonia")
        current = store.current(MODEL).values()
    out = tmp_path / "labels.csv"
    assert rs.write_export(out, current) == 3
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert tuple(rows[0]) == rs.EXPORT_COLUMNS
    by_uid = {r["sop_instance_uid"]: r for r in rows}
    assert {u: r["label"] for u, r in by_uid.items()} == {
        "1.2.3.1": "1", "1.2.3.2": "0", "1.2.3.4": "1"}
    assert by_uid["1.2.3.2"]["probability"] == "0.123456789012"
    assert by_uid["1.2.3.1"]["reader"].startswith("'=")  # no spreadsheet formula
    key, labels = read_labels(out)
    assert key == "sop_instance_uid" and labels == {"1.2.3.1": 1, "1.2.3.2": 0, "1.2.3.4": 1}


def test_running_sensitivity_and_ppv() -> None:
    def review(flagged: bool, label: int) -> rs.Review:
        truth = None
        decision = rs.Decision.AGREE
        if bool(label) != flagged:
            decision = rs.Decision.DISAGREE
            truth = rs.Truth.PNEUMONIA if label else rs.Truth.NO_PNEUMONIA
        return rs.Review(0, MODEL, SHA, "k", "", 0, "", "", "", decision, truth, flagged, 0.5,
                         0.5, "", "", "r", "t")

    figs = rs.running_figures([review(True, 1)] * 3 + [review(True, 0)] + [review(False, 1)]
                              + [review(False, 0)] * 5)
    assert (figs.n, figs.tp, figs.fp, figs.fn, figs.tn) == (10, 3, 1, 1, 5)
    assert figs.sensitivity == 0.75 and figs.ppv == 0.75
    assert "sensitivity 0.75 (3/4), PPV 0.75 (3/4)" in figs.text()


WRITER = """
import sys, time
from pneumoview.core.review import store as rs
store = rs.ReviewStore(sys.argv[1])
for i in range(100000):
    r = rs.ImageRef(model_id=sys.argv[2], model_sha256="b" * 64, sop_instance_uid=f"1.9.{i}",
                    ai_flagged=True, probability=0.9)
    store.add(r, "agree", reader="writer")
    print(i, flush=True)
    time.sleep(float(sys.argv[3]))
"""


def _writer(tmp_path: Path, db: Path, pause: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(db), MODEL, str(pause)],
                            stdout=subprocess.PIPE, text=True, env=env)


def test_a_killed_process_loses_and_doubles_nothing(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    proc = _writer(tmp_path, db, 0.0)
    confirmed = -1
    assert proc.stdout is not None
    while confirmed < 30:  # reviews the writer saw committed
        confirmed = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with rs.ReviewStore.open_readonly(db) as store:
        rows = store.all_rows()
    uids = [r.sop_instance_uid for r in rows]
    assert len(uids) == len(set(uids))  # nothing doubled
    numbers = sorted(int(u.rsplit(".", 1)[1]) for u in uids)
    assert numbers == list(range(len(numbers)))  # nothing missing in between
    assert numbers[-1] >= confirmed  # every confirmed review is there
    with rs.ReviewStore(db) as store:  # and the store opens for writing again
        store.add(ref(1), "agree")


def test_read_only_while_another_process_writes(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    with rs.ReviewStore(db) as store:
        store.add(ref(0), "agree")
    proc = _writer(tmp_path, db, 0.01)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (len(seen) < 5 or seen[-1] <= seen[0]):
            with rs.ReviewStore.open_readonly(db) as reader:
                seen.append(reader.count())
                with pytest.raises(PneumoViewError, match="read-only"):
                    reader.add(ref(9), "agree")
            time.sleep(0.05)
        assert seen == sorted(seen) and seen[-1] > seen[0]
    finally:
        proc.kill()
        proc.wait(10)


def test_a_damaged_store_is_reported_and_kept(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    db.write_bytes(b"not a database" * 100)
    with pytest.raises(PneumoViewError, match="cannot be opened"):
        rs.ReviewStore(db)
    assert db.read_bytes().startswith(b"not a database")


def test_reviews_command_exports_for_one_model(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoview.cli import main

    db = tmp_path / "r.sqlite3"
    with rs.ReviewStore(db) as store:
        store.add(ref(1), "agree")
        store.add(ref(2, flagged=False), "agree")
        store.add(ref(3), "uncertain")
        store.add(rs.ImageRef("pvm1-other", SHA, sop_instance_uid="7.7"), "agree")
    out = tmp_path / "labels.csv"
    assert main(["reviews", "export", "--model-id", MODEL, "--store", str(db), "-o",
                 str(out)]) == 0
    assert "wrote 2 labels (1 reviews give no label" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 3
    assert main(["reviews", "export", "--model-id", MODEL, "--store", str(db), "-o",
                 str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["reviews", "info", "--model-id", MODEL, "--store", str(db)]) == 0
    assert "4 reviews in all, 3 images reviewed" in capsys.readouterr().out


def test_training_reads_the_export_as_a_labelled_source(tmp_path: Path) -> None:
    from training.sources import collect

    folder = tmp_path / "site"
    for i in (1, 2, 4):
        (folder / f"s{i // 2}").mkdir(parents=True, exist_ok=True)
        (folder / f"s{i // 2}" / f"img{i}.dcm").write_bytes(b"x")
    with rs.ReviewStore(tmp_path / "r.sqlite3") as store:
        store.add(ref(1), "agree")
        store.add(ref(2, flagged=False), "agree")
        store.add(ref(4, flagged=False), "disagree", truth="pneumonia")
        store.add(ref(3), "uncertain")
        current = store.current(MODEL).values()
    export = tmp_path / "labels.csv"
    rs.write_export(export, current)
    items = collect(reviews=[f"ward7={export}"], reviews_root=str(folder))
    assert sorted((Path(it.path).name, it.label, it.source) for it in items) == [
        ("img1.dcm", 1, "ward7"), ("img2.dcm", 0, "ward7"), ("img4.dcm", 1, "ward7")]
    assert {it.patient_id for it in items} == {"study:1.2.0", "study:1.2.1", "study:1.2.2"}
