"""Viewer speed: one window/level step, cold start, and select -> image shown.

    python -m bench.bench_viewer [--steps 40] [--starts 5] [--force]

Runs offscreen (``QT_QPA_PLATFORM=offscreen`` unless set). Each figure comes with a baseline
measured in the same run, so the ratio stays meaningful on a busy or slow machine:

* W/L step (3000x3000 16-bit radiograph, window 1400x900, image fitted and at 1:1): set new
  levels and repaint synchronously; baseline: one plain numpy windowing pass over the image.
  Goal: median under 10 ms.
* cold start to the first window shown (subprocess, welcome page); baseline: ``python -c pass``.
  Goal: under 1.5 s (torch is not imported on that path; checked and printed).
* select -> image shown for 20 different files, none decoded before by the viewer (background
  decode + prepare + display); baseline: ``dicomio.decode`` of the same file in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pydicom

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

from pydicom.uid import generate_uid  # noqa: E402

from bench._common import check_load  # noqa: E402
from tests.support.dicom_factory import sample_file  # noqa: E402
from tests.support.shared_data import shared_path  # noqa: E402

START_SCRIPT = r"""
import json, sys, threading, time

imports = []


class Watch:  # notes the first request for torch (the AI panel loads it later, in a thread)
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not imports:
            imports.append((threading.current_thread().name, time.time()))
        return None


sys.meta_path.insert(0, Watch())
from pneumoview.qt import app as viewer_app
import argparse
args = argparse.Namespace(path=None, demo=False, screenshot=None, model=None, device=None)
window = viewer_app.create_window(args)
viewer_app.application().processEvents()
shown = time.time()
print(json.dumps({"shown": shown, "torch": any(t <= shown for _, t in imports)}))
window.close()
"""


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def big_radiograph(size: int = 3000) -> np.ndarray:
    """RG1 (a real 15-bit chest CR) resampled to size x size, as modality values."""
    arr = pydicom.dcmread(sample_file("RG1_UNCR.dcm")).pixel_array
    rows = (np.arange(size) * arr.shape[0] / size).astype(np.intp)
    cols = (np.arange(size) * arr.shape[1] / size).astype(np.intp)
    return arr[rows][:, cols].astype(np.float32)


def bench_wl(steps: int) -> dict[str, float]:
    from pneumoview.core.dicomio import DecodedImage
    from pneumoview.core.settings import Settings
    from pneumoview.core.windowing import Window
    from pneumoview.qt.app import application, wait_until_idle
    from pneumoview.qt.mainwindow import MainWindow

    app = application()
    values = big_radiograph()
    decoded = DecodedImage("bench", values, 0, 1, "MONOCHROME2", False, "CR",
                           (Window("File window", 15000.0, 30000.0),), None)
    win = MainWindow(Settings())
    win.resize(1400, 900)
    win.show()
    win.stack.setCurrentWidget(win.viewer_page)
    wait_until_idle(win, 300, settle=1.5)  # background start-up work (the AI model load)
    win.view.set_image(decoded, fit=True)
    app.processEvents()
    viewport = win.view.graphics.viewport()
    out: dict[str, float] = {}
    for label, setup in (("fit", win.view.fit), ("1:1", win.view.one_to_one)):
        setup()
        app.processEvents()
        viewport.repaint()
        times, cpu = [], []
        for i in range(steps):
            t0, c0 = time.perf_counter(), time.thread_time()
            win.view.set_levels(15000.0 + 37 * i, 30000.0 - 53 * i)
            viewport.repaint()
            times.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
        out[label] = statistics.median(times)
        out[label + " cpu"] = statistics.median(cpu)
    win.close()
    times, cpu = [], []
    for i in range(max(5, steps // 4)):
        lo, hi = 100.0 + i, 30000.0 - i
        t0, c0 = time.perf_counter(), time.thread_time()
        np.clip((values - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    out["numpy"] = statistics.median(times)
    out["numpy cpu"] = statistics.median(cpu)
    return out


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_start(code: list[str]) -> tuple[float, float, dict]:
    """(wall seconds to the window, CPU seconds of the whole run, facts printed)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    cpu0 = _children_cpu()
    t0 = time.time()
    done = subprocess.run([sys.executable, *code], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120, check=True)
    end = time.time()
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    facts = json.loads(lines[-1]) if lines else {}
    return (facts.get("shown", end) - t0), _children_cpu() - cpu0, facts


