"""Redraw time with 2 (1x2) and 4 (2x2) viewports on large images, against 1 viewport.

    python -m bench.bench_viewports [--steps 30] [--size 3000] [--force]

Runs offscreen. The viewer's own :class:`~pneumoview.qt.viewportgrid.ViewportGrid` fills the
same 1000x800 image area in every layout, each viewport holding a ``--size`` square 15-bit
chest CR (resampled, as ``bench_viewer``), with zoom/pan sync and W/L sync on, so a step on the
active viewport redraws them all. Figures are medians of ``--steps`` steps (a W/L step, a pan
step, a wheel-like zoom step), each followed by a synchronous repaint of every visible viewport;
the baseline is the same step in the 1x1 layout, measured in the same run, the layouts taking
turns step by step. CPU time is printed beside wall time: on a shared machine it leaves out the
time spent waiting for a core.
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




class Grid:
    """One image area in one layout, every viewport holding the same large image."""

    def __init__(self, layout, prepared, make) -> None:  # noqa: ANN001
        from pneumoview.qt.viewportgrid import ViewportGrid, ViewSync

        self.grid = ViewportGrid(make)
        self.sync = ViewSync(self.grid)
        self.sync.window = True
        self.grid.set_layout(layout)
        self.grid.resize(*AREA)
        self.grid.show()
        for vp in self.grid.visible():
            vp.view.set_image(prepared, fit=True)

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
        """Wheel steps: 6 in, then 6 out (crossing the downsampling factors in every layout)."""
        active = self.grid.active
        factor = 0.9 if i % 12 < 6 else 1 / 0.9
        active.view.view_box.scaleBy((factor, factor))
        self.sync.follow_range(active)
        self.repaint()


class Bench:
    """A grid per layout, shown at once; steps take turns between them (see :meth:`run`)."""

    def __init__(self, size: int) -> None:
        from PySide6.QtWidgets import QApplication

        from pneumoview.core.decoderprocess import IsolatedDecoder
        from pneumoview.core.dicomio import DecodedImage
        from pneumoview.core.framecache import FrameCache
        from pneumoview.core.windowing import Window
        from pneumoview.qt.radiographview import prepare
        from pneumoview.qt.viewport import Viewport
        from pneumoview.qt.viewportgrid import Layout
        from pneumoview.qt.workers import WorkRunner

        self.app = QApplication.instance() or QApplication([])
        self.runner = WorkRunner()
        self.decoder = IsolatedDecoder()
        frames: FrameCache = FrameCache(lambda _p: 1)
        values = big_radiograph(size).astype(np.uint16)  # as stored: 15-bit in 16
        prepared = prepare(DecodedImage("bench", values, 0, 1, "MONOCHROME2", False, "CR",
                                        (Window("File window", 15000.0, 30000.0),), None))

        def make(i: int) -> Viewport:
            return Viewport(i, frames, self.runner, lambda: self.decoder, lambda: 1 << 30)

        self.layouts = (Layout.ONE, Layout.ONE_BY_TWO, Layout.TWO_BY_TWO)
        self.grids = {layout: Grid(layout, prepared, make) for layout in self.layouts}
        self.app.processEvents()

    def run(self, step: str, steps: int) -> dict:
        """Median wall and CPU ms of ``step`` per layout; the layouts take turns step by step,
        so a burst of load elsewhere hits them alike (CPU time leaves the waiting out)."""
        for i in range(3):  # warm: the first draws build pyqtgraph's caches
            for grid in self.grids.values():
                getattr(grid, step)(-1 - i)
        wall: dict = {layout: [] for layout in self.layouts}
        cpu: dict = {layout: [] for layout in self.layouts}
        for i in range(steps):
            for layout, grid in self.grids.items():
                w0, c0 = time.perf_counter(), time.process_time()
                getattr(grid, step)(i)
                wall[layout].append((time.perf_counter() - w0) * 1000)
                cpu[layout].append((time.process_time() - c0) * 1000)
        return {layout: (statistics.median(wall[layout]), statistics.median(cpu[layout]))
                for layout in self.layouts}

    def close(self) -> None:
        for grid in self.grids.values():
            grid.grid.close()
        self.runner.shutdown()
        self.decoder.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    check_load(None if args.force else 4.0 * (os.cpu_count() or 1))
    bench = Bench(args.size)
    names = {"wl": "W/L step", "pan": "pan step", "zoom": "zoom step"}
    try:
        results = {step: bench.run(step, args.steps) for step in names}
    finally:
        bench.close()
    print(f"{args.size}x{args.size} 16-bit images, {AREA[0]}x{AREA[1]} image area, zoom/pan and "
          "W/L synchronised; baseline: the same step with one viewport (1x1), same run; "
          "median wall ms (CPU ms)")
    for step, name in names.items():
        row = results[step]
        base_wall, base_cpu = row[bench.layouts[0]]
        parts = [f"1x1 {base_wall:6.1f} ({base_cpu:6.1f})"]
        for layout in bench.layouts[1:]:
            wall, cpu = row[layout]
            parts.append(f"{layout.label} {wall:6.1f} ({cpu:6.1f}) = {wall / base_wall:4.2f}x "
                         f"({cpu / base_cpu:4.2f}x)")
        print(f"  {name:10s} " + "   ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
