"""Benchmark: select an image -> probability shown, and -> CAM shown, for 20 different 1024^2 files.

Each file is new to the viewer (cold: never decoded or scored before; the model itself is loaded
and warmed up first, as it is in the viewer a moment after the window is up). A selection is what
a click in the study tree does, in the real main window (offscreen): the viewer's decode lane
decodes the file and shows it, the AI controller asks the inference thread, which gates, scores
and maps it; the clock stops when the AI panel shows this file's probability, and when the CAM
overlay holds this file's map. The model-only forward time of the same runs is shown beside it.

    python -m bench.bench_inference [--model DIR] [--device cpu] [--engine E] [--n 20]

Without a bundled model it uses a random model of the same architecture (timings are the same).
Goals on this CPU (medians): with the fast engine (OpenVINO) probability <= 30 ms and CAM <= 40 ms;
with torch float32 probability < 150 ms and CAM < 400 ms.
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
    from pydicom.uid import SecondaryCaptureImageStorage

    from tests.support.dicom_factory import make_dataset, save

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
        ds = make_dataset(pixels, bits_stored=12, sop_class=SecondaryCaptureImageStorage,
                          BodyPartExamined="CHEST", ViewPosition="PA",
                          PatientName="Bench^Synthetic", PatientID=f"BENCH{i:02d}",
                          RescaleSlope=1, RescaleIntercept=0)
        files.append(save(ds, out / f"bench_{i:02d}.dcm"))
    return files


def _wait(app, cond, timeout: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > deadline:
            raise TimeoutError("the viewer did not answer in time")
        app.processEvents()
        time.sleep(0.0005)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: bundled, else a random model)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--engine", default=None, help="auto (default), torch or openvino")
    parser.add_argument("--precision", default=None,
                        help="auto (default), bf16, f32 or int8 (a model with an int8 graph)")
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="pv-bench-"))
    for var in ("PNEUMOVIEW_CONFIG_DIR", "PNEUMOVIEW_CACHE_DIR", "PNEUMOVIEW_DATA_DIR"):
        os.environ.setdefault(var, str(tmp / var.lower()))  # never touch the user's settings

    from pneumoview.core.errors import PneumoViewError
    from pneumoview.core.model import read_model_info
    from pneumoview.core.settings import Settings
    from pneumoview.core.threads import torch_threads
    from pneumoview.qt.app import application
    from pneumoview.qt.mainwindow import MainWindow, ViewerOptions

    app = application()
    model_dir = args.model
    note = ""
    if model_dir is None:
        try:
            read_model_info(None)
        except PneumoViewError:
            from tests.support.model_fixture import make_random_model_dir

            model_dir = str(make_random_model_dir(tmp / "random-model"))
            note = " (random weights: no bundled model; timings are the same)"
    folder = tmp / "files"
    folder.mkdir()
    files = make_files(folder, args.n + 1)  # the first is shown on opening: not timed

    window = MainWindow(Settings(), ViewerOptions(model=model_dir, device=args.device,
                                                  engine=args.engine,
                                                  precision=args.precision))
    window.resize(1400, 900)
    window.show()
    ai = window.ai
    t_load = time.perf_counter()
    window.open_path(str(folder))
    _wait(app, lambda: ai.info is not None or bool(ai.error))
    if ai.info is None:
        print(f"cannot load the model: {ai.error}", file=sys.stderr)
        window.close()
        return 1
    load_s = time.perf_counter() - t_load
    _wait(app, lambda: window.runner.pending() == 0)

    prob_ms, cam_ms, fwd_ms, prob_cpu, cam_cpu = [], [], [], [], []
    # where the time goes: when the GUI thread hears of each step (ms after the selection)
    marks: dict[str, list[float]] = {"decoded (AI asked)": [], "on screen": [],
                                     "probability sent by the worker": []}
    clock = {"t0": 0.0, "seen": set()}

    def mark(name: str, path: str) -> None:
        if (name, path) in clock["seen"]:
            return
        clock["seen"].add((name, path))
        marks[name].append((time.perf_counter() - clock["t0"]) * 1000)

    window.imageArriving.connect(lambda d: mark("decoded (AI asked)", d.path))
    window.imageShown.connect(lambda d: mark("on screen", d.path))
    ai.worker.predicted.connect(lambda r: mark("probability sent by the worker", r.path))
    cam_cpu_seen: dict[str, float] = {}
    ai.worker.camReady.connect(
        lambda r: cam_cpu_seen.setdefault(r.path, ai.worker.engine.last_cam_timings["cpu_ms"]))
    try:
        first = window.view.decoded.path if window.view.decoded is not None else ""
        for path in [str(f) for f in files if str(f) != first][: args.n]:
            t0 = time.perf_counter()
            clock["t0"] = t0
            window.tree.select_instance(path)  # what a click in the study tree does
            _wait(app, lambda p=path: ai.panel.prediction is not None
                  and ai.panel.prediction.path == p)
            prob_ms.append((time.perf_counter() - t0) * 1000)
            _wait(app, lambda p=path: ai.overlay.key == (p, 0))
            cam_ms.append((time.perf_counter() - t0) * 1000)
            fwd_ms.append(ai.panel.prediction.timings["forward_ms"])
            prob_cpu.append(ai.panel.prediction.timings["cpu_ms"])
            _wait(app, lambda p=path: p in cam_cpu_seen)
            cam_cpu.append(cam_cpu_seen[path])
            _wait(app, lambda: window.runner.pending() == 0)
        device = ai.worker.device
        label = ai.info.label
    finally:
        window.close()

    def stats(xs: list[float]) -> str:
        return (f"median {statistics.median(xs):6.0f} ms   p90 {np.percentile(xs, 90):6.0f} ms"
                f"   max {max(xs):6.0f} ms")

    print(f"model {label}{note}")
    print(f"device {device}, torch threads {torch_threads()}, {len(prob_ms)} files "
          f"1024x1024 12-bit, model load + warm-up {load_s:.1f} s (before timing)")
    fast = str(device).startswith("openvino")
    print(f"select -> probability shown : {stats(prob_ms)}   "
          f"(goal {'<= 30' if fast else '< 150'} ms)")
    print(f"select -> CAM shown         : {stats(cam_ms)}   "
          f"(goal {'<= 40' if fast else '< 400'} ms)")
    print(f"model-only forward          : {stats(fwd_ms)}")
    print(f"inference thread CPU, prob  : {stats(prob_cpu)}   (load-independent cost)")
    print(f"inference thread CPU, CAM   : {stats(cam_cpu)}")
    for name, xs in marks.items():
        if xs:
            print(f"  timeline, {name:<32}: median {statistics.median(xs):6.1f} ms")
    print(f"1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
