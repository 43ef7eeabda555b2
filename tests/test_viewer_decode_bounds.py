"""The viewer's decode path is bounded like the batch's (issue 13.2).

Before, the viewer was killed by the kernel for memory on small files the batch handles: a
sparse 4 KB-on-disk image that passes the 1 GiB size guard (16384 x 16384: the viewer's float32
and display copies need ~3.5 GiB) and a 1-4 MB deflated file that inflates to gigabytes (pydicom
inflates it whole, even for a header read). The third file of the issue, a PatientName with an
<img> pointing at /dev/zero, is in test_plain_text_gui.py.

Each case runs in a child process with an address-space limit: on the old code the child runs
out of memory (or reports a MemoryError after gigabytes), here it refuses the file with a clear
message while staying small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hostile_support import run_bounded, write_deflate_bomb, write_sparse_image

from tests.support.dicom_factory import make_dataset, save

#: What a refusal may cost the child beyond its imports (peak RSS, MiB).
SMALL_RSS_MIB = 600

#: The child's own peak RSS: VmHWM of its memory map (ru_maxrss would carry the parent's peak
#: over fork + exec). Indented like the snippets it ends, so they dedent together.
_PEAK = """
        import resource
        try:
            hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
            print("PEAK", int(hwm[0].split()[1]) // 1024)
        except (OSError, IndexError):
            print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def _peak(stdout: str) -> int:
    return int(next(line.split()[1] for line in stdout.splitlines() if line.startswith("PEAK")))


@pytest.fixture(scope="module")
def sparse_giant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_sparse_image(tmp_path_factory.mktemp("sparse") / "giant.dcm", 16384, 16384)
    assert path.stat().st_blocks * 512 < 2**20  # a hole: nothing on disk
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bombs")
    return {"header": write_deflate_bomb(root / "header_bomb.dcm", 2**30, in_header=True),
            "pixels": write_deflate_bomb(root / "pixel_bomb.dcm", 2**30, in_header=False)}


def test_sparse_giant_within_the_guard_is_refused_before_allocating(sparse_giant):
    from pneumoview.core import dicomio

    assert dicomio.declared_pixel_bytes(dicomio.read_header(sparse_giant)) <= 2**30  # passes
    out = run_bounded(f"""
        from pneumoview.core.errors import PneumoViewError
        from pneumoview.core.decoderprocess import IsolatedDecoder
        from pneumoview.qt.mainwindow import _decode_task
        decoder = IsolatedDecoder()
        try:
            _decode_task(decoder, {str(sparse_giant)!r}, 0, 1 << 30)
            print("DECODED")
        except PneumoViewError as exc:
            print("REFUSED", exc.reason)
        finally:
            decoder.close()
    """ + _PEAK, mem_mib=2048, timeout_s=120)
    assert out.ok, (out.returncode, out.stderr[-2000:])
    assert "REFUSED image too large to display safely" in out.stdout, out.stdout
    assert _peak(out.stdout) < SMALL_RSS_MIB, out.stdout


def test_deflate_bombs_are_refused_with_little_memory(bombs, tmp_path):
    good = tmp_path / "folder"
    good.mkdir()
    save(make_dataset(np.arange(64, dtype=np.uint16).reshape(8, 8)), good / "good.dcm")
    (good / "bomb.dcm").symlink_to(bombs["header"])
    out = run_bounded(f"""
        from pneumoview.core import dicomio
        from pneumoview.core.errors import PneumoViewError
        from pneumoview.core.indexer import index_folder
        from pneumoview.core.decoderprocess import IsolatedDecoder
        for name, path in [("header", {str(bombs["header"])!r}),
                           ("pixels", {str(bombs["pixels"])!r})]:
            try:
                dicomio.read_header(path)
                print(name, "HEADER READ")
            except PneumoViewError as exc:
                print(name, "HEADER REFUSED", exc.reason)
            decoder = IsolatedDecoder()
            try:
                decoder.decode(path, 0, max_bytes=64 << 20)
                print(name, "DECODED")
            except PneumoViewError as exc:
                print(name, "DECODE REFUSED", exc.reason)
            finally:
                decoder.close()
        result = index_folder({str(good)!r}, cache=False)
        print("INDEXED", len(result.instances), [r for _, r in result.errors])
    """ + _PEAK, mem_mib=1024, timeout_s=180)
    assert out.ok, (out.returncode, out.stderr[-2000:])
    text = out.stdout
    assert "header HEADER REFUSED deflated header inflates to more than 64 MiB" in text, text
    assert "pixels HEADER READ" in text, text  # its header is small and fine
    assert "header DECODE REFUSED" in text and "pixels DECODE REFUSED" in text, text
    assert text.count("inflates to more than") >= 3, text
    assert "INDEXED 1" in text and "decompression bomb" in text, text
    assert _peak(text) < SMALL_RSS_MIB, text


def test_small_deflated_file_still_opens_in_the_worker(tmp_path):
    from pneumoview.core import dicomio
    from pneumoview.core.decoderprocess import IsolatedDecoder

    path = write_deflate_bomb(tmp_path / "ok.dcm", 4000, in_header=True, rows=32, cols=32)
    header = dicomio.read_header(path)
    assert str(header.PatientName) == "Bomb^Deflate" and header.Rows == 32
    decoder = IsolatedDecoder()
    try:
        img = decoder.decode(path)
        assert img.shape == (32, 32) and decoder.isolated == 1  # deflated: in the worker
    finally:
        decoder.close()


def test_large_native_pixel_data_is_decoded_in_the_worker(tmp_path):
    from pneumoview.core.decoderprocess import IN_PROCESS_MAX_BYTES, IsolatedDecoder

    frames = IN_PROCESS_MAX_BYTES // (1024 * 1024 * 2) + 2
    path = write_sparse_image(tmp_path / "cine.dcm", 1024, 1024, frames)
    small = tmp_path / "small.dcm"
    save(make_dataset(np.arange(4096, dtype=np.uint16).reshape(64, 64)), small)
    decoder = IsolatedDecoder()
    try:
        assert decoder.decode(small).shape == (64, 64) and decoder.isolated == 0
        img = decoder.decode(path, frame=frames - 1)
        assert img.shape == (1024, 1024) and img.n_frames == frames
        assert decoder.isolated == 1
    finally:
        decoder.close()
