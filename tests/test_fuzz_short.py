"""Short fuzz run for CI: mutated real DICOM files through every core entry point.

Each case runs in its own forked process (``tests/support/fuzzing.py``) under an address-space
limit and a time bound, so a codec segfault or abort is counted as a crash, a loop as a hang,
and any exception other than PneumoViewError escaping a core function (indexer, header reader,
gate, decoder, display windowing, model-input contract, inference engine, the batch worker task,
``info``) is a failure with its traceback and a saved reproducer. The batch engine runs as the
real ``pneumoview flag`` command on a folder of mutated files: every file must get exactly one
row. The long campaign (>= 10,000 cases) is ``tools/fuzz_campaign.py``; see RELIABILITY.md.

The regression tests at the end pin the bugs the fuzzer found (each runs in a subprocess: a
regression may abort the process).
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support import fuzzing

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
N_CASES = int(os.environ.get("PNEUMOVIEW_FUZZ_CASES", "300"))
MASTER_SEED = int(os.environ.get("PNEUMOVIEW_FUZZ_SEED", "20261122"))
TIME_BOUND_S = 20.0  # per case, all targets together (generous: CI machines are shared)
MEM_MB = 3072  # address space a case may add over the server's own (RLIMIT_AS)
N_BATCH_FILES = 40
INFER_EVERY = 8  # one case in N also runs the inference engine (in a server holding the model)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PNEUMOVIEW_TORCH_THREADS": "1"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The random-weight model fixture, or None when torch/the model module is unavailable."""
    try:
        from tests.support.model_fixture import make_random_model_dir

        return make_random_model_dir(tmp_path_factory.mktemp("fuzz-model") / "model")
    except ImportError:
        return None


