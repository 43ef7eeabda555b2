"""The report and its manifest against hostile names, cells and edits (issue 13, items 1, 4, 5,
8, 10, 12; issue 12 item 2): pure report-level tests, no model and no decoding."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pneumoview.commands.advice import flag_advice
from pneumoview.core import report as rep
from pneumoview.core.errors import PneumoViewError, ReportMismatchError

REPO = Path(__file__).resolve().parents[1]

#: names a hostile or careless archive holds: undecodable bytes, line breaks, runs of spaces,
#: tabs, formulas, a leading apostrophe, percent signs, escape sequences, C1 and bidi controls
HOSTILE_NAMES = [
    os.fsdecode(b"bad\xff\xfe.dcm"),
    "two  spaces.dcm", " leading space.dcm", "trailing space.dcm ",
    "line\nbreak.dcm", "carriage\rreturn.dcm", "tab\there.dcm", "\t=cmd|' /C calc'!A0.dcm",
    "=HYPERLINK(\"http://x\").dcm", "+1+1.dcm", "-2+3.dcm", "@SUM(A1).dcm", "'quoted.dcm",
    "''two.dcm", "100%.dcm", "a%20b.dcm", "%ff.dcm", "esc\x1b[31mred.dcm", "nel\x85.dcm",
    "rtl\u202eevil.dcm", "sep\u2028line.dcm", "é.dcm",
]


def _row(path: str, rel: str, **kw: object) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(rep.COLUMNS)
    row.update(path=path, relpath=rel, file_size=1, mtime_ns=2, status="skipped",
               threshold=0.5, model_sha256="ab" * 32, message="not a DICOM file")
    row.update(kw)
    return row


def test_hostile_names_round_trip_exactly_in_valid_utf8_one_line_per_row(tmp_path: Path) -> None:
    """Undecodable bytes made the writer raise (UnicodeEncodeError) and lose the run's rows;
    whitespace runs were collapsed (two files, one relpath); newlines broke the one-line rule."""
    out = tmp_path / "r.csv"
    rows = [_row(f"/archive/{name}", f"sub/{name}") for name in HOSTILE_NAMES]
    rows.append(_row("/archive/=x", "=x", patient_id="=1+2", message="-bad", study_date="@now"))
    rep.write_report_atomic(out, rows)
    data = out.read_bytes()
    text = data.decode("utf-8")  # valid UTF-8 (strict)
    assert text.count("\n") == len(rows) + 1  # one line per row: no raw line break inside
    for ch in "\x1b\x85\u202e\u2028\r\t":
        assert ch not in text
    back = rep.read_report(out, allow_partial_tail=False)
    assert [(r["path"], r["relpath"]) for r in back] == [(r["path"], r["relpath"]) for r in rows]
    assert os.fsencode(back[0]["path"]) == b"/archive/bad\xff\xfe.dcm"
    assert (back[-1]["patient_id"], back[-1]["message"], back[-1]["study_date"]) \
        == ("=1+2", "-bad", "@now")
    # open(..., encoding="utf-8") and a csv reader (pandas reads the same) see valid cells,
    # and a path cell is the documented escape of the name
    with open(out, encoding="utf-8", newline="") as fh:
        cells = list(csv.reader(fh))
    assert cells[1][0] == "/archive/bad%FF%FE.dcm"
    assert rep.unescape_path(cells[1][0]) == rows[0]["path"]


def test_formula_cells_get_a_leading_apostrophe_and_numbers_do_not(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    rep.write_report_atomic(out, [_row("/a/=cmd.dcm", "=cmd.dcm", patient_id="+4175551234",
                                       message="\t=1+1", mtime_ns=-5, series_instance_uid="@x",
                                       view_position="-PA")])
    with open(out, encoding="utf-8", newline="") as fh:
        raw = dict(zip(rep.COLUMNS, list(csv.reader(fh))[1], strict=True))
    assert raw["relpath"] == "'=cmd.dcm"
    assert raw["patient_id"] == "+4175551234"  # a number: left alone
    assert raw["message"] == "'=1+1"  # tab collapsed as before, then neutralised
    assert raw["mtime_ns"] == "-5"
    assert raw["series_instance_uid"] == "'@x" and raw["view_position"] == "'-PA"
    for cell in raw.values():
        assert not cell.startswith(("=", "@", "\t", "\r")) or cell == ""
    back = rep.read_report(out)[0]
    assert (back["relpath"], back["view_position"], back["series_instance_uid"]) \
        == ("=cmd.dcm", "-PA", "@x")


def test_a_row_that_cannot_be_formatted_costs_only_that_row(tmp_path: Path) -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no text for you")

    out = tmp_path / "r.csv"
    writer = rep.ReportWriter(out)
    writer.write_rows([_row("/a/1.dcm", "1.dcm"), _row("/a/2.dcm", "2.dcm", message=Hostile()),
                       _row("/a/3.dcm", "3.dcm")])
    writer.close()
    rows = {r["relpath"]: r for r in rep.read_report(out, allow_partial_tail=False)}
    assert set(rows) == {"1.dcm", "2.dcm", "3.dcm"}
    assert rows["2.dcm"]["status"] == "error" and "could not be written" in rows["2.dcm"]["message"]


def test_old_reports_are_read_as_they_were_written(tmp_path: Path) -> None:
    """A report of format 1 or 2 (before cells were encoded) keeps its cells: a name with a
    literal %20 or a leading apostrophe is not decoded (it would no longer match the file)."""
    out = tmp_path / "old.csv"
    with open(out, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(rep.COLUMNS)
        cells = rep.format_row(_row("/a/a%20b.dcm", "a%20b.dcm"))
        cells[0], cells[1] = "/a/a%20b.dcm", "a%20b.dcm"  # as format 1 wrote them
        w.writerow(cells)
    manifest = {"format": rep.MANIFEST_FORMAT, "shard_index": 0, "shard_count": 1, "files": 1,
                "model_sha256": "ab" * 32, "threshold": 0.5, "finished": True,
                "cancelled": False}
    rep.manifest_path(out).write_text(json.dumps(manifest))
    assert rep.read_report(out)[0]["relpath"] == "a%20b.dcm"
    rep.manifest_path(out).write_text(json.dumps({**manifest, "report_format": 2}))
    assert rep.read_report(out)[0]["relpath"] == "a%20b.dcm"  # format 2: model_id only
    # the same cells under a format-3, 4 (logit, operating_point) or 5 (the gate columns)
    # manifest (or none) are decoded
    for fmt in (3, 4, 5):
        rep.manifest_path(out).write_text(json.dumps({**manifest, "report_format": fmt}))
        assert rep.read_report(out)[0]["relpath"] == "a b.dcm"
    assert rep.REPORT_FORMAT == 5


def test_gate_columns_are_written_and_read_back(tmp_path: Path) -> None:
    """Format 5's columns follow format 4's (logit, operating_point), typed by parse_row."""
    assert rep.COLUMNS[-5:] == ("logit", "operating_point", "gate", "atypicality",
                                "atypicality_percentile")
    row = {**_row("/a/1.dcm", "1.dcm"), "logit": -1.25, "operating_point": "adult",
           "gate": "atypical", "atypicality": 3.14159, "atypicality_percentile": 99.5}
    out = tmp_path / "g.csv"
    rep.write_report_atomic(out, [row])
    back = rep.read_report(out)[0]
    assert (back["gate"], back["atypicality"], back["atypicality_percentile"]) == \
        ("atypical", "3.1416", "99.5000")
    typed = rep.parse_row(back)
    assert typed["logit"] == -1.25 and typed["atypicality"] == pytest.approx(3.1416)
    assert typed["atypicality_percentile"] == pytest.approx(99.5)


# --------------------------------------------------------------------------------------------
# Manifest validation (merge-reports trusted every number)


def _shard(tmp_path: Path, k: int, n: int, name: str | None = None) -> Path:
    out = tmp_path / (name or f"s{k}.csv")
    rows = [_row(f"/a/{i}.dcm", f"{i}.dcm") for i in range(40) if rep.shard_of(f"{i}.dcm", n) == k]
    rep.write_report_atomic(out, rows)
    rep.write_manifest(out, {"shard_index": k, "shard_count": n, "files": len(rows),
                             "model_sha256": "ab" * 32, "threshold": 0.5, "finished": True,
                             "cancelled": False})
    return out


@pytest.mark.parametrize(("field", "value", "phrase"), [
    ("shard_count", 0, "'shard_count' must be in 1..100000"),
    ("shard_count", -3, "'shard_count' must be in 1..100000"),
    ("shard_count", 10**12, "'shard_count' must be in 1..100000"),
    ("shard_count", "2", "'shard_count' must be an integer"),
    ("shard_count", 2.0, "'shard_count' must be an integer"),
    ("shard_count", None, "'shard_count' must be an integer"),
    ("shard_index", 5, "'shard_index' must be below shard_count"),
    ("shard_index", True, "'shard_index' must be an integer"),
    ("files", -1, "'files' must be in 0.."),
    ("files", [1], "'files' must be an integer"),
    ("threshold", "0.5", "'threshold' must be a number in [0, 1]"),
    ("threshold", float("nan"), "'threshold' must be a number in [0, 1]"),
    ("threshold", 7, "'threshold' must be a number in [0, 1]"),
    ("finished", "yes", "'finished' must be true or false"),
    ("model_sha256", 12, "'model_sha256' must be a text"),
    ("model_id", ["x"], "'model_id' must be a text"),
    ("report_format", 99, "written by a newer PneumoView"),
])
def test_merge_refuses_a_manifest_with_wrong_types_or_ranges(tmp_path: Path, field: str,
                                                             value: object, phrase: str) -> None:
    shards = [_shard(tmp_path, k, 2) for k in range(2)]
    m = json.loads(rep.manifest_path(shards[1]).read_text())
    m[field] = value
    rep.manifest_path(shards[1]).write_text(json.dumps(m))
    with pytest.raises(PneumoViewError, match="manifest") as info:
        rep.merge_reports(shards, tmp_path / "m.csv")
    assert phrase in str(info.value)
    assert not (tmp_path / "m.csv").exists()


def test_merge_with_a_missing_field_a_deep_or_huge_manifest_is_a_clear_error(
        tmp_path: Path) -> None:
    shards = [_shard(tmp_path, k, 2) for k in range(2)]
    m = json.loads(rep.manifest_path(shards[0]).read_text())
    del m["shard_count"]
    rep.manifest_path(shards[0]).write_text(json.dumps(m))
    with pytest.raises(PneumoViewError, match="'shard_count' is missing"):
        rep.merge_reports(shards, tmp_path / "m.csv")
    rep.manifest_path(shards[0]).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PneumoViewError, match="unreadable manifest"):
        rep.merge_reports(shards, tmp_path / "m.csv")
    rep.manifest_path(shards[0]).write_bytes(b" " * (rep.MAX_MANIFEST_BYTES + 1))
    with pytest.raises(PneumoViewError, match="too large"):
        rep.merge_reports(shards, tmp_path / "m.csv")


def test_merge_of_a_huge_shard_count_names_a_few_missing_shards(tmp_path: Path) -> None:
    one = _shard(tmp_path, 0, 100_000)
    with pytest.raises(PneumoViewError, match=r"shard\(s\) 1/100000, 2/100000, .* and 99989 "
                                              "more missing"):
        rep.merge_reports([one], tmp_path / "m.csv")


def test_merge_reports_command_refuses_a_zero_shard_count(tmp_path: Path) -> None:
    shards = [_shard(tmp_path, k, 2) for k in range(2)]
    for s in shards:
        m = json.loads(rep.manifest_path(s).read_text())
        m.update(shard_count=0, shard_index=0)
        rep.manifest_path(s).write_text(json.dumps(m))
    res = subprocess.run([sys.executable, "-m", "pneumoview", "merge-reports", *map(str, shards),
                          "-o", str(tmp_path / "m.csv")], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "'shard_count' must be in 1..100000" in res.stderr and "Traceback" not in res.stderr


def test_merge_refuses_a_fifo_output(tmp_path: Path) -> None:
    shards = [_shard(tmp_path, k, 2) for k in range(2)]
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(PneumoViewError, match="named pipe"):
        rep.merge_reports(shards, tmp_path / "fifo.csv")


def test_merge_with_the_exact_default_threshold_of_a_real_model(tmp_path: Path) -> None:
    """Thresholds are kept exactly in the manifest and compared like with like."""
    t = 0.7906419169300398
    shards = []
    for k in range(2):
        out = tmp_path / f"t{k}.csv"
        rows = [_row(f"/a/{i}.dcm", f"{i}.dcm", threshold=t) for i in range(20)
                if rep.shard_of(f"{i}.dcm", 2) == k]
        rep.write_report_atomic(out, rows)
        rep.write_manifest(out, {"shard_index": k, "shard_count": 2, "files": len(rows),
                                 "model_sha256": "ab" * 32, "threshold": t, "finished": True,
                                 "cancelled": False})
        shards.append(out)
    result = rep.merge_reports(shards, tmp_path / "m.csv")
    assert result.threshold == t and rep.read_manifest(tmp_path / "m.csv")["threshold"] == t
    done = rep.load_for_resume(shards[0], model_sha256="ab" * 32, threshold=t, shard=(0, 2))
    assert len(done) == rep.read_manifest(shards[0])["files"]
    with pytest.raises(ReportMismatchError, match="mix thresholds") as info:
        rep.load_for_resume(shards[0], model_sha256="ab" * 32, threshold=0.790642,
                            shard=(0, 2))
    assert info.value.field == "threshold" and info.value.report_value == t
    assert f"--threshold {t!r}" in flag_advice(info.value)  # the advice is the exact value


# --------------------------------------------------------------------------------------------
# --resume refuses what is not a report


@pytest.mark.parametrize("content", [b"important notes", b"important notes\nmore\n",
                                     b"path,relpath\n", b"\xff\xfe binary"])
def test_resume_refuses_a_file_that_does_not_start_with_the_header(tmp_path: Path,
                                                                   content: bytes) -> None:
    target = tmp_path / "notes.csv"
    target.write_bytes(content)
    with pytest.raises(PneumoViewError, match="not a PneumoView batch report"):
        rep.load_for_resume(target, model_sha256="ab" * 32, threshold=0.5, shard=None)
    assert target.read_bytes() == content


def test_resume_of_a_report_with_a_torn_first_row_and_an_empty_file(tmp_path: Path) -> None:
    target = tmp_path / "r.csv"
    target.write_bytes(rep.HEADER_LINE + b"/a/1.dcm,1.dc")
    assert rep.load_for_resume(target, model_sha256="ab" * 32, threshold=0.5, shard=None) == {}
    target.write_bytes(b"")
    assert rep.load_for_resume(target, model_sha256="ab" * 32, threshold=0.5, shard=None) == {}


def test_reports_with_fewer_columns_still_read(tmp_path: Path) -> None:
    """Reports written before columns were appended still resume and merge."""
    target = tmp_path / "r.csv"
    rep.write_report_atomic(target, [_row("/a/1.dcm", "1.dcm")])
    row = rep.read_report(target)[0]
    assert all(k in row for k in rep.COLUMNS)


# --------------------------------------------------------------------------------------------
# The lock beside the report


def test_a_second_writer_is_refused_naming_the_first_and_a_dead_ones_lock_is_free(
        tmp_path: Path) -> None:
    report = tmp_path / "r.csv"
    with rep.ReportLock(report):
        with pytest.raises(rep.ReportLocked) as info:
            rep.ReportLock(report).acquire()
        msg = str(info.value)
        assert f"PID {os.getpid()}" in msg and "started 20" in msg
        assert str(report) in msg
    assert not rep.lock_path(report).exists()
    # a process that took the lock and died (SIGKILL: nothing cleaned up) leaves the file
    code = ("import os, sys; from pneumoview.core import report as rep; "
            f"rep.ReportLock({str(report)!r}).acquire(); os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    assert rep.lock_path(report).exists()
    holder = json.loads(rep.lock_path(report).read_text())
    assert holder["pid"] != os.getpid()
    with rep.ReportLock(report):  # never blocks, whatever the dead process left
        pass


def test_lock_file_as_a_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    report = tmp_path / "r.csv"
    os.symlink(victim, rep.lock_path(report))
    with pytest.raises(PneumoViewError, match="symbolic link"):
        rep.ReportLock(report).acquire()
    assert victim.read_text() == "precious"


# --------------------------------------------------------------------------------------------
# Outputs that are not regular files, and symlinks


def test_fifo_and_device_outputs_are_refused_without_opening_them(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(PneumoViewError, match="named pipe"):
        rep.ReportWriter(fifo)
    with pytest.raises(PneumoViewError, match="named pipe"):
        rep.load_for_resume(fifo, model_sha256="ab" * 32, threshold=0.5, shard=None)
    assert time.monotonic() - t0 < 5  # nothing blocked on the FIFO
    if os.path.exists("/dev/null"):
        with pytest.raises(PneumoViewError, match="device"):
            rep.ReportWriter("/dev/null")
    link = tmp_path / "to-fifo.csv"
    os.symlink(fifo, link)
    with pytest.raises(PneumoViewError, match="named pipe"):
        rep.ReportWriter(link)


def test_writing_through_a_symlink_replaces_the_link_not_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "r.csv"
    os.symlink(victim, link)
    writer = rep.ReportWriter(link)
    writer.write_rows([_row("/a/1.dcm", "1.dcm")])
    writer.close()
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and len(rep.read_report(link)) == 1


def test_a_replaced_report_keeps_its_mode(tmp_path: Path) -> None:
    """The GUI creates its reports 0600; writing by rename must not widen them."""
    report = tmp_path / "r.csv"
    report.touch()
    os.chmod(report, 0o600)
    rep.write_report_atomic(report, [_row("/a/1.dcm", "1.dcm")])
    rep.manifest_path(report).touch()
    os.chmod(rep.manifest_path(report), 0o600)
    rep.write_manifest(report, {"shard_index": 0, "shard_count": 1, "files": 1,
                                "model_sha256": "ab" * 32, "threshold": 0.5, "finished": True})
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert stat.S_IMODE(rep.manifest_path(report).stat().st_mode) == 0o600
    fresh = tmp_path / "new.csv"
    rep.write_report_atomic(fresh, [])
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~mask


def test_temporary_files_are_not_predictable_links(tmp_path: Path) -> None:
    """A planted ``.r.csv.tmp-PID`` symlink must not be followed by the atomic writers."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    report = tmp_path / "r.csv"
    for name in (f".r.csv.tmp-{os.getpid()}", f".r.csv.manifest.json.tmp-{os.getpid()}"):
        os.symlink(victim, tmp_path / name)
    rep.write_report_atomic(report, [_row("/a/1.dcm", "1.dcm")])
    rep.write_manifest(report, {"shard_index": 0, "shard_count": 1, "files": 1,
                                "model_sha256": "ab" * 32, "threshold": 0.5, "finished": True})
    assert victim.read_text() == "precious"


def test_cell_codec_is_its_own_inverse_on_random_names() -> None:
    """Any name the OS can give (random bytes through ``os.fsdecode``) comes back exactly."""
    import random

    rng = random.Random(13)
    pieces = [b"a", b" ", b"=", b"+", b"-", b"@", b"'", b"%", b"%2", b"\t", b"\r", b"\n",
              b"\x1b", b"\x85", b"\xff", b"\xc4", b"\xa2", "\u202e\u2028\u0085é".encode()]
    for _ in range(3000):
        name = os.fsdecode(b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 10))))
        cell = rep.encode_cell("path", name)
        cell.encode("utf-8")
        assert "\n" not in cell and "\r" not in cell
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
        assert rep.decode_cell("path", cell) == name
    assert rep.decode_cell("message", rep.encode_cell("message", "'=x")) == "'=x"
