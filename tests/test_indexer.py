"""Folder indexing: grouping, non-DICOM and broken files, symlink loops, DICOMDIR, cache."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from pneumoview.core import paths
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.indexer import (
    IndexCache,
    IndexProgress,
    Instance,
    build_tree,
    index_folder,
    iter_files,
    read_instance,
)
from tests.support.dicom_factory import with_pixels
from tests.support.shared_data import chest_dicoms, shared_path

PYDICOM_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _template() -> pydicom.Dataset:
    path = get_testdata_file("RG1_UNCI.dcm", download=False)
    if path is None:
        pytest.skip("pydicom-data RG1_UNCI.dcm is not installed")
    return with_pixels(pydicom.dcmread(path), np.arange(256, dtype=np.uint16).reshape(16, 16))


def _write(ds: pydicom.Dataset, path: Path, *, patient: str, study: str, series: str,
           series_no: int, inst_no: int | None, implicit: bool = False) -> Path:
    ds = ds.copy()
    ds.PatientID = patient
    ds.PatientName = f"Test^{patient}"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.SeriesNumber = series_no
    if inst_no is None:
        del ds.InstanceNumber
    else:
        ds.InstanceNumber = inst_no
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> dict:
    """Two patients, three studies, four series; instance numbers out of file-name order."""
    ds = _template()
    root = tmp_path / "src"
    st = {k: generate_uid() for k in ("a1", "a2", "b1")}
    se = {k: generate_uid() for k in ("a1x", "a1y", "a2x", "b1x")}
    files = []
    # Patient A, study a1, series a1x: files named against InstanceNumber order.
    for name, num in (("z.dcm", 1), ("a.dcm", 3), ("m.dcm", 2)):
        files.append(_write(ds, root / "A" / "s1" / name, patient="A", study=st["a1"],
                            series=se["a1x"], series_no=2, inst_no=num))
    files.append(_write(ds, root / "A" / "s1" / "NOEXT", patient="A", study=st["a1"],
                        series=se["a1y"], series_no=1, inst_no=1, implicit=True))
    files.append(_write(ds, root / "A" / "s2" / "x.dcm", patient="A", study=st["a2"],
                        series=se["a2x"], series_no=1, inst_no=None))
    files.append(_write(ds, root / "B" / "deep" / "er" / "b.dcm", patient="B", study=st["b1"],
                        series=se["b1x"], series_no=5, inst_no=7))
    return {"root": root, "files": files, "study": st, "series": se, "template": ds}


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _summary(result) -> list:
    return [(p.id, [(s.uid, [(r.uid, [(i.path, i.instance_number) for i in r.instances])
                             for r in s.series]) for s in p.studies]) for p in result.patients]


def test_paths_honour_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var, fn in (("PNEUMOVIEW_CACHE_DIR", paths.cache_dir),
                    ("PNEUMOVIEW_CONFIG_DIR", paths.config_dir),
                    ("PNEUMOVIEW_DATA_DIR", paths.data_dir)):
        monkeypatch.setenv(var, str(tmp_path / var))
        assert fn() == tmp_path / var
        monkeypatch.delenv(var)
        assert fn() != tmp_path / var and "pneumoview" in str(fn()).lower()


def test_grouping_and_ordering(tree: dict) -> None:
    before = _mtimes(tree["root"])
    result = index_folder(tree["root"], cache=False)
    assert not result.errors and not result.non_dicom and not result.cancelled
    assert len(result.instances) == 6 and result.headers_read == 6
    assert [p.id for p in result.patients] == ["A", "B"]
    a = result.patients[0]
    assert a.name == "Test^A"
    assert {s.uid for s in a.studies} == {tree["study"]["a1"], tree["study"]["a2"]}
    a1 = next(s for s in a.studies if s.uid == tree["study"]["a1"])
    # series sorted by SeriesNumber: the extension-less implicit-VR file's series (1) first
    assert [s.number for s in a1.series] == [1, 2]
    assert Path(a1.series[0].instances[0].path).name == "NOEXT"
    assert a1.series[0].instances[0].transfer_syntax == ImplicitVRLittleEndian
    x = a1.series[1]
    assert [i.instance_number for i in x.instances] == [1, 2, 3]
    assert [Path(i.path).name for i in x.instances] == ["z.dcm", "m.dcm", "a.dcm"]
    inst = x.instances[0]
    assert (inst.rows, inst.columns, inst.n_frames, inst.modality) == (16, 16, 1, "CR")
    assert inst.photometric == "MONOCHROME1" and inst.file_size == os.path.getsize(inst.path)
    assert result.patients[1].studies[0].series[0].instances[0].instance_number == 7
    assert _mtimes(tree["root"]) == before  # sources are only read


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.shared_data  # compares the real chest files too when they are there
def test_fast_and_pydicom_readers_agree() -> None:
    """The small parser must give exactly what the pydicom reader gives, or defer to it."""
    files = sorted(p for p in PYDICOM_TEST_FILES.rglob("*") if p.is_file())
    files += chest_dicoms()
    compared = 0
    for f in files:
        try:
            slow: Instance | str = read_instance(f, fast=False)
        except PneumoViewError as exc:
            slow = exc.reason
        try:
            fast: Instance | str = read_instance(f)
        except PneumoViewError as exc:
            fast = exc.reason
        if isinstance(slow, Instance):
            compared += 1
            assert fast == slow, f.name
        else:
            assert isinstance(fast, str), f.name
    assert compared > 100


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.shared_data  # a real NIH PNG when it is there, else a made-up one
def test_non_dicom_and_broken_files(tree: dict) -> None:
    root = tree["root"]
    (root / "notes.txt").write_text("not a dicom file\n" * 20)
    (root / "empty.dcm").write_bytes(b"")
    png = shared_path("nih", "images")
    pngs = sorted(png.glob("*.png"))[:1] if png is not None else []
    if pngs:
        shutil.copy(pngs[0], root / "image.png")
    else:
        (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(500))
    good = tree["files"][0].read_bytes()
    (root / "truncated.dcm").write_bytes(good[:400])
    garbage = bytearray(good[:2000])
    garbage[132:2000] = b"\xff" * (2000 - 132)
    (root / "corrupt").write_bytes(bytes(garbage))
    result = index_folder(root, cache=False)
    names = sorted(Path(p).name for p in result.non_dicom)
    assert names == ["empty.dcm", "image.png", "notes.txt"]
    errors = {Path(p).name: reason for p, reason in result.errors}
    assert set(errors) == {"truncated.dcm", "corrupt"}
    assert "truncated" in errors["truncated.dcm"]
    assert all(reason for reason in errors.values())
    assert len(result.instances) == 6
    with pytest.raises(PneumoViewError, match="not a DICOM file"):
        read_instance(root / "notes.txt")
    with pytest.raises(PneumoViewError, match="truncated"):
        read_instance(root / "truncated.dcm")


def test_raw_dicom_without_preamble(tmp_path: Path) -> None:
    """Files without the 128-byte preamble (old ACR-NEMA style) are still indexed."""
    ds = _template()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.preamble = None
    ds.save_as(tmp_path / "raw", implicit_vr=True, little_endian=True,
               enforce_file_format=False)
    assert (tmp_path / "raw").read_bytes()[128:132] != b"DICM"
    result = index_folder(tmp_path, cache=False)
    assert [i.sop_instance_uid for i in result.instances] == [ds.SOPInstanceUID]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks on this platform")
def test_symlink_loop_does_not_hang(tree: dict) -> None:
    root = tree["root"]
    try:
        os.symlink(root, root / "A" / "loop", target_is_directory=True)
        os.symlink(root / "B", root / "B" / "deep" / "self", target_is_directory=True)
    except OSError as exc:
        pytest.skip(f"cannot create symlinks here: {exc}")
    files = list(iter_files(root))
    assert len(files) == len(set(files)) == 6
    result = index_folder(root, cache=False)
    assert len(result.instances) == 6 and not result.errors
    assert len(list(iter_files(root, follow_symlinks=False))) == 6


def _dicomdir(src: Path, dest: Path) -> Path:
    from pydicom.fileset import FileSet

    fs = FileSet()
    for f in sorted(src.rglob("*.dcm")):
        ds = pydicom.dcmread(f)
        if "InstanceNumber" in ds:  # FileSet's IMAGE records require it
            fs.add(ds)
    fs.write(dest)
    return dest / "DICOMDIR"


def test_dicomdir_is_read_and_not_double_counted(tree: dict, tmp_path: Path) -> None:
    dd = _dicomdir(tree["root"], tmp_path / "media")
    result = index_folder(tmp_path / "media", cache=False)
    assert result.dicomdirs == [str(dd)]
    assert not result.errors and not result.non_dicom
    assert len(result.instances) == 4  # four numbered .dcm files, each once (DICOMDIR + walk)
    assert len({i.path for i in result.instances}) == 4
    assert sum(len(r.instances) for p in result.patients for s in p.studies
               for r in s.series) == 4


def test_dicomdir_reference_found_only_through_dicomdir(tree: dict, tmp_path: Path) -> None:
    """With the DICOMDIR file itself as the root there is no walk: every instance comes in
    through its records, and the DICOMDIR is never an instance."""
    dd = _dicomdir(tree["root"], tmp_path / "media")
    result = index_folder(dd, cache=False)  # a single DICOMDIR file as the root
    assert len(result.instances) == 4 and result.dicomdirs == [str(dd)]


def test_malicious_dicomdir_is_refused(tree: dict, tmp_path: Path) -> None:
    dd = _dicomdir(tree["root"], tmp_path / "media" / "inner")
    outside = tmp_path / "media" / "secret.dcm"
    shutil.copy(tree["files"][0], outside)
    ds = pydicom.dcmread(dd)
    image_records = [r for r in ds.DirectoryRecordSequence if "ReferencedFileID" in r]
    image_records[0].ReferencedFileID = ["..", "secret.dcm"]
    image_records[1].ReferencedFileID = ["..", "..", "..", "etc", "passwd"]
    ds.save_as(dd)
    result = index_folder(dd.parent, cache=False)
    refused = [reason for p, reason in result.errors if p == str(dd)]
    assert len(refused) == 2 and all("refused" in r for r in refused)
    assert str(outside) not in {i.path for i in result.instances}
    assert all(Path(i.path).is_relative_to(dd.parent) for i in result.instances)
    assert len(result.instances) == 4  # the walk still finds the two unreferenced files


def test_progress_and_cancel(tree: dict) -> None:
    root = tree["root"]
    for i in range(30):  # enough files for several progress calls
        (root / "junk" / f"{i:02d}.txt").parent.mkdir(exist_ok=True)
        (root / "junk" / f"{i:02d}.txt").write_text("x")
    calls: list[IndexProgress] = []
    batches: list[list[Instance]] = []
    result = index_folder(root, cache=False, progress=calls.append, on_instances=batches.append,
                          progress_every=5)
    assert len(calls) >= 7 and calls[-1].files_seen == 36 and calls[-1].dicom_found == 6
    assert calls[-1].non_dicom == 30
    assert all(not os.path.isabs(c.current) for c in calls)
    assert sorted(i.path for b in batches for i in b) == sorted(i.path for i in result.instances)

    seen: list[IndexProgress] = []
    stop_after = 10

    def cancel() -> bool:
        return bool(seen) and seen[-1].files_seen >= stop_after

    partial = index_folder(root, cache=False, progress=seen.append, cancel=cancel,
                           progress_every=1)
    assert partial.cancelled
    assert len(partial.instances) + len(partial.non_dicom) < 36
    assert seen[-1].files_seen <= stop_after + 1


def test_cache_second_run_reads_nothing(tree: dict, tmp_path: Path) -> None:
    cache_path = tmp_path / "cache" / "index.sqlite3"
    (tree["root"] / "notes.txt").write_text("hello")
    before = _mtimes(tree["root"])
    with IndexCache(cache_path) as cache:
        first = index_folder(tree["root"], cache=cache)
        assert first.from_cache == 0 and first.headers_read == 7
        second = index_folder(tree["root"], cache=cache)
    assert second.headers_read == 0 and second.from_cache == 7
    assert second.instances == first.instances and second.patients == first.patients
    assert second.non_dicom == first.non_dicom
    assert _mtimes(tree["root"]) == before

    # A modified file (new size and mtime) is read again; others still come from the cache.
    changed = tree["files"][0]
    ds = pydicom.dcmread(changed)
    ds.InstanceNumber = 99
    ds.SeriesDescription = "edited"
    ds.save_as(changed)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = index_folder(tree["root"], cache=IndexCache(cache_path))
    assert third.headers_read == 1 and third.from_cache == 6
    got = next(i for i in third.instances if i.path == str(changed))
    assert got.instance_number == 99 and got.series_description == "edited"

    # A deleted file is dropped from the result and from the cache.
    tree["files"][-1].unlink()
    fourth = index_folder(tree["root"], cache=IndexCache(cache_path))
    assert len(fourth.instances) == 5 and fourth.headers_read == 0
    con = sqlite3.connect(cache_path)
    assert con.execute("SELECT count(*) FROM entries").fetchone()[0] == 6
    con.close()


def test_default_cache_location_and_corrupt_cache_rebuilt(tree: dict, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMOVIEW_CACHE_DIR", str(tmp_path / "usercache"))
    first = index_folder(tree["root"])  # cache=True: the default file under the env folder
    files = list((tmp_path / "usercache").iterdir())
    assert len(files) == 1 and first.headers_read == 6
    assert index_folder(tree["root"]).headers_read == 0
    files[0].write_bytes(b"this is not an sqlite database" * 100)
    rebuilt = index_folder(tree["root"])
    assert rebuilt.headers_read == 6 and not rebuilt.errors
    assert index_folder(tree["root"]).headers_read == 0  # the rebuilt cache works


def test_unusable_cache_location_is_not_fatal(tree: dict, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = IndexCache(blocker / "sub" / "cache.sqlite3")  # parent is a file: cannot create
    assert not cache.available
    result = index_folder(tree["root"], cache=cache)
    assert len(result.instances) == 6


def test_build_tree_placeholders_are_stable() -> None:
    base = dict(sop_instance_uid="1.2", instance_number=None, patient_id="", patient_name="",
                patient_birth_date="", patient_sex="", study_instance_uid="", study_date="",
                study_time="", study_description="", accession_number="",
                series_instance_uid="", series_number=None, series_description="",
                modality="", rows=0, columns=0, n_frames=1, photometric="",
                transfer_syntax="", view_position="", body_part="", sop_class_uid="",
                file_size=1, mtime_ns=1)
    items = [Instance(path=f"/x/{n}", **base) for n in ("b", "a")]
    items.append(dataclasses.replace(items[0], path="/x/c", patient_id="P",
                                     study_instance_uid="1.3"))
    t1, t2 = build_tree(items), build_tree(list(reversed(items)))
    assert t1 == t2
    unknown = next(p for p in t1 if p.placeholder)
    assert unknown.name == "Unknown patient"
    assert unknown.studies[0].description == "Unknown study"
    assert unknown.studies[0].placeholder and unknown.studies[0].uid.startswith("unknown:")
    series = unknown.studies[0].series[0]
    assert series.description == "Unknown series"
    assert [Path(i.path).name for i in series.instances] == ["a", "b"]
    known = next(p for p in t1 if p.id == "P")
    assert known.studies[0].uid == "1.3" and known.studies[0].series[0].placeholder


def test_missing_root_and_single_file(tree: dict, tmp_path: Path) -> None:
    with pytest.raises(PneumoViewError, match="not found"):
        index_folder(tmp_path / "nope", cache=False)
    one = index_folder(tree["files"][0], cache=False)
    assert [i.path for i in one.instances] == [str(tree["files"][0])]
