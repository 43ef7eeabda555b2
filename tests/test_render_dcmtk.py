"""``pneumoview render`` against dcmtk's ``dcmj2pnm`` with the same explicit window: within 1 grey.

dcmtk is an independent DICOM implementation (installed by .ci/run from Debian's ``dcmtk``); it
applies the Modality LUT, the window and MONOCHROME1 inversion its own way, so agreement on real
files checks our whole display pipeline. Files dcmtk cannot read (JPEG 2000) are skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoview.cli import main as cli_main
from pneumoview.core import dicomio, windowing
from tests.support.dicom_factory import (
    make_dataset,
    monochrome1_twin,
    sample_file,
    save,
)
from tests.support.shared_data import require

DCMJ2PNM = shutil.which("dcmj2pnm")
pytestmark = pytest.mark.skipif(DCMJ2PNM is None,
                                reason="dcmtk's dcmj2pnm is not installed (apt-get install dcmtk)")

REAL = ["pydicomdata_RG1_UNCI.dcm", "txv_siim_cxr.dcm", "nhsx_nih_cxr.dcm"]
SAMPLES = ["RG1_UNCI.dcm", "RG3_UNCI.dcm", "CT_small.dcm", "MR_small.dcm", "JPEG-LL.dcm",
           "MR_small_RLE.dcm", "emri_small.dcm", "MR_small_bigendian.dcm"]


def _params(samples: list[str]) -> list:
    """The real shared files (skipped when absent) and the pydicom-data samples."""
    out = [pytest.param(("dicom", n), id=n, marks=pytest.mark.shared_data("dicom", n))
           for n in REAL]
    return out + [pytest.param(("sample", n), id=n) for n in samples]


def _path(source: tuple[str, str]) -> Path:
    kind, name = source
    if kind == "dicom":
        return require(kind, name)
    path = sample_file(name)
    if path is None:
        pytest.skip(f"pydicom-data's {name} is not installed")
    return Path(path)


def _dcmtk(path: Path, center: float, width: float, out: Path, frame: int = 0) -> np.ndarray:
    cmd = [DCMJ2PNM, "+Ww", f"{center}", f"{width}", "+F", str(frame + 1), "+on", str(path),
           str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not out.exists():
        pytest.skip(f"dcmtk cannot read {path.name}: {done.stderr.strip()[:200]}")
    return np.asarray(Image.open(out).convert("L"))


def _ours(path: Path, center: float, width: float, out: Path, frame: int = 0) -> np.ndarray:
    rc = cli_main(["render", str(path), "--output", str(out), "--center", str(center),
                   "--width", str(width), "--frame", str(frame)])
    assert rc == 0
    return np.asarray(Image.open(out))


def _compare(path: Path, tmp_path: Path, window: windowing.Window | None = None,
             frame: int = 0) -> None:
    decoded = dicomio.decode(path, frame)
    window = window or windowing.default_window(decoded.values, decoded.windows)
    ref = _dcmtk(path, window.center, window.width, tmp_path / "dcmtk.png", frame)
    ours = _ours(path, window.center, window.width, tmp_path / "ours.png", frame)
    assert ours.shape == ref.shape
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() <= 1, f"{path.name}: max diff {diff.max()}, mean {diff.mean():.3f}"


@pytest.mark.parametrize("source", _params(SAMPLES))
def test_render_matches_dcmtk_with_file_window(source: tuple[str, str], tmp_path: Path) -> None:
    _compare(_path(source), tmp_path)


@pytest.mark.parametrize("source", _params(SAMPLES[:1]))
def test_render_matches_dcmtk_with_narrow_window(source: tuple[str, str],
                                                 tmp_path: Path) -> None:
    path = _path(source)
    values = dicomio.decode(path).values
    lo, hi = np.percentile(values, (30, 60))
    _compare(path, tmp_path, windowing.Window("narrow", float(lo + hi) / 2, float(hi - lo)))


def test_render_matches_dcmtk_on_built_variants(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = (rng.normal(2000, 600, (256, 256)).clip(0, 4095)).astype(np.uint16)
    m2 = make_dataset(base, bits_stored=12, WindowCenter=2000, WindowWidth=1500)
    signed = make_dataset((base.astype(np.int16) - 2048), signed=True, bits_stored=12,
                          RescaleSlope=1, RescaleIntercept=-1000, WindowCenter=-1000,
                          WindowWidth=1800)
    for name, ds in [("m2", m2), ("m1", monochrome1_twin(m2)), ("signed", signed)]:
        sub = tmp_path / name
        sub.mkdir()
        _compare(save(ds, sub / f"{name}.dcm"), sub)


def test_render_multiframe_frame(tmp_path: Path) -> None:
    path = sample_file("emri_small.dcm")
    if path is None:
        pytest.skip("pydicom-data's emri_small.dcm is not installed")
    _compare(Path(path), tmp_path, frame=4)
