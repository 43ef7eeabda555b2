"""Indexing benchmark: a generated folder of DICOM files, cold and cached, versus dcmread.

    python -m bench.bench_index [--files 2000] [--dir DIR] [--repeat 3] [--strict]

Generates (once, in a temporary folder unless --dir names one) small DICOM files that carry a
real chest CR header (pydicom-data RG1_UNCI.dcm) with 64x64 pixels, spread over several
patients, studies and series, then times in one run, interleaved round by round:

* baseline: ``pydicom.dcmread`` of every file (a full read, pixel data included);
* cold: ``index_folder(..., cache=False)``, every header parsed;
* warm: ``index_folder`` with a populated :class:`IndexCache` (a walk and a stat per file).

Files sit in the OS page cache for all three (they were just written), so this measures CPU
cost, not disk. The median of the rounds is reported, with ratios to the baseline. The machine
must be quiet for absolute numbers to mean anything: the script warns when the 1-minute load
average exceeds half the CPU count (``--strict`` refuses instead); ratios from one run are
still comparable because the methods are interleaved.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from pneumoview.core.indexer import IndexCache, index_folder
from tests.support.dicom_factory import with_pixels


def generate(folder: Path, n_files: int) -> list[Path]:
    """n_files small DICOM files: 10 patients x 2 studies x 4 series x N instances."""
    src = get_testdata_file("RG1_UNCI.dcm", download=False)
    if src is None:
        sys.exit("pydicom-data (RG1_UNCI.dcm) is not installed")
    ds = with_pixels(pydicom.dcmread(src),
                     np.random.default_rng(0).integers(0, 4096, (64, 64), np.uint16))
    groups = [(p, s, r) for p in range(10) for s in range(2) for r in range(4)]
    per_group = -(-n_files // len(groups))
    uids = {g: (generate_uid(), generate_uid()) for g in groups}
    paths: list[Path] = []
    for i in range(n_files):
        p, s, r = groups[i // per_group]
        study_uid = uids[(p, s, 0)][0]
        ds.PatientID = f"BENCH{p:03d}"
        ds.PatientName = f"Bench^Patient{p}"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = uids[(p, s, r)][1]
        ds.SeriesNumber = r + 1
        ds.InstanceNumber = i % per_group + 1
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out = folder / f"P{p:03d}" / f"S{s}" / f"R{r}" / f"IM{i:05d}"  # no extension
        out.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(out, enforce_file_format=True)
        paths.append(out)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--dir", type=Path, help="folder to generate into (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--strict", action="store_true", help="refuse to run on a busy machine")
    args = ap.parse_args(argv)

    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    busy = load > 0.5 * cores
    if busy:
        msg = (f"machine is busy: 1-min load {load:.2f} on {cores} cores; absolute times are "
               "inflated, ratios (interleaved) are more trustworthy")
        if args.strict:
            print("refusing: " + msg, file=sys.stderr)
            return 2
        print("WARNING: " + msg, file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="pv-bench-index-") as tmp:
        folder = args.dir or Path(tmp) / "dicom"
        t = time.perf_counter()
        files = generate(folder, args.files)
        print(f"generated {len(files)} files in {time.perf_counter() - t:.1f} s under {folder}")
        cache_path = Path(tmp) / "cache.sqlite3"
        with IndexCache(cache_path) as cache:
            first = index_folder(folder, cache=cache)  # populate the cache
            assert first.headers_read == len(files) and not first.errors, first.errors
            times: dict[str, list[float]] = {"baseline": [], "cold": [], "warm": []}
            for _ in range(args.repeat):
                t = time.perf_counter()
                for f in files:
                    pydicom.dcmread(f)
                times["baseline"].append(time.perf_counter() - t)

                t = time.perf_counter()
                cold = index_folder(folder, cache=False)
                times["cold"].append(time.perf_counter() - t)
                assert len(cold.instances) == len(files)

                t = time.perf_counter()
                warm = index_folder(folder, cache=cache)
                times["warm"].append(time.perf_counter() - t)
                assert warm.headers_read == 0 and warm.instances == cold.instances

    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(files)
    n_series = sum(len(s.series) for p in cold.patients for s in p.studies)
    print(f"{n} files, {len(cold.patients)} patients, {n_series} series; "
          f"median of {args.repeat} interleaved rounds; load {load:.2f}/{cores} cores")
    for k, label in (("baseline", "pydicom.dcmread, every file"),
                     ("cold", "index_folder, no cache"), ("warm", "index_folder, warm cache")):
        print(f"  {label:30s} {med[k]:7.3f} s  {med[k] / n * 1e6:7.0f} us/file")
    print(f"  cold / baseline = {med['cold'] / med['baseline']:.3f}   "
          f"warm / baseline = {med['warm'] / med['baseline']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
