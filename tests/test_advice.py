"""Report errors state facts; the command line and the viewer each word what to do about them.

The core once ended these messages with command-line advice ("pass --resume", "choose another
--output", "pass --threshold 0.5") that the viewer showed as it was: a worklist user opening a
file that is not a report was told to choose another --output. Each error is now a typed
:class:`~pneumoview.core.errors.ReportError` carrying the fact (and the report's value where the
advice needs it); ``commands/advice.py`` names the options, ``qt/advice.py`` the viewer's actions.
"""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pneumoview.cli import main
from pneumoview.commands.advice import flag_advice, merge_advice, run_advice
from pneumoview.core import report as rep
from pneumoview.core.engines.base import EngineUnavailable
from pneumoview.core.errors import (
    DeviceUnavailableError,
    NotAReportError,
    OutputIsInputError,
    PneumoViewError,
    ReportError,
    ReportLocked,
    ReportMismatchError,
    ReportUnfinishedError,
    ReportWriteError,
    ShardError,
)
from pneumoview.qt.advice import advice as gui_advice

SHA = "ab" * 32


def _row(rel: str) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(rep.COLUMNS)
    row.update(path=f"/a/{rel}", relpath=rel, file_size=1, mtime_ns=2, status="skipped",
               threshold=0.5, model_sha256=SHA, message="not a DICOM file")
    return row


def _shard(tmp_path: Path, k: int, n: int, **manifest: object) -> Path:
    out = tmp_path / f"s{k}.csv"
    rows = [_row(f"{i}.dcm") for i in range(20) if rep.shard_of(f"{i}.dcm", n) == k]
    rep.write_report_atomic(out, rows)
    rep.write_manifest(out, {"shard_index": k, "shard_count": n, "files": len(rows),
                             "model_sha256": SHA, "threshold": 0.5, "finished": True,
                             "cancelled": False, **manifest})
    return out


def _raised(fn: Callable[[], object]) -> ReportError:
    with pytest.raises(ReportError) as info:
        fn()
    return info.value


def _resume(path: Path, **kw: object) -> Callable[[], object]:
    args: dict = {"model_sha256": SHA, "threshold": 0.5, "shard": (0, 2), **kw}
    return lambda: rep.load_for_resume(path, **args)


# --------------------------------------------------------------------------------------------
# flag --resume


@pytest.mark.parametrize(("case", "kind", "cli"), [
    ("threshold", ReportMismatchError, "write to a new --output or pass --threshold 0.5"),
    ("model", ReportMismatchError, "write to a new --output or use the same --model"),
    ("shard", ReportMismatchError, "resume with the same --shard (0/2)"),
    ("not_a_report", NotAReportError, "--resume leaves it alone: choose another --output"),
])
def test_resume_refusals_state_facts_and_each_front_end_words_its_advice(
        tmp_path: Path, case: str, kind: type, cli: str) -> None:
    report = _shard(tmp_path, 0, 2)
    if case == "not_a_report":
        report.write_bytes(b"important notes\n")
    call = {"threshold": _resume(report, threshold=0.25),
            "model": _resume(report, model_sha256="cd" * 32),
            "shard": _resume(report, shard=(1, 2)),
            "not_a_report": _resume(report)}[case]
    exc = _raised(call)
    assert type(exc) is kind
    assert "--" not in str(exc) and str(report) in str(exc)
    assert cli in flag_advice(exc)
    words = gui_advice(exc)
    assert words and "--" not in words


