"""Decode + model input per encoding, against pydicom's bare ``pixel_array`` in the same run.

    python -m bench.bench_decode [--repeat 5] [--force]

For the 1955x1841 15-bit CR (pydicom-data RG1) and a 1024x1024 chest radiograph re-encoded in
each supported transfer syntax, prints: pydicom ``dcmread().pixel_array`` (the baseline: what
any pydicom program pays), PneumoView's ``dicomio.decode`` (header + Modality LUT + windows),
and ``contract.model_input``; ratios are against the baseline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from bench._common import check_load, median_time
from pneumoview.core import contract, dicomio
from tests.support.dicom_factory import make_dataset, reencode, sample_file, save
from tests.support.shared_data import shared_path


def _chest1024() -> np.ndarray:
    path = shared_path("dicom", "nhsx_nih_cxr.dcm")
    if path is not None:
        return pydicom.dcmread(path).pixel_array.astype(np.uint16) * 16
    arr = pydicom.dcmread(sample_file("RG1_UNCR.dcm")).pixel_array
    return (arr[:1024, :1024] >> 3).astype(np.uint16)


def files(tmp: Path) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    rg1 = sample_file("RG1_UNCR.dcm")
    if rg1:
        out.append(("CR 1955x1841 15-bit uncompressed", Path(rg1)))
    j2k = sample_file("RG1_J2KR.dcm")
    if j2k:
        out.append(("CR 1955x1841 15-bit JPEG 2000", Path(j2k)))
    base = make_dataset(_chest1024(), bits_stored=12)
    out.append(("1024^2 12-bit uncompressed", save(base, tmp / "unc.dcm")))
    for name, syntax in [("RLE", RLELossless), ("JPEG-LS", JPEGLSLossless),
                         ("JPEG 2000", JPEG2000Lossless)]:
        out.append((f"1024^2 12-bit {name}", save(reencode(base, syntax), tmp / f"{name}.dcm")))
    txv = shared_path("dicom", "txv_siim_cxr.dcm")
    if txv is not None:
        out.append(("1024^2 8-bit JPEG baseline", txv))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--force", action="store_true", help="run even on a busy machine")
    args = parser.parse_args()
    check_load(None if args.force else 1.9)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'file':36s} {'pydicom ms':>10s} {'decode ms':>10s} {'input ms':>9s} "
              f"{'decode/base':>11s} {'total/base':>10s}")
        for label, path in files(Path(tmp)):
            base = median_time(lambda p=path: pydicom.dcmread(p).pixel_array, args.repeat)
            dec = median_time(lambda p=path: dicomio.decode(p), args.repeat)
            d = dicomio.decode(path)
            inp = median_time(lambda d=d: contract.model_input(d.values, d.invert), args.repeat)
            print(f"{label:36s} {base * 1e3:10.1f} {dec * 1e3:10.1f} {inp * 1e3:9.1f} "
                  f"{dec / base:11.2f} {(dec + inp) / base:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
