"""Benchmark: select an image -> probability shown, and -> CAM shown, for 20 different 1024^2 files.

Each file is new to the viewer (cold: never decoded or scored before; the model itself is loaded
and warmed up first, as it is in the viewer once the window is up). A "selection" is what the
viewer does when the reader picks an image: the AI controller is told the image is on screen and
the worker thread decodes, gates, scores and maps it; the clock stops when the panel shows the
probability and when the overlay holds the CAM (Qt signals delivered to the GUI thread). The
model-only forward time of the same runs is reported beside it.

    python bench/bench_inference.py [--model DIR] [--device cpu] [--n 20]

Without a bundled model it uses a random model of the same architecture (timings are the same).
Goals on this CPU: probability < 150 ms, CAM < 400 ms (medians).
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

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def make_files(out: Path, n: int, size: int = 1024) -> list[Path]:
    """``n`` different size x size 12-bit MONOCHROME2 DX files (NIH images when available)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    sources = sorted((DATA / "nih" / "images").glob("*.png"))[:n]
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        if i < len(sources):
            from PIL import Image

            with Image.open(sources[i]) as im:
                grey = np.asarray(im.convert("L").resize((size, size), Image.Resampling.BICUBIC))
            pixels = (grey.astype(np.uint16) * 16 + rng.integers(0, 16, grey.shape)).astype(
                np.uint16)
        else:  # synthetic: smooth random field
            small = rng.random((16, 16))
            pixels = (np.kron(small, np.ones((size // 16, size // 16))) * 4000).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(out / f"bench_{i:02d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.Modality = "DX"
        ds.BodyPartExamined = "CHEST"
        ds.ViewPosition = "PA"
        ds.PatientName = "Bench^Synthetic"
        ds.PatientID = f"BENCH{i:02d}"
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        ds.PixelData = pixels.tobytes()
        pydicom.dcmwrite(ds.filename, ds, enforce_file_format=True)
        files.append(Path(ds.filename))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: bundled, else a random model)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtWidgets import QApplication

    from pneumoview.core.errors import PneumoViewError
    from pneumoview.core.model import read_model_info
    from pneumoview.qt.aicontroller import AIController

    app = QApplication.instance() or QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp(prefix="pv-bench-"))
    model_dir = args.model
    note = ""
    if model_dir is None:
        try:
            read_model_info(None)
        except PneumoViewError:
            sys.path.insert(0, str(ROOT))
            from tests.model_fixture import make_random_model_dir

            model_dir = str(make_random_model_dir(tmp / "random-model"))
            note = " (random weights: no bundled model yet; timings are the same)"
    files = make_files(tmp, args.n)

    ctl = AIController(None, model_dir=model_dir, device=args.device)
    t_load = time.perf_counter()
    ctl.start()
    while ctl.info is None and not ctl.error:
        app.processEvents()
        time.sleep(0.002)
    if ctl.info is None:
        print(f"cannot load the model: {ctl.error}", file=sys.stderr)
        return 1
    load_s = time.perf_counter() - t_load
    shown: dict[str, float] = {}
    ctl.worker.predicted.connect(lambda r: shown.setdefault(f"p:{r.path}", time.perf_counter()))
    ctl.worker.camReady.connect(lambda r: shown.setdefault(f"c:{r.path}", time.perf_counter()))

    from pneumoview.core.threads import torch_threads

    prob_ms, cam_ms, fwd_ms, decode_ms = [], [], [], []
    try:
        for path in files:
            t0 = time.perf_counter()
            # what the viewer's selection does: the image goes on screen (decoded by the
            # worker here, as the viewer's decode lane would), the controller asks for a result
            ctl.current = None
            ctl.worker.submit(str(path), 0, None)
            ctl.current = (str(path), 0)
            while f"c:{path}" not in shown:
                app.processEvents()
                time.sleep(0.0005)
            pred = ctl.results.get((str(path), 0, False))
            prob_ms.append((shown[f"p:{path}"] - t0) * 1000)
            cam_ms.append((shown[f"c:{path}"] - t0) * 1000)
            fwd_ms.append(pred.timings["forward_ms"])
            decode_ms.append(prob_ms[-1] - pred.timings["total_ms"])
    finally:
        ctl.shutdown()

    def stats(xs: list[float]) -> str:
        return (f"median {statistics.median(xs):6.0f} ms   p90 {np.percentile(xs, 90):6.0f} ms"
                f"   max {max(xs):6.0f} ms")

    print(f"model {ctl.info.label}{note}")
    print(f"device {ctl.worker.device}, torch threads {torch_threads()}, "
          f"{len(files)} files 1024x1024 12-bit, model load + warm-up {load_s:.1f} s")
    print(f"select -> probability shown : {stats(prob_ms)}   (goal < 150 ms)")
    print(f"select -> CAM shown         : {stats(cam_ms)}   (goal < 400 ms)")
    print(f"model-only forward          : {stats(fwd_ms)}")
    print(f"decode + queueing           : {stats(decode_ms)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
