"""Compressed files are decoded in a worker process: a codec crash or hang costs an error
message, not the viewer. The faults are real: the test decoder below kills its own process with
SIGSEGV or sleeps, for files whose name says so (a real codec bug cannot be summoned on demand).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from pneumoview.core import decoderprocess, dicomio
from pneumoview.core.decoderprocess import IsolatedDecoder
from pneumoview.core.errors import PneumoViewError
from tests.support.dicom_factory import make_dataset, reencode, save

FAULTY = "test_isolated:faulty_payload"


def faulty_payload(payload: tuple[str, int, int]) -> tuple[bool, Any]:
    """Test-only worker target: crash or hang on marked files, else the real decode."""
    name = Path(payload[0]).name
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("hang"):
        time.sleep(3600)
    return decoderprocess.decode_payload(payload)


def _pixels() -> np.ndarray:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:96, 0:80]
    return ((x * 37 + y * 11) % 4096 + rng.integers(0, 50, (96, 80))).astype(np.uint16)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("isolated")
    ds = make_dataset(_pixels(), bits_stored=12, modality="CR", WindowCenter=2048,
                      WindowWidth=4096)
    out = {"native": save(ds, root / "native.dcm"),
           "j2k": save(reencode(ds, JPEG2000Lossless), root / "j2k.dcm")}
    for name in ("crash", "hang", "good"):
        out[name] = save(reencode(ds, RLELossless), root / f"{name}.dcm")
    return out


@pytest.fixture
def decoder():
    dec = IsolatedDecoder(timeout_s=20, target=FAULTY)
    yield dec
    dec.close()


def _children() -> list[Any]:
    import multiprocessing

    return [p for p in multiprocessing.active_children() if p.name == "pneumoview-decode"]


def test_native_in_process_compressed_in_the_worker(decoder: IsolatedDecoder,
                                                    files: dict[str, Path]) -> None:
    native = decoder.decode(files["native"])
    assert decoder.isolated == 0 and not _children()
    j2k = decoder.decode(files["j2k"])
    assert decoder.isolated == 1 and len(_children()) == 1
    reference = dicomio.decode(files["j2k"])
    np.testing.assert_array_equal(j2k.values, reference.values)
    np.testing.assert_array_equal(j2k.values, native.values)
    assert j2k.windows == reference.windows and j2k.invert == reference.invert
    assert j2k.header is not None and "PixelData" not in j2k.header


def test_a_codec_crash_is_an_error_naming_the_file_and_the_next_file_decodes(
        decoder: IsolatedDecoder, files: dict[str, Path]) -> None:
    with pytest.raises(PneumoViewError) as err:
        decoder.decode(files["crash"])
    assert err.value.path == str(files["crash"]) and "SIGSEGV" in err.value.reason
    assert str(files["crash"]) not in err.value.reason  # the path is said once
    good = decoder.decode(files["good"])  # a fresh worker took over
    assert good.shape == (96, 80)


def test_a_refused_file_keeps_its_own_reason(decoder: IsolatedDecoder, tmp_path: Path,
                                             files: dict[str, Path]) -> None:
    with pytest.raises(PneumoViewError) as err:
        decoder.decode(files["good"], frame=3)
    assert err.value.reason == "frame 3 does not exist (the file has 1)"


def test_a_hang_is_stopped_by_the_time_limit(files: dict[str, Path]) -> None:
    dec = IsolatedDecoder(timeout_s=3, target=FAULTY)
    try:
        t0 = time.monotonic()
        with pytest.raises(PneumoViewError, match="longer than 3 s"):
            dec.decode(files["hang"])
        assert time.monotonic() - t0 < 20
        assert dec.decode(files["good"]).shape == (96, 80)
    finally:
        dec.close()


def test_cancel_kills_a_stuck_decode(decoder: IsolatedDecoder, files: dict[str, Path]) -> None:
    t0 = time.monotonic()
    with pytest.raises(PneumoViewError, match="cancelled"):
        decoder.decode(files["hang"], cancelled=lambda: True)
    assert decoderprocess.KILL_AFTER_S <= time.monotonic() - t0 < 15
    assert not _children()


def test_close_ends_a_decode_in_flight_and_the_worker(files: dict[str, Path]) -> None:
    dec = IsolatedDecoder(timeout_s=60, target=FAULTY)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            dec.decode(files["hang"])
        except BaseException as exc:  # inspected below
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while dec.isolated == 0 or not _children():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    dec.close()
    worker.join(15)
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], PneumoViewError)
    assert not _children()
    with pytest.raises(PneumoViewError, match="closing"):
        dec.decode(files["good"])


def test_which_syntaxes_need_a_codec_process() -> None:
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        JPEGBaseline8Bit,
        JPEGLosslessSV1,
        JPEGLSLossless,
    )

    for native in (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                   DeflatedExplicitVRLittleEndian, None, ""):
        assert not decoderprocess.is_codec_syntax(native), native
    for codec in (JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless,
                  RLELossless, "1.2.840.113619.5.2", "1.2.3.4.5.6.7"):
        assert decoderprocess.is_codec_syntax(codec), codec


def test_prewarm_starts_the_worker_before_the_first_file(decoder: IsolatedDecoder,
                                                         files: dict[str, Path]) -> None:
    decoder.prewarm()
    assert len(_children()) == 1
    decoder.prewarm()  # idempotent
    assert len(_children()) == 1
    assert decoder.decode(files["j2k"]).shape == (96, 80)
    assert len(_children()) == 1


def test_a_file_without_preamble_is_decoded_in_the_worker(decoder: IsolatedDecoder,
                                                         files: dict[str, Path],
                                                         tmp_path: Path) -> None:
    bare = tmp_path / "no_preamble.dcm"
    bare.write_bytes(files["native"].read_bytes()[132:])  # no preamble, no "DICM", no meta
    assert decoderprocess.file_transfer_syntax(bare) == "unknown"
    assert decoderprocess.file_transfer_syntax(files["native"]) == "1.2.840.10008.1.2.1"
    np.testing.assert_array_equal(decoder.decode(bare).values,
                                  dicomio.decode(files["native"]).values)
    assert decoder.isolated == 1


def test_the_size_guard_keeps_its_type_across_the_worker(decoder: IsolatedDecoder,
                                                         files: dict[str, Path]) -> None:
    """A compressed image refused by the size guard in the worker came back as a plain
    PneumoViewError, so the viewer could not word its advice ("raise 'max image MiB'") on the
    type; the core message itself carries no GUI advice."""
    from pneumoview.core.errors import ImageTooLargeError

    with pytest.raises(ImageTooLargeError) as info:
        decoder.decode(files["j2k"], max_bytes=1024)
    assert decoder.isolated == 1
    assert str(files["j2k"]) in str(info.value) and "too large" in info.value.reason
    assert info.value.limit_bytes == 1024 and info.value.need_bytes > 1024
    assert "settings" not in str(info.value)