def test_a_full_disk_is_a_write_error_the_cli_resumes_and_the_viewer_retries(
        tmp_path: Path) -> None:
    def no_space(_: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = rep.ReportWriter(tmp_path / "r.csv", [])
    writer._fh.write = no_space  # type: ignore[method-assign]
    exc = _raised(lambda: writer.write_rows([_row("a.dcm")]))
    assert isinstance(exc, ReportWriteError) and exc.disk_full
    assert "disk is full" in str(exc) and "--" not in str(exc)
    assert flag_advice(exc) == "; free space and run again with --resume"
    assert gui_advice(exc) == " (free some disk space and try again)"


def test_a_held_lock_names_the_holder_and_no_option(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    with rep.ReportLock(out):
        exc = _raised(lambda: rep.ReportLock(out).acquire())
    assert isinstance(exc, ReportLocked) and "another run is writing" in str(exc)
    assert "--" not in str(exc)
    assert "choose another --output" in flag_advice(exc)
    assert "wait for that run to finish" in gui_advice(exc)


# --------------------------------------------------------------------------------------------
# merge-reports


def test_merge_refusals_state_facts_and_the_command_names_the_shard_to_finish(
        tmp_path: Path) -> None:
    done = _shard(tmp_path, 0, 2)
    unfinished = _shard(tmp_path, 1, 2, finished=False)
    exc = _raised(lambda: rep.merge_reports([done, unfinished], tmp_path / "m.csv"))
    assert isinstance(exc, ReportUnfinishedError) and exc.shard == (1, 2)
    assert "--" not in str(exc)
    assert merge_advice(exc) == "; finish it with pneumoview flag ... --shard 1/2 --resume"

    exc = _raised(lambda: rep.merge_reports([done], tmp_path / "m.csv"))
    assert isinstance(exc, ShardError) and exc.missing == (1,)
    assert "--" not in str(exc) and "--shard K/N" in merge_advice(exc)

    exc = _raised(lambda: rep.merge_reports([done], done))
    assert isinstance(exc, OutputIsInputError) and "--" not in str(exc)
    assert merge_advice(exc) == "; choose another --output"

    rep.manifest_path(unfinished).unlink()
    exc = _raised(lambda: rep.merge_reports([done, unfinished], tmp_path / "m.csv"))
    assert isinstance(exc, ReportUnfinishedError) and "manifest" in str(exc)
    assert "--" not in str(exc) and "--resume" in merge_advice(exc)


def test_merge_reports_command_prints_the_fact_then_its_advice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shards = [_shard(tmp_path, 0, 2), _shard(tmp_path, 1, 2, cancelled=True)]
    assert main(["merge-reports", *map(str, shards), "-o", str(tmp_path / "m.csv")]) == 1
    err = capsys.readouterr().err
    assert "shard 1/2 did not finish (its manifest says cancelled)" in err
    assert "finish it with pneumoview flag ... --shard 1/2 --resume" in err
    assert json.loads(rep.manifest_path(shards[1]).read_text())["cancelled"] is True


# --------------------------------------------------------------------------------------------
# the viewer's sinks


class _Host:
    """What a controller's error sink receives (the window's one sink, without a window)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def report_error(self, message: str) -> None:
        self.errors.append(message)

    def report(self, message: str) -> None:
        pass


def test_worklist_opening_a_non_report_words_the_viewers_advice(qtbot, tmp_path: Path) -> None:
    from pneumoview.qt.worklist.controller import WorklistController

    notes = tmp_path / "notes.csv"
    notes.write_text("not,a,report\n1,2,3\n")
    ctl = WorklistController(None, store_path=str(tmp_path / "reviews.sqlite"))
    qtbot.addWidget(ctl.panel)
    host = _Host()
    ctl.window = host  # type: ignore[assignment]
    assert not ctl.load_report(str(notes))
    [message] = host.errors
    assert "not a PneumoView batch report" in message and str(notes) in message
    assert "--" not in message and "choose a report that PneumoView wrote" in message


def test_saving_a_batch_report_to_a_read_only_place_suggests_another_folder(
        qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoview.qt.batch.controller import BatchController

    def read_only(src: object, dst: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    ctl = BatchController(device="cpu")
    qtbot.addWidget(ctl.panel)
    host = _Host()
    ctl.window = host  # type: ignore[assignment]
    ctl.report_path = str(_shard(tmp_path, 0, 1))
    monkeypatch.setattr(shutil, "copyfile", read_only)
    try:
        assert not ctl.save_report(str(tmp_path / "elsewhere.csv"))
    finally:
        ctl.shutdown()
    [message] = host.errors
    assert "cannot save the report (Read-only file system)" in message
    assert message.endswith(" (choose another folder, or check its permissions)")


def test_calibrating_another_models_report_words_each_front_ends_advice(qtbot) -> None:
    """The calibration dialog showed "...; flag the folder with that model, or pass --model"."""
    import numpy as np

    from pneumoview.core.sitefit import Cases, SiteFit
    from pneumoview.qt.worklist.calibration import CalibrationDialog

    rng = np.random.default_rng(1)
    y = np.r_[np.ones(80, int), np.zeros(80, int)]
    cases = Cases(y, rng.normal(0, 1, 160), None, model_ids={"pvm1-" + "a" * 64},
                  model_label="other model")
    exc = _raised(lambda: SiteFit(metric="sensitivity", target=0.9, name="").check(
        cases, "pvm1-" + "d" * 64, "this model"))
    assert isinstance(exc, ReportMismatchError) and exc.field == "model"
    assert "another model" in str(exc) and "--" not in str(exc)
    from pneumoview.commands.advice import calibrate_advice

    assert calibrate_advice(exc) == "; flag the folder with that model, or pass --model"
    dlg = CalibrationDialog(cases, model_id="pvm1-" + "d" * 64, model_sha256="e" * 64,
                            model_label="this model", model_temperature=1.0)
    qtbot.addWidget(dlg)
    assert not dlg.save_button.isEnabled()
    text = dlg.warning.text()
    assert "another model" in text and "--model" not in text
    assert "load that model, or flag the folder again with this one" in text


# --------------------------------------------------------------------------------------------
# Device, engine and gate: the same facts, worded by each front end


def _device_error() -> BaseException:
    torch = pytest.importorskip("torch")
    from pneumoview.core.model import select_device

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: cuda is not refused here")
    with pytest.raises(PneumoViewError) as info:
        select_device("cuda")
    return info.value


def test_unavailable_device_names_no_option_in_core() -> None:
    """It said "use --device cpu or auto" in the viewer's AI panel too, where there is no
    such option: the core states the fact, each front end says what to change."""
    exc = _device_error()
    assert isinstance(exc, DeviceUnavailableError) and exc.device == "cuda"
    assert "--" not in str(exc)
    assert flag_advice(exc) == "; use --device cpu or auto"
    assert "settings.json" in gui_advice(exc) and "--" not in gui_advice(exc)


def test_unavailable_precision_and_engine_are_typed_with_the_option(monkeypatch) -> None:
    from pneumoview.core.engines import openvino_engine, ovimport
    from pneumoview.core.engines.base import EngineName, Precision, choose_precision

    def broken() -> None:
        raise ImportError("libopenvino.so.2620: cannot open shared object file")

    with pytest.raises(EngineUnavailable) as bf16:
        choose_precision(Precision.BF16, False, EngineName.OPENVINO)
    monkeypatch.setattr(ovimport, "import_openvino", broken)
    with pytest.raises(EngineUnavailable) as on_gpu:
        openvino_engine._core()
    assert (bf16.value.option, on_gpu.value.option) == ("precision", "engine")
    for exc in (bf16.value, on_gpu.value):
        assert "--" not in str(exc) and "--" not in gui_advice(exc)
    assert run_advice(bf16.value) == "; use --precision f32 or auto"
    assert run_advice(on_gpu.value) == "; use --engine torch or auto"
    assert "ai_precision" in gui_advice(bf16.value) and "ai_engine" in gui_advice(on_gpu.value)


def test_gate_mismatch_is_a_report_mismatch_worded_per_front_end(tmp_path: Path) -> None:
    report = tmp_path / "r.csv"
    rep.write_report_atomic(report, [_row("a.dcm")])
    rep.write_manifest(report, {"shard_index": 0, "shard_count": 1, "files": 1,
                                "model_sha256": SHA, "threshold": 0.5, "gate": "content",
                                "finished": False, "cancelled": True})
    exc = _raised(lambda: rep.load_for_resume(report, model_sha256=SHA, threshold=0.5,
                                              shard=None, gate="tags"))
    assert isinstance(exc, ReportMismatchError) and exc.field == "gate"
    assert "--" not in str(exc)
    assert flag_advice(exc) == ("; write to a new --output or run as the report was made "
                                "(without --no-gate)")
    assert gui_advice(exc) == " (flag the folder again into a new report)"
