"""The batch engine on a mixed archive: one row per file, right status/message, same numbers as
the single-image engine; resume, shards and the scan's own-output exclusion."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from batch_support import (
    MIXED_EXPECTED,
    TWINS,
    build_mixed_folder,
    build_small_folder,
    rows_by_relpath,
)

from pneumoview.core import report as rep
from pneumoview.core.batch import BatchOptions, run_batch
from pneumoview.core.errors import PneumoViewError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from tests.support.model_fixture import make_random_model_dir

    torch.set_num_threads(1)
    return make_random_model_dir(tmp_path_factory.mktemp("model") / "m", seed=3)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, model_dir: Path,
          shared_data: Path | None) -> tuple[Path, Path, object]:
    """The mixed archive (real files from the shared data: its tests skip without them)."""
    root = build_mixed_folder(tmp_path_factory.mktemp("mixed") / "archive")
    out = root.parent / "report.csv"
    seen_rows: list[dict] = []
    progress: list = []
    summary = run_batch(BatchOptions(root, out, model_dir=model_dir, device="cpu", workers=1,
                                     batch_size=4),
                        on_rows=seen_rows.extend, on_progress=progress.append)
    return root, out, (summary, seen_rows, progress)


def test_one_row_per_file_with_the_right_status(mixed) -> None:
    root, out, (summary, seen_rows, progress) = mixed
    rows = rows_by_relpath(rep.read_report(out, allow_partial_tail=False))
    # every file found (the symlink loop followed once at most, never round in circles)
    assert set(rows) == set(MIXED_EXPECTED)
    for rel, (status, phrase) in MIXED_EXPECTED.items():
        row = rows[rel]
        assert row["status"] == status, (rel, row["status"], row["message"])
        if phrase:
            assert phrase in row["message"], (rel, row["message"])
        if status == "scored":
            assert row["probability"] and row["flagged"] in ("true", "false")
            assert row["message"] == ""
        else:
            assert row["probability"] == "" and row["flagged"] == ""
        assert row["path"] == os.path.join(str(root), *rel.split("/"))
        st = os.stat(row["path"])
        assert row["file_size"] == str(st.st_size) and row["mtime_ns"] == str(st.st_mtime_ns)
        assert row["threshold"] == "0.5"
        assert len(row["model_sha256"]) == 64
    assert rows["real/txv_siim_cxr.dcm"]["sop_instance_uid"].startswith("1.2.276")
    assert rows["real/pydicomdata_RG1_UNCI.dcm"]["view_position"] == "PA"
    assert summary.finished and not summary.cancelled
    assert summary.total == summary.done == len(MIXED_EXPECTED)
    assert summary.counts == {s: sum(1 for v in MIXED_EXPECTED.values() if v[0] == s)
                              for s in ("scored", "not_scored", "skipped", "error")}
    # the callback saw the same rows; progress reached the end
    assert sorted(r["relpath"] for r in seen_rows) == sorted(MIXED_EXPECTED)
    assert progress[-1].done == progress[-1].total == len(MIXED_EXPECTED)
    manifest = rep.read_manifest(out)
    assert manifest["finished"] is True and manifest["files"] == len(MIXED_EXPECTED)


def test_probabilities_equal_the_single_image_engine(mixed, model_dir: Path) -> None:
    from pneumoview.core import dicomio
    from pneumoview.core.inference import Engine

    root, out, _ = mixed
    rows = rows_by_relpath(rep.read_report(out))
    engine = Engine(model_dir, "cpu", with_cam=False)
    engine.load()
    checked = 0
    for rel, row in rows.items():
        if row["status"] != "scored":
            continue
        pred = engine.score(dicomio.decode(row["path"]))
        assert pred.status == "scored"
        assert abs(float(row["probability"]) - pred.probability) < 1e-4, rel
        assert row["flagged"] == ("true" if pred.flagged else "false")
        checked += 1
    assert checked == 8
    for twin, original in TWINS.items():
        assert abs(float(rows[twin]["probability"])
                   - float(rows[original]["probability"])) < 1e-4, twin


def test_sources_are_never_changed(mixed) -> None:
    root, out, _ = mixed
    from batch_support import need_real_dicoms

    for name in ("nhsx_nih_cxr.dcm", "txv_siim_cxr.dcm"):
        assert (root / "real" / name).read_bytes() == \
            (need_real_dicoms() / name).read_bytes()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_folder(tmp_path_factory.mktemp("small") / "data", 12, size=128)


def _run(root: Path, out: Path | None, model_dir: Path, **kw) -> object:
    return run_batch(BatchOptions(root, out, model_dir=model_dir, device="cpu", workers=1,
                                  batch_size=kw.pop("batch_size", 4), **kw))


def test_report_inside_the_folder_is_not_scanned_and_resume_repairs_a_torn_line(
        small: Path, model_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    import shutil

    shutil.copytree(small, root)
    out = root / "report.csv"  # inside the scanned folder on purpose
    first = _run(root, out, model_dir)
    assert first.total == 12 and first.finished
    rows = rep.read_report(out, allow_partial_tail=False)
    assert all(not r["relpath"].startswith("report.csv") for r in rows)
    # simulate a kill mid-write: drop the last two rows, leave half of the next one
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:-2]) + text[-2][: len(text[-2]) // 2])
    # ... and change one file (it must be scored again, and reported once)
    changed = root / "s0" / "img000.dcm"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    again = _run(root, out, model_dir, resume=True)
    assert again.finished and again.total == 12
    assert again.resumed == 12 - 2 - 1
    rows2 = rows_by_relpath(rep.read_report(out, allow_partial_tail=False))
    assert len(rows2) == 12
    assert rows2["s0/img000.dcm"]["mtime_ns"] == str(changed.stat().st_mtime_ns)
    before = {r["relpath"]: r["probability"] for r in rows}
    assert {k: v["probability"] for k, v in rows2.items()} == before


def test_existing_report_is_not_clobbered_and_models_are_not_mixed(
        small: Path, model_dir: Path, tmp_path: Path) -> None:
    from tests.support.model_fixture import make_random_model_dir

    out = tmp_path / "r.csv"
    _run(small, out, model_dir)
    with pytest.raises(PneumoViewError, match="already exists"):
        _run(small, out, model_dir)
    other = make_random_model_dir(tmp_path / "other-model", seed=99)
    with pytest.raises(PneumoViewError, match="mix models"):
        _run(small, out, other, resume=True)
    with pytest.raises(PneumoViewError, match="mix thresholds"):
        _run(small, out, model_dir, resume=True, threshold=0.3)
    with pytest.raises(PneumoViewError, match="shard"):
        _run(small, out, model_dir, resume=True, shard=(1, 2))
    # a completed report resumed is unchanged (no duplicates, nothing re-scored)
    before = out.read_text()
    again = _run(small, out, model_dir, resume=True)
    assert again.resumed == 12 and again.done == 12
    assert sorted(before.splitlines()) == sorted(out.read_text().splitlines())


def test_shards_partition_the_folder_and_merge_to_the_whole(
        small: Path, model_dir: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.csv"
    _run(small, whole, model_dir)
    shards = []
    for k in range(3):
        out = tmp_path / f"shard{k}.csv"
        s = _run(small, out, model_dir, shard=(k, 3))
        assert s.finished
        shards.append(out)
    sizes = [len(rep.read_report(p)) for p in shards]
    assert sum(sizes) == 12
    merged = tmp_path / "merged.csv"
    rep.merge_reports(shards, merged)

    def key(rows: list[dict]) -> list[tuple]:
        return sorted((r["relpath"], r["status"], r["file_size"], r["mtime_ns"],
                       round(float(r["probability"]), 4), r["flagged"]) for r in rows)

    assert key(rep.read_report(merged)) == key(rep.read_report(whole))
    with pytest.raises(PneumoViewError, match="missing"):
        rep.merge_reports(shards[:2], tmp_path / "m2.csv")
    with pytest.raises(PneumoViewError, match="twice"):
        rep.merge_reports([shards[0], shards[0], shards[1], shards[2]], tmp_path / "m3.csv")
    # an unfinished shard, or shards made with another model, are refused
    import json

    def with_manifest(k: int, **changes: object) -> list[Path]:
        copy = tmp_path / f"edited{k}.csv"
        copy.write_bytes(shards[k].read_bytes())
        m = rep.read_manifest(shards[k])
        m.update(changes)
        rep.manifest_path(copy).write_text(json.dumps(m))
        return [copy if i == k else shards[i] for i in range(3)]

    with pytest.raises(PneumoViewError, match="did not finish"):
        rep.merge_reports(with_manifest(1, finished=False), tmp_path / "m5.csv")
    with pytest.raises(PneumoViewError, match="different models"):
        rep.merge_reports(with_manifest(2, model_sha256="0" * 64), tmp_path / "m6.csv")
    with pytest.raises(PneumoViewError, match="different thresholds"):
        rep.merge_reports(with_manifest(0, threshold=0.25), tmp_path / "m7.csv")
    # a doubled file (a row copied into another shard) is refused
    with open(shards[1], "a", newline="") as fh:
        first_row = rep.read_report(shards[0])[0]
        csv.writer(fh, lineterminator="\n").writerow([first_row[c] for c in rep.COLUMNS])
    with pytest.raises(PneumoViewError):
        rep.merge_reports(shards, tmp_path / "m4.csv")


def test_shard_hash_is_stable() -> None:
    # fixed values: the hash must never change across versions and machines
    assert [rep.shard_of(p, 7) for p in ("a.dcm", "x/y/z.dcm", "é.dcm", "s0/img000.dcm")] \
        == [0, 0, 1, 3]
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"x/y/z.dcm").digest()[:8], "big") % 5
    assert rep.shard_of("x/y/z.dcm", 5) == expected
    with pytest.raises(PneumoViewError):
        rep.parse_shard("3/3")
    assert rep.parse_shard("2/3") == (2, 3)


def test_cancel_keeps_a_valid_partial_report(small: Path, model_dir: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    seen: list[dict] = []
    summary = run_batch(BatchOptions(small, out, model_dir=model_dir, device="cpu", workers=1,
                                     batch_size=2),
                        on_rows=seen.extend, cancel=lambda: len(seen) >= 3)
    assert summary.cancelled and not summary.finished
    rows = rep.read_report(out, allow_partial_tail=False)
    assert 3 <= len(rows) < 12
    manifest = rep.read_manifest(out)
    assert manifest["cancelled"] is True and manifest["finished"] is False
    done = _run(small, out, model_dir, resume=True)
    assert done.finished and len(rows_by_relpath(rep.read_report(out))) == 12
