"""Redraw time with 2 (1x2) and 4 (2x2) viewports on large images, against 1 viewport.

    python -m bench.bench_viewports [--steps 30] [--size 3000] [--force]

Runs offscreen. The viewer's own :class:`~pneumoview.qt.viewportgrid.ViewportGrid` fills the
same 1000x800 image area in every layout, each viewport holding a ``--size`` square 15-bit
chest CR (resampled, as ``bench_viewer``), with zoom/pan sync and W/L sync on, so a step on the
active viewport redraws them all. Figures are medians of ``--steps`` steps (a W/L step, a pan
step, a wheel-like zoom step), each followed by a synchronous repaint of every visible viewport;
the baseline is the same step in the 1x1 layout, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402

from bench._common import check_load  # noqa: E402
from bench.bench_viewer import big_radiograph  # noqa: E402

AREA = (1000, 800)


ROUNDS = 3  # layouts take turns, so a burst of load elsewhere hits them all alike


def _times_ms(fn, steps: int) -> list[float]:  # noqa: ANN001
    for i in range(3):
        fn(-1 - i)  # warm: the first draws at a new size build pyqtgraph's caches
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1000)
    return times


class Bench:
    """One grid, its viewports filled with the same large image, and the timed steps."""

    def __init__(self, size: int) -> None:
        from PySide6.QtWidgets import QApplication

        from pneumoview.core.dicomio import DecodedImage
        from pneumoview.core.framecache import FrameCache
        from pneumoview.core.isolated import IsolatedDecoder
        from pneumoview.core.windowing import Window
        from pneumoview.qt.radiographview import prepare
        from pneumoview.qt.viewport import Viewport
        from pneumoview.qt.viewportgrid import ViewportGrid, ViewSync
        from pneumoview.qt.workers import WorkRunner

        self.app = QApplication.instance() or QApplication([])
        self.runner = WorkRunner()
        self.decoder = IsolatedDecoder()
        frames: FrameCache = FrameCache(lambda _p: 1)
        values = big_radiograph(size).astype(np.uint16)  # as stored: 15-bit in 16
        self.prepared = prepare(DecodedImage("bench", values, 0, 1, "MONOCHROME2", False, "CR",
                                             (Window("File window", 15000.0, 30000.0),), None))
        self.grid = ViewportGrid(lambda i: Viewport(i, frames, self.runner, lambda: self.decoder,
                                                    lambda: 1 << 30))
        self.sync = ViewSync(self.grid)
        self.sync.window = True
        self.grid.resize(*AREA)
        self.grid.show()

    def use(self, layout) -> None:  # noqa: ANN001 - a Layout
        self.grid.set_layout(layout)
        self.app.processEvents()
        for vp in self.grid.visible():
            if vp.view.decoded is None:
                vp.view.set_image(self.prepared, fit=True)
            vp.view.fit()
        self.app.processEvents()

    def repaint(self) -> None:
        for vp in self.grid.visible():
            vp.view.graphics.viewport().repaint()

    def wl(self, i: int) -> None:
        self.grid.active.view.set_levels(15000.0 + 37 * i, 30000.0 - 53 * i)
        self.repaint()

    def pan(self, i: int) -> None:
        from PySide6.QtCore import QRectF

        active = self.grid.active
        r = active.view.view_box.viewRect()
        active.view.view_box.setRange(QRectF(r).translated(9 if i % 2 else -9, 6), padding=0)
        self.sync.follow_range(active)
        self.repaint()

    def zoom(self, i: int) -> None:
        active = self.grid.active
        factor = 0.9 if i % 2 else 1 / 0.9
        active.view.view_box.scaleBy((factor, factor))
        self.sync.follow_range(active)
        self.repaint()

    def close(self) -> None:
        self.grid.close()
        self.runner.shutdown()
        self.decoder.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    check_load(None if args.force else 4.0 * (os.cpu_count() or 1))
    from pneumoview.qt.viewportgrid import Layout

    bench = Bench(args.size)
    steps = {"W/L step": bench.wl, "pan step": bench.pan, "zoom step": bench.zoom}
    layouts = (Layout.ONE, Layout.ONE_BY_TWO, Layout.TWO_BY_TWO)
    times: dict[tuple[str, Layout], list[float]] = {(n, k): [] for n in steps for k in layouts}
    try:
        for _round in range(ROUNDS):
            for layout in layouts:
                bench.use(layout)
                for name, step in steps.items():
                    times[name, layout] += _times_ms(step, max(1, args.steps // ROUNDS))
    finally:
        bench.close()
    results = {key: statistics.median(values) for key, values in times.items()}
    print(f"{args.size}x{args.size} 16-bit images, {AREA[0]}x{AREA[1]} image area, zoom/pan and "
          "W/L synchronised; baseline: the same step with one viewport (1x1), same run")
    for name in steps:
        base = results[name, Layout.ONE]
        parts = [f"1x1 {base:7.1f} ms"]
        for layout in (Layout.ONE_BY_TWO, Layout.TWO_BY_TWO):
            ms = results[name, layout]
            parts.append(f"{layout.label} {ms:7.1f} ms ({ms / base:4.2f}x)")
        print(f"  {name:10s} " + "   ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
