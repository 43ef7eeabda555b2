"""The command line as an attacker and a newcomer use it (issue 13, items 6, 8, 11, 13, 14, 15;
issue 12, items 2 and 7): real ``pneumoview`` processes, signals, pipes and the bundled model."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from batch_support import build_small_folder, rows_by_relpath

from pneumoview.core import report as rep

REPO = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PNEUMOVIEW_TORCH_THREADS="1", **extra)
    return env


def _cmd(*args: str | os.PathLike[str]) -> list[str | os.PathLike[str]]:
    return [sys.executable, "-m", "pneumoview", *args]


def _pv(*args: str | os.PathLike[str], timeout: float = 300, **kw: object) \
        -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cmd(*args), env=kw.pop("env", None) or _env(), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, **kw)


MODEL_SEED = 7  # the model_dir fixture's weights (tests/conftest.py)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_folder(tmp_path_factory.mktemp("cli") / "data", 40, size=192)


@pytest.fixture(scope="module")
def dicom_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.dicom_factory import make_dataset, save

    arr = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096).astype(np.uint16)
    ds = make_dataset(arr, bits_stored=12, PatientID="ID\x1b]0;owned\x07",
                      PatientName="Doe^\x1b[2J\x1b[31mALL CLEAR")
    name = "esc\x1b[1mname.dcm"
    return save(ds, tmp_path_factory.mktemp("one") / name)


def _data_rows(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


@contextlib.contextmanager
def _running(args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A ``pneumoview`` process in its own session, killed and reaped on the way out."""
    proc = subprocess.Popen(_cmd(*args), env=_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def _wait_rows(proc: subprocess.Popen[bytes], report: Path, n: int) -> None:
    deadline = time.monotonic() + 180
    while _data_rows(report) < n:
        if proc.poll() is not None:
            pytest.fail(f"the run ended early: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{n} rows did not appear within 180 s")
        time.sleep(0.005)


# --------------------------------------------------------------------------------------------
# Signals


@pytest.mark.slow
@pytest.mark.parametrize(("signame", "status"), [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_and_sighup_stop_like_ctrl_c(folder: Path, model_dir: Path, tmp_path: Path,
                                             signame: str, status: int) -> None:
    """They ended flag at once, the manifest saying neither finished nor cancelled."""
    report = tmp_path / "r.csv"
    base = ["flag", str(folder), "--output", str(report), "--model", str(model_dir),
            "--device", "cpu", "--workers", "1", "--batch-size", "2", "--quiet"]
    with _running(base) as proc:
        _wait_rows(proc, report, 4)
        os.kill(proc.pid, getattr(signal, signame))
        proc.wait(120)
        err = proc.stderr.read().decode()
    assert proc.returncode == status, err
    assert f"{signame}: finishing the rows in flight" in err and "Traceback" not in err
    manifest = rep.read_manifest(report)
    assert manifest["cancelled"] is True and manifest["finished"] is False
    rows = rep.read_report(report, allow_partial_tail=False)  # every written row is whole
    assert 4 <= len(rows) < 40 and manifest["rows"] == len(rows)
    assert not rep.lock_path(report).exists()
    done = _pv(*base, "--resume")
    assert done.returncode == 0, done.stderr
    assert len(rows_by_relpath(rep.read_report(report))) == 40


# --------------------------------------------------------------------------------------------
# The bundled model: kill, a concurrent run, resume, shards, merge (issue 12 item 2)


@pytest.mark.slow
def test_bundled_model_kill_concurrent_run_resume_shards_and_merge(tmp_path: Path) -> None:
    """With the bundled model's own threshold (0.7906419...), --resume refused its own report
    ("the report used 0.790642, this run 0.790642"); following the advice then broke the
    merge. The fixture model's 0.5 hid it. Also: a second run on the same report is refused
    naming the first; the lock a SIGKILLed run leaves never blocks --resume; the summary after
    a resume counts the whole report and this run."""
    from pneumoview.core.resources import bundled_model_dir

    default = json.loads((bundled_model_dir() / "metadata.json").read_text())["threshold"]
    assert default != round(default, 6)  # the case that broke: not exact in six digits
    data = build_small_folder(tmp_path / "data", 16, size=128)
    report = tmp_path / "r.csv"
    # Synthetic films are not chest radiographs: the input gate would (rightly) refuse them all.
    base = ["flag", str(data), "--output", str(report), "--device", "cpu", "--workers", "1",
            "--batch-size", "2", "--quiet", "--no-gate"]
    with _running(base) as first:
        _wait_rows(first, report, 2)
        os.kill(first.pid, signal.SIGSTOP)  # frozen mid-run, holding the report
        second = _pv(*base, "--resume")
        assert second.returncode == 1, second.stderr
        assert f"another run is writing this report (PID {first.pid}, started 20" \
            in second.stderr
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    assert rep.lock_path(report).exists()  # left behind by the killed run
    partial = len(rep.read_report(report))
    assert 2 <= partial < 16
    done = _pv(*base, "--resume")
    assert done.returncode == 0, done.stderr
    rows = rows_by_relpath(rep.read_report(report, allow_partial_tail=False))
    assert len(rows) == 16 and all(r["status"] == "scored" for r in rows.values())
    assert rep.read_manifest(report)["threshold"] == default
    assert "16/16 files: 16 scored" in done.stderr  # the whole report, not "0 scored"
    assert f"this run: {16 - partial} files ({16 - partial} scored" in done.stderr
    assert f"{partial} kept from the report" in done.stderr
    # shards with the default threshold, one of them killed and resumed, then merged
    shards = [tmp_path / f"s{k}.csv" for k in range(2)]
    shard0 = [*base[:3], str(shards[0]), *base[4:], "--shard", "0/2"]
    with _running(shard0) as proc:
        _wait_rows(proc, shards[0], 1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    for args in ([*shard0, "--resume"],
                 [*base[:3], str(shards[1]), *base[4:], "--shard", "1/2", "--resume"]):
        res = _pv(*args)
        assert res.returncode == 0, res.stderr
    merged = tmp_path / "merged.csv"
    res = _pv("merge-reports", *map(str, shards), "--output", str(merged))
    assert res.returncode == 0, res.stderr
    merged_rows = rows_by_relpath(rep.read_report(merged))
    assert set(merged_rows) == set(rows)
    for rel, row in merged_rows.items():
        assert abs(float(row["probability"]) - float(rows[rel]["probability"])) < 1e-4
    assert rep.read_manifest(merged)["threshold"] == default


# --------------------------------------------------------------------------------------------
# Usage errors and outputs


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-0"])
def test_timeout_must_be_a_positive_number(tmp_path: Path, value: str) -> None:
    res = _pv("flag", str(tmp_path / "none"), "--output", str(tmp_path / "r.csv"),
              f"--timeout={value}")
    assert res.returncode == 2, res.stderr
    assert "--timeout" in res.stderr


def test_flag_output_fifo_and_device_are_refused(folder: Path, model_dir: Path,
                                                 tmp_path: Path) -> None:
    """--output naming a FIFO blocked for ever."""
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    res = _pv("flag", str(folder), "--output", str(fifo), "--model", str(model_dir), "--device",
              "cpu", "--overwrite", "--quiet", timeout=120)
    assert res.returncode == 1 and "named pipe (FIFO), not a regular file" in res.stderr
    if os.path.exists("/dev/full"):
        res = _pv("flag", str(folder), "--output", "/dev/full", "--model", str(model_dir),
                  "--quiet", timeout=120)
        assert res.returncode == 1 and "a device, not a regular file" in res.stderr


def test_a_file_size_limit_mid_run_is_a_clear_error_and_keeps_the_rows(
        folder: Path, model_dir: Path, tmp_path: Path) -> None:
    """What a full disk does to a regular file, without needing one: writes fail with EFBIG
    past RLIMIT_FSIZE (Python ignores SIGXFSZ)."""
    import resource

    report = tmp_path / "r.csv"
    limit = len(rep.HEADER_LINE) + 4000

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    res = subprocess.run(_cmd("flag", str(folder), "--output", str(report), "--model",
                              str(model_dir), "--device", "cpu", "--workers", "1", "--quiet"),
                         env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300,
                         preexec_fn=small_files)
    assert res.returncode == 1, res.stderr
    assert "cannot write the report: the file is too large" in res.stderr
    assert "Traceback" not in res.stderr
    assert 1 <= len(rep.read_report(report)) < 40  # the rows written before stay readable


def test_render_refuses_nan_and_infinite_windows(dicom_file: Path, tmp_path: Path) -> None:
    for center, width in (("nan", "400"), ("40", "inf"), ("-inf", "10")):
        res = _pv("render", str(dicom_file), "-o", str(tmp_path / "x.png"), f"--center={center}",
                  f"--width={width}", timeout=120)
        assert res.returncode == 2, res.stderr
        assert "finite" in res.stderr
    assert not (tmp_path / "x.png").exists()


def test_render_output_format_follows_the_extension(dicom_file: Path, tmp_path: Path) -> None:
    res = _pv("render", str(dicom_file), "-o", str(tmp_path / "x.jpg"), timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "x.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, not PNG
    res = _pv("render", str(dicom_file), "-o", str(tmp_path / "x.tif"), timeout=120)
    assert res.returncode == 0 and (tmp_path / "x.tif").read_bytes()[:2] in (b"II", b"MM")
    res = _pv("render", str(dicom_file), "-o", str(tmp_path / "x.xyz"), timeout=120)
    assert res.returncode == 1 and "cannot write '.xyz' images" in res.stderr
    assert not (tmp_path / "x.xyz").exists()


def _sparse_image(path: Path, rows: int, cols: int) -> Path:
    """A 16-bit image whose pixel data is a hole: 4 KB on disk, ``rows*cols*2`` bytes read."""
    from tests.support.dicom_factory import make_dataset, save

    ds = make_dataset(np.zeros((2, 2), np.uint16))
    del ds.PixelData
    ds.Rows, ds.Columns = rows, cols
    save(ds, path)
    n = rows * cols * 2
    with open(path, "r+b") as fh:
        fh.seek(0, os.SEEK_END)
        fh.write(b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", n))
        fh.truncate(fh.tell() + n)
    return path


def test_render_of_a_huge_image_in_the_guard_is_a_clear_memory_message(tmp_path: Path) -> None:
    import resource

    image = _sparse_image(tmp_path / "huge.dcm", 16384, 8192)  # 256 MiB stored, in the guard
    assert image.stat().st_blocks * 512 < 1 << 20

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    res = subprocess.run(_cmd("render", str(image), "-o", str(tmp_path / "h.png")), env=_env(),
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         preexec_fn=limit)
    assert res.returncode == 1, res.stderr
    assert "not enough memory" in res.stderr and "Traceback" not in res.stderr


# --------------------------------------------------------------------------------------------
# Console output


def test_info_escapes_control_characters_from_headers_and_names(dicom_file: Path,
                                                                tmp_path: Path) -> None:
    res = _pv("info", str(dicom_file), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    assert "Patient: Doe^\\x1b[2J\\x1b[31mALL CLEAR" in res.stdout
    assert "esc\\x1b[1mname.dcm" in res.stdout
    bad = tmp_path / "no\x1b[2Jsuch\u202e.dcm"
    bad.write_bytes(b"not dicom")
    for args in (("info", str(bad)), ("render", str(bad), "-o", str(tmp_path / "o.png")),
                 ("flag", str(tmp_path / "gone\x1b[2J"), "-o", str(tmp_path / "r.csv"))):
        res = _pv(*args, timeout=120)
        assert res.returncode == 1, res.stderr
        assert "\x1b" not in res.stderr and "\u202e" not in res.stderr
        assert "\\x1b[2J" in res.stderr
    res = _pv("info", str(dicom_file), "--bogus\x1b[2J", timeout=120)
    assert res.returncode == 2 and "\x1b" not in res.stderr


def test_non_utf8_file_name_on_the_console(tmp_path: Path) -> None:
    bad = os.path.join(os.fsencode(tmp_path), b"bad\xff.dcm")
    with open(bad, "wb") as fh:
        fh.write(b"x")
    res = subprocess.run([sys.executable, "-m", "pneumoview", "info", bad], env=_env(),
                         cwd=REPO, capture_output=True, timeout=120)
    assert res.returncode == 1
    assert b"bad\\xff.dcm" in res.stderr and b"Traceback" not in res.stderr


@pytest.mark.parametrize("args", [("info", "{f}"), ("info", "{f}", "--no-decode"),
                                  ("render", "{f}", "-o", "{out}"), ("--help",),
                                  ("flag", "--help")])
def test_a_closed_stdout_is_no_traceback(dicom_file: Path, tmp_path: Path,
                                         args: tuple[str, ...]) -> None:
    """``pneumoview info FILE | head -1``: the reader has gone when the output is written."""
    argv = [a.format(f=dicom_file, out=tmp_path / "o.png") for a in args]
    r, w = os.pipe()
    os.close(r)  # the reader left before anything was written: EPIPE on the first write
    try:
        res = subprocess.run(_cmd(*argv), env=_env(), cwd=REPO, stdout=w,
                             stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(w)
    err = res.stderr.decode()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert res.returncode in (0, 141)


def test_mistyped_subcommand_is_named(tmp_path: Path) -> None:
    env = {k: v for k, v in _env().items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    res = _pv("flg", str(tmp_path), "-o", "r.csv", env=env, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "no file or command 'flg' (did you mean 'flag'?)" in res.stderr
    res = _pv("mrege-reports", "a.csv", env=env, timeout=120)
    assert "did you mean 'merge-reports'?" in res.stderr
    from pneumoview.cli import mistyped_command

    (tmp_path / "flg").mkdir()
    assert mistyped_command([str(tmp_path / "flg")]) is None  # an existing path opens
    assert mistyped_command(["info"]) is None
    assert mistyped_command(["scan-folder-that-is-not-there"]) is None


def test_quiet_flag_keeps_pydicom_warnings_off_stderr(model_dir: Path, tmp_path: Path) -> None:
    from tests.support.dicom_factory import make_dataset, save

    data = tmp_path / "warn"
    data.mkdir()
    ds = make_dataset(np.zeros((64, 64), np.uint8), ViewPosition="PA", PatientName="A^B")
    ds.SpecificCharacterSet = "ISO_IR 999"  # pydicom warns "Unknown encoding" when decoding
    save(ds, data / "odd_charset.dcm")
    res = _pv("flag", str(data), "-o", str(tmp_path / "r.csv"), "--model", str(model_dir),
              "--device", "cpu", "--workers", "1", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr and "Unknown encoding" not in res.stderr
    assert "1/1 files" in res.stderr


def test_xcb_platform_without_display_names_the_real_problem() -> None:
    """QT_QPA_PLATFORM=xcb with no display ended in Qt's "libxcb-cursor0 is needed"."""
    env = {k: v for k, v in _env().items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["QT_QPA_PLATFORM"] = "xcb"
    res = _pv("view", env=env, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "QT_QPA_PLATFORM=xcb, but no X display" in res.stderr
    assert "libxcb-cursor0 is needed" not in res.stderr
    from pneumoview.commands.view import display_problem

    assert "libxcb-cursor" in display_problem({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"},
                                              False, "linux", lambda _: False)
    assert display_problem({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}, False, "linux",
                           lambda _: True) is None
    assert "WAYLAND_DISPLAY" in display_problem({"QT_QPA_PLATFORM": "wayland"}, False,
                                                "linux", lambda _: True)
