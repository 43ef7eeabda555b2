"""Run a snippet of Python in a child process that cannot take the test machine down.

Attack files (a link to ``/dev/zero``, a deflate bomb, a sparse giant image) are meant to exhaust
memory or block: the code under test runs in a subprocess with an address-space limit
(``RLIMIT_AS``) and a wall-clock timeout, so on the old code the child dies or times out and the
test fails, instead of the kernel killing the test runner.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    returncode: int | None  # None: timed out (the child was killed)
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_bounded(code: str, *, mem_mib: int = 1536, timeout_s: float = 60.0,
                env: dict[str, str] | None = None) -> Outcome:
    """Run ``code`` (dedented) under ``RLIMIT_AS = mem_mib`` MiB, killed after ``timeout_s``."""
    limit = mem_mib * 2**20
    prelude = ("import resource\n"
               f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n")
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"),
                                             full_env.get("PYTHONPATH", "")])
    full_env.setdefault("QT_QPA_PLATFORM", "offscreen")
    full_env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    full_env.update(env or {})
    try:
        proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                              capture_output=True, text=True, timeout=timeout_s, env=full_env,
                              cwd=str(REPO))
    except subprocess.TimeoutExpired as exc:
        return Outcome(None, _text(exc.stdout), _text(exc.stderr))
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def write_deflate_bomb(path: Path, zeros: int, *, in_header: bool, rows: int = 64,
                       cols: int = 64) -> Path:
    """A Deflated Explicit VR Little Endian file whose stream inflates to about ``zeros``
    bytes of zeros: a private OB element before the pixel data (``in_header``), or a pixel
    data element that long. Written by streaming, so the test never holds the zeros."""
    import struct
    import zlib
    from io import BytesIO

    import numpy as np
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from tests.support.dicom_factory import make_dataset

    ds = make_dataset(np.zeros((rows, cols), np.uint16), syntax=DeflatedExplicitVRLittleEndian,
                      PatientName="Bomb^Deflate")
    del ds.PixelData
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False  # what deflate wraps
    write_dataset(head, ds)
    length = zeros + (zeros & 1)
    tag = (0x0029, 0x1010) if in_header else (0x7FE0, 0x0010)
    element = struct.pack("<HH2sHI", *tag, b"OB", 0, length)
    tail = b""
    if in_header:  # then a real, small pixel data element
        pixels = bytes(rows * cols * 2)
        tail = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, len(pixels)) + pixels
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as fh:
        fh.write(b"\0" * 128 + b"DICM")
        meta = BytesIO()
        write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
        fh.write(meta.getvalue())
        fh.write(comp.compress(head.getvalue() + element))
        chunk = bytes(1 << 22)
        left = length
        while left:
            n = min(left, len(chunk))
            fh.write(comp.compress(chunk[:n]))
            left -= n
        fh.write(comp.compress(tail))
        fh.write(comp.flush())
    return path


def write_sparse_image(path: Path, rows: int, cols: int, frames: int = 1) -> Path:
    """An uncompressed 16-bit image whose pixel data is a hole: a few KB on disk, however
    large it declares itself (the file's length matches the header, so it is well-formed)."""
    import struct

    import numpy as np
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    from tests.support.dicom_factory import make_dataset

    ds = make_dataset(np.zeros((2, 2), np.uint16), PatientName="Sparse^Giant")
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    del ds.PixelData
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    length = rows * cols * frames * 2
    with open(path, "wb") as fh:
        fh.write(b"\0" * 128 + b"DICM")
        meta = DicomBytesIO()
        write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
        fh.write(meta.getvalue())
        fh.write(body.getvalue())
        fh.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        fh.truncate(fh.tell() + length)
    return path
