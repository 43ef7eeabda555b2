"""One rule for what a run uses (command line > settings > default), the size guard on the
command line, typed errors, and the report row that declares the columns."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pneumoview.core import defaults, report, runoptions
from pneumoview.core.errors import (
    FileAccessError,
    ImageTooLargeError,
    NotDicomError,
    PneumoViewError,
    file_access_error,
)
from pneumoview.core.reportrow import ReportRow, Status
from pneumoview.core.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def test_command_line_beats_settings_beats_default() -> None:
    settings = Settings(max_image_mib=2048, ai_device="cpu", ai_model_dir="/models/b")
    assert runoptions.resolve(None, None) == runoptions.RunOptions()
    got = runoptions.resolve(None, settings)
    assert (got.max_image_mib, got.device, got.model_dir) == (2048, "cpu", "/models/b")
    cli = argparse.Namespace(max_image_mib=64, device=None, model="/models/a", timeout=5.0)
    got = runoptions.resolve(cli, settings)
    assert (got.max_image_mib, got.device, got.model_dir, got.timeout_s) == \
        (64, "cpu", "/models/a", 5.0)
    assert got.max_image_bytes == 64 * 2**20
    # "not set" values in the settings fall through to the default
    got = runoptions.resolve({}, Settings(ai_device="", ai_model_dir=""))
    assert (got.device, got.model_dir) == (defaults.DEVICE, None)


def test_threshold_explicit_then_saved_then_model() -> None:
    assert runoptions.resolve_threshold(0.3, {"m": 0.7}, "m", 0.5) == 0.3
    assert runoptions.resolve_threshold(None, {"m": 0.7}, "m", 0.5) == 0.7
    assert runoptions.resolve_threshold(None, {"m": "junk", "x": 0.1}, "m", 0.5) == 0.5
    assert runoptions.resolve_threshold(None, {"m": True}, "m", 0.5) == 0.5


def test_defaults_are_the_ones_every_layer_uses() -> None:
    from pneumoview.core import dicomio, procpool
    from pneumoview.core.batch import BatchOptions

    assert Settings().max_image_mib == defaults.MAX_IMAGE_MIB
    assert dicomio.DEFAULT_MAX_PIXEL_BYTES == defaults.MAX_IMAGE_MIB * 2**20
    opts = BatchOptions(".")
    assert (opts.batch_size, opts.timeout_s, opts.max_image_mib) == \
        (defaults.BATCH_SIZE, defaults.DECODE_TIMEOUT_S, defaults.MAX_IMAGE_MIB)
    assert procpool.default_workers() == defaults.decode_workers()


def test_report_columns_are_the_row_fields_and_unchanged() -> None:
    assert report.COLUMNS == tuple(f.name for f in dataclasses.fields(ReportRow))
    assert report.COLUMNS[:21] == (
        "path", "relpath", "file_size", "mtime_ns", "status", "probability", "flagged",
        "threshold", "message", "patient_id", "study_instance_uid", "series_instance_uid",
        "sop_instance_uid", "view_position", "model_sha256", "study_date", "modality",
        "frame", "model_label", "elapsed_ms", "model_id")
    assert report.STATUSES == ("scored", "not_scored", "skipped", "error")
    assert Status.SCORED == "scored" and report.format_value("status", Status.NOT_SCORED) \
        == "not_scored"
    assert list(ReportRow("a", "b").as_dict()) == list(report.COLUMNS)


def test_typed_errors_are_pneumoview_errors_and_oserror_has_one_wording(tmp_path: Path) -> None:
    from pneumoview.core import dicomio

    missing = tmp_path / "gone.dcm"
    with pytest.raises(FileAccessError) as info:
        dicomio.read_dataset(missing)
    assert info.value.reason == "file not found (moved or deleted?)"
    text = tmp_path / "notes.txt"
    text.write_text("hello, not an image\n" * 20)
    with pytest.raises(NotDicomError):
        dicomio.read_dataset(text)
    err = file_access_error(PermissionError(13, "Permission denied"), "x")
    assert isinstance(err, PneumoViewError) and err.errno == 13
    assert err.reason == "permission denied: the file cannot be read"


def test_size_guard_raises_its_own_type_with_the_numbers() -> None:
    import numpy as np

    from pneumoview.core import dicomio
    from tests.support.dicom_factory import make_dataset

    ds = make_dataset(np.zeros((64, 64), np.uint8))
    with pytest.raises(ImageTooLargeError) as info:
        dicomio.check_decodable(ds, "x.dcm", max_bytes=100)
    assert info.value.need_bytes == 64 * 64 and info.value.limit_bytes == 100


def _big_image_folder(tmp_path: Path) -> Path:
    """One chest-like 1100 x 1100 8-bit image: 1.15 MiB of pixels."""
    import numpy as np

    from tests.support.dicom_factory import make_dataset, save

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (69, 69)).astype(np.float32)
    img = np.kron(base, np.ones((16, 16), np.float32))[:1100, :1100]
    save(make_dataset(img.astype(np.uint8), ViewPosition="PA"), data / "big.dcm")
    return data


@pytest.mark.slow
def test_flag_max_image_mib_refuses_a_larger_image(tmp_path: Path) -> None:
    """``--max-image-mib`` is the size guard of a command-line run (before, only the
    viewer's settings had one and the CLI used the fixed 1 GiB)."""
    from tests.support.model_fixture import make_random_model_dir

    model = make_random_model_dir(tmp_path / "m", seed=3)
    data = _big_image_folder(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1", PNEUMOVIEW_TORCH_THREADS="1")
    rows = {}
    for limit in ("1", "2"):
        out = tmp_path / f"r{limit}.csv"
        proc = subprocess.run(
            [sys.executable, "-m", "pneumoview", "flag", str(data), "-o", str(out),
             "--model", str(model), "--device", "cpu", "--workers", "1", "-q",
             "--max-image-mib", limit],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        rows[limit] = report.read_report(out)[0]
    assert rows["1"]["status"] == "error" and "too large" in rows["1"]["message"]
    assert rows["2"]["status"] == "scored"


@pytest.mark.slow
def test_gui_batch_honours_the_size_guard_setting(tmp_path: Path) -> None:
    """The GUI batch used the fixed 1 GiB guard whatever ``max_image_mib`` said."""
    from pneumoview.qt.batch.job import gui_batch
    from tests.support.model_fixture import make_random_model_dir

    data = _big_image_folder(tmp_path)
    model = make_random_model_dir(tmp_path / "m", seed=3)
    rows: list[dict] = []
    summary = gui_batch(str(data), model_dir=str(model), device="cpu", thresholds={},
                        on_started=lambda s: None, on_rows=rows.extend,
                        on_progress=lambda p: None, cancel=lambda: False, workers=1,
                        out_dir=tmp_path / "reports", max_image_mib=1)
    assert summary.finished
    assert rows[0]["status"] == "error" and "too large" in rows[0]["message"]


def test_flag_words_its_own_advice_for_an_existing_report(tmp_path: Path) -> None:
    from pneumoview.commands.advice import flag_advice as advice
    from pneumoview.core.errors import ReportExistsError

    exc = ReportExistsError("the report already exists", tmp_path / "r.csv")
    assert "--resume" in advice(exc) and "--resume" not in str(exc)
    assert advice(PneumoViewError("other")) == ""
