"""Reading tools' speed: redraw of two viewports side by side on large images, with and
without measurements, rotated, and the full-resolution export.

    python -m bench.bench_reading [--steps 30] [--size 3000] [--force]

Runs offscreen. Two image views (3000x3000 15-bit chest CR resampled, as bench_viewer) share a
1400x900 widget, as a 1x2 comparison would. Each figure is the median of ``--steps`` steps and
comes with a baseline measured in the same run (one numpy windowing pass over one image):

* W/L step on both views + synchronous repaint: no annotations, 12 annotations per view
  (distances, angles, rectangle/ellipse ROIs with statistics recomputed, text), and rotated.
* pan step on both views + repaint (the annotation items move with the image).
* full-resolution export of one view (image grid, CAM-like layer, annotations, caption).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

HERE = Path(__file__).resolve().parent

import numpy as np  # noqa: E402

from bench._common import check_load  # noqa: E402
from bench.bench_viewer import big_radiograph  # noqa: E402


def _annotations(size: int) -> list:
    from pneumoview.core.reading.annotations import Annotation, Kind

    s = size / 10
    out = []
    for i in range(3):
        o = s * (1 + 2.5 * i)
        out += [Annotation(Kind.DISTANCE, ((o, o), (o + 2 * s, o + s))),
                Annotation(Kind.ANGLE,
                           ((o, o + 3 * s), (o + s, o + 4 * s), (o + 2 * s, o + 3 * s))),
                Annotation(Kind.RECTANGLE, ((o + 3 * s, o), (o + 4 * s, o + s))),
                Annotation(Kind.ELLIPSE, ((o, o + 5 * s), (o + 1.5 * s, o + 6 * s)))]
    return out


def _median_ms(fn, steps: int) -> float:
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    check_load(None if args.force else 4.0 * (os.cpu_count() or 1))

    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtWidgets import QApplication, QSplitter

    from pneumoview.core.dicomio import DecodedImage
    from pneumoview.core.windowing import Window
    from pneumoview.qt.export_image import export_view
    from pneumoview.qt.radiographview import RadiographView
    from pneumoview.qt.tools.layer import AnnotationLayer

    app = QApplication.instance() or QApplication([])
    values = big_radiograph(args.size)
    decoded = DecodedImage("bench", values, 0, 1, "MONOCHROME2", False, "CR",
                           (Window("File window", 15000.0, 30000.0),), None)
    split = QSplitter(Qt.Orientation.Horizontal)
    views = [RadiographView(), RadiographView()]
    layers = []
    for v in views:
        split.addWidget(v)
        v.set_image(decoded, fit=True)
        layers.append(AnnotationLayer(v))
    split.resize(1400, 900)
    split.show()
    app.processEvents()

    def repaint() -> None:
        for v in views:
            v.graphics.viewport().repaint()

    def wl(i: int) -> None:
        for v in views:
            v.set_levels(15000.0 + 37 * i, 30000.0 - 53 * i)
        repaint()

    def pan(i: int) -> None:
        for v in views:
            r = v.view_box.viewRect()
            v.view_box.setRange(QRectF(r).translated(3 if i % 2 else -3, 2), padding=0)
        repaint()

    rows = {}
    for layer in layers:
        layer.show_image(decoded, [])
    wl(0)
    rows["W/L step, 2 views, no annotations"] = _median_ms(wl, args.steps)
    rows["pan step, 2 views, no annotations"] = _median_ms(pan, args.steps)
    for layer in layers:
        layer.show_image(decoded, _annotations(args.size))
    wl(0)
    rows["W/L step, 2 views, 12 annotations each"] = _median_ms(wl, args.steps)
    rows["pan step, 2 views, 12 annotations each"] = _median_ms(pan, args.steps)
    for v in views:
        v.set_view_transform(v.view_transform.rotated())
    wl(0)
    rows["W/L step, 2 views, annotated, rotated"] = _median_ms(wl, args.steps)
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_reading_export.png"
    rows["full-resolution export, one view"] = _median_ms(
        lambda _i: export_view(views[0], out, ["caption"]), max(3, args.steps // 10))
    split.close()

    def baseline(i: int) -> None:
        lo, hi = 100.0 + i, 30000.0 - i
        np.clip((values - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)

    base = _median_ms(baseline, max(5, args.steps // 3))
    print(f"{args.size}x{args.size} images; baseline: one numpy windowing pass {base:.1f} ms")
    for label, ms in rows.items():
        print(f"  {label:44s} {ms:8.1f} ms   {ms / base:5.2f}x baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