@pytest.fixture(scope="module")
def mutated_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of mutated files (deterministic), plus a couple of untouched seeds."""
    folder = tmp_path_factory.mktemp("fuzz-batch")
    seeds = fuzzing.seed_corpus(include_large=False)
    rng = random.Random(MASTER_SEED + 1)
    for i in range(N_BATCH_FILES):
        seed = fuzzing.pick_seed(seeds, rng)
        data, _ = fuzzing.mutate(seed.data, random.Random(rng.randrange(2**31)))
        sub = folder / ("sub" if i % 3 == 0 else "")
        sub.mkdir(exist_ok=True)
        (sub / f"case{i:03d}.dcm").write_bytes(data)
    (folder / "intact.dcm").write_bytes(seeds[-2].data)
    (folder / "empty.dcm").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def batch_run(mutated_folder: Path, model_dir: Path | None,
              tmp_path_factory: pytest.TempPathFactory):
    """Start ``pneumoview flag`` on the mutated folder in the background (it runs while the
    per-case fuzzing does: two cores, one wall-clock budget); the batch test collects it."""
    if model_dir is None:
        yield None
        return
    out = tmp_path_factory.mktemp("fuzz-report") / "report.csv"
    cmd = [PY, "-m", "pneumoview", "flag", str(mutated_folder), "--output", str(out),
           "--model", str(model_dir), "--device", "cpu", "--workers", "1", "--timeout", "20",
           "--memory-limit", "3072", "--batch-size", "8", "-q"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=str(REPO))
    yield proc, out, t0
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def light_server(tmp_path_factory: pytest.TempPathFactory):
    """A fork server without torch (cheap forks); started first so it warms up meanwhile."""
    work = tmp_path_factory.mktemp("fuzz-light")
    server = fuzzing.Server(timeout_s=TIME_BOUND_S, mem_mb=MEM_MB, small=True,
                            save=str(work / "reproducers"), workdir=str(work))
    yield server
    server.close()


@pytest.fixture(scope="module")
def heavy_server(model_dir, tmp_path_factory: pytest.TempPathFactory):
    """A fork server holding the fixture model: runs the cases that include inference."""
    if model_dir is None:
        yield None
        return
    work = tmp_path_factory.mktemp("fuzz-heavy")
    server = fuzzing.Server(model_dir=str(model_dir), infer_every=1, timeout_s=TIME_BOUND_S,
                            mem_mb=MEM_MB, small=True, save=str(work / "reproducers"),
                            workdir=str(work))
    yield server
    server.close()


def test_fuzz_cases_end_in_result_or_pneumoview_error(light_server, model_dir, heavy_server,
                                                      batch_run):
    """N mutated files, each in a forked child: no crash, no hang, no foreign exception."""
    t0 = time.monotonic()
    records: list[dict] = []
    if heavy_server is not None:
        assert heavy_server.info["engine"], "the inference target did not start"
    weights = fuzzing.seed_weights(light_server.info["seeds"])
    plan = [(i, seed, rng) for i, (seed, rng) in enumerate(
        fuzzing.case_plan(light_server.seed_names, weights, N_CASES, MASTER_SEED))]
    died = fuzzing.run_plan(plan, [light_server], heavy_server, INFER_EVERY, records.append)
    assert not died, died
    assert len(records) == N_CASES
    elapsed = time.monotonic() - t0
    failures = [(r["seed"], r["rng"], r["mutations"], r["failures"]) for r in records
                if r["failures"]]
    assert not failures, (
        f"{len(failures)} of {len(records)} cases failed (rebuild one "
        "with fuzzing.make_case(seeds, seed, rng)):\n"
        + "\n".join(json.dumps(f)[:600] for f in failures[:10]))
    # every error names the file it is about
    unnamed = [(r["seed"], r["rng"], name) for r in records
               for name, res in r["targets"].items() if res.get("no_path")]
    assert not unnamed, f"PneumoViewError without a file name: {unnamed[:5]}"
    worst_time = max(r["wall_s"] for r in records)
    worst_mem = max(r["growth_mb"] for r in records)
    assert worst_time < TIME_BOUND_S
    assert worst_mem < MEM_MB
    # the run really exercised the decoder: some cases decode, some are refused
    outcomes = {r["targets"].get("decode", {}).get("outcome") for r in records}
    assert {"ok", "error"} <= outcomes
    if model_dir is not None:
        assert any("inference" in r["targets"] for r in records)
    print(f"\n{len(records)} cases in {elapsed:.1f} s; worst {worst_time:.2f} s, "
          f"worst memory growth {worst_mem:.0f} MB")


def test_fuzz_batch_gives_every_file_exactly_one_row(batch_run, mutated_folder):
    if batch_run is None:
        pytest.skip("inference engine / model fixture unavailable (torch not installed?)")
    proc, out, t0 = batch_run
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"pneumoview flag did not finish in 120 s:\n{stderr[-2000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    files = sorted(p.relative_to(mutated_folder).as_posix()
                   for p in mutated_folder.rglob("*") if p.is_file())
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rels = [r["relpath"] for r in rows]
    assert sorted(rels) == files, "rows and files differ (a file lost, doubled or invented)"
    assert {r["status"] for r in rows} <= {"scored", "not_scored", "skipped", "error"}
    for r in rows:
        if r["status"] in ("error", "not_scored"):
            assert r["message"], r
        if r["status"] == "scored":
            assert 0.0 <= float(r["probability"]) <= 1.0
    counts = {s: sum(r["status"] == s for r in rows) for s in {r["status"] for r in rows}}
    print(f"\nbatch: {len(rows)} rows in {time.monotonic() - t0:.1f} s: {counts}")


def test_fuzz_index_folder_lists_every_file_once(mutated_folder, tmp_path):
    """The indexer, in a subprocess, on the mutated folder: each file once, nothing raised."""
    script = textwrap.dedent(f"""
        import json, os, sys
        from pneumoview.core.indexer import index_folder
        res = index_folder({str(mutated_folder)!r}, cache=False)
        print(json.dumps({{
            "instances": [i.path for i in res.instances],
            "non_dicom": list(res.non_dicom),
            "dicomdirs": list(res.dicomdirs),
            "errors": [p for p, _ in res.errors],
            "error_messages": [m for _, m in res.errors],
        }}))
    """)
    proc = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=120,
                          env=_env(), cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    # each file is an instance, a non-DICOM file, a followed DICOMDIR or has error entries (a
    # DICOMDIR has one per bad reference); never an instance twice or an instance and an error
    found = res["instances"] + res["non_dicom"]
    assert len(found) == len(set(found))
    assert not set(res["instances"]) & set(res["errors"])
    listed = set(found) | set(res["dicomdirs"]) | set(res["errors"])
    files = {str(p) for p in mutated_folder.rglob("*") if p.is_file()}
    assert {os.path.abspath(p) for p in listed} == files
    assert all(res["error_messages"])


# --------------------------------------------------------------------------------------------
# Regressions: minimal inputs for the bugs the fuzzer found


def _built(name: str) -> bytes:
    return {s.name: s for s in fuzzing.built_seeds()}[name].data


def _edit(data: bytes, tag: int, *, vr: bytes | None = None, length: int | None = None,
          value: bytes | None = None) -> bytes:
    lay = fuzzing.layout(data)
    assert lay is not None
    el = lay.find(tag)
    assert el is not None
    if value is not None:
        data = fuzzing._splice_value(data, lay, el, value)
    if length is not None:
        data = data[:el.length_at] + fuzzing._pack(length, el.length_size, lay.little) + \
            data[el.length_at + el.length_size:]
    if vr is not None:
        data = data[:el.start + 4] + vr + data[el.start + 6:]
    return data


REGRESSIONS = {
    # a wrong VR on Rows (SQ: the header no longer parses; PN: int() of a PersonName escaped)
    "rows_as_sequence": lambda: _edit(_built("built_dx_8bit.dcm"), 0x00280010, vr=b"SQ"),
    "rows_as_person_name": lambda: _edit(_built("built_dx_8bit.dcm"), 0x00280010, vr=b"PN"),
    # a US element of 3 bytes: pydicom's BytesLengthException escaped decode
    "bits_allocated_3_bytes": lambda: _edit(_built("built_multiframe.dcm"), 0x00280100,
                                            length=3),
    # an unknown VR: NotImplementedError escaped wherever the element was first read
    "unknown_vr_bits_allocated": lambda: _edit(_built("built_dx_8bit.dcm"), 0x00280100,
                                               vr=b"XX"),
    "unknown_vr_patient_name": lambda: _edit(_built("built_dx_8bit.dcm"), 0x00100010,
                                             vr=b"\x50\x0e"),
    # BitsStored multi-valued (US of 4 bytes): int() of a list escaped check_decodable
    "bits_stored_two_values": lambda: _edit(_built("built_cr_12bit_rescale.dcm"), 0x00280101,
                                            value=b"\x0c\x00\x0c\x00"),
    # WindowWidth 'abc': windowing iterated the characters of the string; ValueError escaped
    "window_width_text": lambda: _edit(_built("built_signed_rescale.dcm"), 0x00281051,
                                       value=b"abc "),
    # Columns 1 on an RGB image (more data than the header needs): a 4-D array came back
    "rgb_columns_1": lambda: _edit(_built("built_rgb_grey.dcm"), 0x00280011,
                                   value=b"\x01\x00"),
    # NumberOfFrames 0 on a multi-frame file: every frame came back as one 'frame'
    "frames_zero": lambda: _edit(_built("built_multiframe.dcm"), 0x00280008, value=b"0 "),
    # a JPEG-LS frame smaller than Rows x Columns: gdcm aborted the process (SIGABRT)
    "jpegls_columns_65535": lambda: _edit(_built("built_jpegls.dcm"), 0x00280011,
                                          value=b"\xff\xff"),
}


def _case(seed: str, rng: int) -> bytes:
    """A campaign case rebuilt from its record (cases rebuild byte for byte: tested below)."""
    seeds = {s.name: s for s in fuzzing.seed_corpus(include_large=False)}
    return fuzzing.make_case(seeds, seed, rng)[0]


#: Cases from the second 10,000-case campaign, rebuilt from their records; DICOMDIR ones run
#: under the name DICOMDIR, so index_folder follows them.
CAMPAIGN_CASES = {
    # WindowCenterWidthExplanation read as one DS number: windowing iterated it (TypeError)
    "window_explanation_number": ("built_signed_rescale.dcm", 168256826),
    # a DICOMDIR record value with an unknown VR: NotImplementedError escaped index_folder
    "dicomdir_record_unknown_vr": ("pydicom_DICOMDIR", 312004389),
    # a ReferencedFileID holding a NUL byte: os.path.realpath raised ValueError in index_folder
    "dicomdir_reference_nul": ("pydicom_DICOMDIR", 1250837997),
    "dicomdir_reference_nul_2": ("pydicom_DICOMDIR", 811927244),
    # third campaign (2026-12-01): an element read as a sequence whose nested value has a bad
    # length; str() of it in `info` raised pydicom's BytesLengthException
    "info_sequence_value_bad_length": ("pydicom_emri_small_RLE.dcm", 894585346),
}
REGRESSIONS.update({name: (lambda s=s, r=r: _case(s, r))
                    for name, (s, r) in CAMPAIGN_CASES.items()})


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_fuzz_regression(name, light_server, tmp_path):
    """Each pinned input, in a forked child: ends in an image or our error, no signal."""
    try:
        data = REGRESSIONS[name]()
    except KeyError:
        pytest.skip(f"seed for {name} cannot be built here (codec plugin missing)")
    path = tmp_path / f"{name}.dcm"
    if name.startswith("dicomdir"):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "DICOMDIR"
    path.write_bytes(data)
    rec = light_server.run_file(path)
    assert rec["end"] == "ok", f"the case process ended with {rec['end']} {rec.get('signal')}"
    bad = {k: v for k, v in rec["targets"].items() if v["outcome"] in ("unexpected", "wrong")}
    assert not bad, json.dumps(bad, indent=1)[:3000]
    # the decoder ends in an image or a clear error naming the file
    assert rec["targets"]["decode"]["outcome"] in ("ok", "error")
    assert not rec["targets"]["decode"].get("no_path")


def test_fuzz_regression_gate_value_whose_text_raises():
    """SamplesPerPixel read as a sequence whose items hold an unknown VR: str() of it raised
    NotImplementedError out of the gate (and so out of the batch worker task)."""
    from pneumoview.core.gate import not_scorable_reason

    class Unprintable:
        def __str__(self) -> str:
            raise NotImplementedError("Unknown Value Representation 'LL'")

    class Header:
        def get(self, keyword: str, default: object = None) -> object:
            return Unprintable() if keyword == "SamplesPerPixel" else default

    assert not_scorable_reason(Header(), 1) is None


def test_fuzz_regression_huge_header_value_keeps_the_report_readable(tmp_path, model_dir):
    """A corrupt length made one header element swallow the file: Modality 770 KB long. The
    batch wrote it (and the gate's message quoting it) into the report, whose reader then failed
    with csv.Error (field over 128 KiB): --resume and merge-reports broke on that report."""
    from pneumoview.core import report as rep

    if model_dir is None:
        pytest.skip("model fixture unavailable")
    folder = tmp_path / "in"
    folder.mkdir()
    # implicit VR: 4-byte lengths, so one value can be far over 64 KiB
    data = _edit(_built("built_implicit.dcm"), 0x00080060, value=b"OT" + b"\xc5" * 300_000)
    (folder / "huge.dcm").write_bytes(data)
    (folder / "plain.dcm").write_bytes(_built("built_dx_8bit.dcm"))
    out = tmp_path / "report.csv"
    base = [PY, "-m", "pneumoview", "flag", str(folder), "--output", str(out), "--model",
            str(model_dir), "--device", "cpu", "--workers", "1", "-q"]
    proc = subprocess.run(base, capture_output=True, text=True, timeout=240, env=_env(),
                          cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = rep.read_report(out)
    assert sorted(r["relpath"] for r in rows) == ["huge.dcm", "plain.dcm"]
    assert all(len(v) <= rep.MAX_FIELD_CHARS for r in rows for k, v in r.items()
               if k not in ("path", "relpath"))
    proc = subprocess.run([*base, "--resume"], capture_output=True, text=True, timeout=240,
                          env=_env(), cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_fuzz_regression_indexer_pydicom_path_value_whose_text_raises(tmp_path):
    """The case that broke `info` also reaches the indexer's pydicom fallback (used when the fast
    header parser gives up): str() of the re-typed value raised BytesLengthException there."""
    from pneumoview.core.errors import PneumoViewError
    from pneumoview.core.indexer.pydicomheader import pydicom_fields

    path = tmp_path / "case.dcm"
    path.write_bytes(_case("pydicom_emri_small_RLE.dcm", 894585346))
    try:
        fields = pydicom_fields(str(path))
    except PneumoViewError as exc:
        assert str(path) in str(exc) and "SeriesDescription" in exc.reason
    else:
        assert isinstance(fields["series_description"], str)


def test_fuzz_case_is_rebuilt_exactly_from_its_record(light_server, tmp_path):
    """(seed name, rng seed) gives the same bytes in another process: a failure's JSON record is
    enough to reproduce it."""
    seeds = {s.name: s for s in fuzzing.seed_corpus(include_large=False)}
    for i, name in enumerate(sorted(n for n in seeds if n.startswith("built_"))[:4]):
        path = tmp_path / f"{i}.dcm"
        light_server.write(name, 1000 + i, path)
        assert path.read_bytes() == fuzzing.make_case(seeds, name, 1000 + i)[0]


def test_fuzz_regression_codec_panic_becomes_pneumoview_error(tmp_path, monkeypatch):
    """A Rust codec's panic arrives as pyo3's PanicException, a BaseException (not an
    Exception): it escaped decode in the first fuzz run. Simulated here at the codec call."""
    import pydicom.pixels

    from pneumoview.core import dicomio
    from pneumoview.core.errors import PneumoViewError

    class PanicException(BaseException):
        pass

    def panic(*args, **kwargs):
        raise PanicException("index out of bounds: the len is 8192 but the index is 8193")

    path = tmp_path / "rle.dcm"
    path.write_bytes(_built("built_rle.dcm"))
    monkeypatch.setattr(pydicom.pixels, "pixel_array", panic)
    with pytest.raises(PneumoViewError, match="PanicException") as err:
        dicomio.decode(path)
    assert err.value.path == str(path)