def bench_start(starts: int) -> dict[str, object]:
    """Wall time is what a user waits; CPU time (user+sys, whole run) varies less with load."""
    base = [_run_start(["-c", "pass"]) for _ in range(starts)]
    runs = [_run_start(["-c", START_SCRIPT]) for _ in range(starts)]
    return {"viewer": statistics.median(r[0] for r in runs),
            "viewer_cpu": statistics.median(r[1] for r in runs),
            "python": statistics.median(r[0] for r in base),
            "python_cpu": statistics.median(r[1] for r in base),
            "torch": any(r[2].get("torch") for r in runs)}


def _sources() -> list[Path]:
    names = ["RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_UNCI.dcm"]
    found = [Path(p) for p in (sample_file(n) for n in names) if p]
    for name in ("txv_siim_cxr.dcm", "nhsx_nih_cxr.dcm"):
        path = shared_path("dicom", name)
        if path is not None:
            found.append(path)
    return found


def make_files(folder: Path, n: int = 20) -> list[Path]:
    """n distinct files (new UIDs) cycling through real chest radiographs and encodings."""
    sources = _sources()
    out = []
    for i in range(n):
        ds = pydicom.dcmread(sources[i % len(sources)])
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = generate_uid()
        ds.SeriesNumber = i + 1
        ds.InstanceNumber = 1
        path = folder / f"im{i:02d}.dcm"
        ds.save_as(path)
        out.append(path)
    return out


def bench_select(n: int = 20) -> dict[str, object]:
    from pneumoview.core import dicomio
    from pneumoview.core.settings import Settings
    from pneumoview.qt.app import application, wait_until_idle
    from pneumoview.qt.mainwindow import MainWindow

    app = application()
    tmp = Path(tempfile.mkdtemp(prefix="pv-bench-"))
    try:
        make_files(tmp, n)
        win = MainWindow(Settings())
        win.resize(1400, 900)
        win.show()
        win.open_folder(str(tmp))
        wait_until_idle(win, 300, settle=1.5)
        shown: list[str] = []
        win.imageShown.connect(lambda d: shown.append(d.path))
        instances = win.tree.instances()
        times, cpus, sizes = [], [], []
        for inst in instances:
            wait_until_idle(win, 300, settle=0.3)  # the previous image's follow-up work (AI)
            win.frames.clear()  # cold: nothing decoded before by the viewer
            shown.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            win.tree.select_instance(inst.path)
            while inst.path not in shown:
                app.processEvents()
                time.sleep(0.0005)
                if time.perf_counter() - t0 > 120:
                    raise RuntimeError(f"{inst.path} was not shown in 120 s")
            app.processEvents()  # the repaint
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            sizes.append(f"{inst.columns}x{inst.rows}")
        win.close()
        base, base_cpu = [], []
        for inst in instances:
            t0, c0 = time.perf_counter(), time.process_time()
            dicomio.decode(inst.path)
            base.append(time.perf_counter() - t0)
            base_cpu.append(time.process_time() - c0)
        return {"median": statistics.median(times), "max": max(times),
                "cpu": statistics.median(cpus), "decode_cpu": statistics.median(base_cpu),
                "decode": statistics.median(base), "n": len(times),
                "kinds": sorted(set(sizes))}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--force", action="store_true", help="run even on a busy machine")
    args = parser.parse_args()
    load = check_load(None if args.force else 4 * (os.cpu_count() or 1))
    print(f"load average {load:.2f}, {os.cpu_count()} cores, {sys.platform}")

    wl = bench_wl(args.steps)
    print("W/L step, 3000x3000 16-bit, incl. repaint (median):")
    for label in ("fit", "1:1"):
        print(f"  image {label:<4}      {_ms(wl[label])} wall {_ms(wl[label + ' cpu'])} CPU   "
              f"{wl[label] / wl['numpy']:.2f}x a numpy windowing pass")
    print(f"  baseline numpy pass {_ms(wl['numpy'])} wall {_ms(wl['numpy cpu'])} CPU")

    start = bench_start(args.starts)
    print(f"cold start to first window shown (median of {args.starts}): "
          f"{start['viewer']:.2f} s wall, {start['viewer_cpu']:.2f} s CPU; "
          f"python -c pass {start['python']:.2f} s wall, {start['python_cpu']:.2f} s CPU "
          f"({start['viewer'] / start['python']:.1f}x wall); "
          f"torch imported before the window: {start['torch']}")

    sel = bench_select()
    print(f"select -> image shown, {sel['n']} different files never decoded before "
          f"({', '.join(sel['kinds'])}): median {_ms(sel['median'])} wall "
          f"({_ms(sel['cpu'])} CPU), max {_ms(sel['max'])}; bare dicomio.decode median "
          f"{_ms(sel['decode'])} wall ({_ms(sel['decode_cpu'])} CPU); "
          f"{sel['median'] / sel['decode']:.2f}x wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
