"""README screenshots of the reading tools: measurements on a chest radiograph, and a
full-resolution export.

    python -m tools.reading_screenshots FILE.dcm OUT_FOLDER

FILE is copied into a temporary folder and opened there (the user folders are redirected to a
temporary one too); the annotations are placed at fractions of the image's width.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main(src: str, out: str) -> int:
    tmp = tempfile.mkdtemp()
    for var in ("CONFIG", "DATA", "CACHE"):
        os.environ[f"PNEUMOVIEW_{var}_DIR"] = os.path.join(tmp, var.lower())
    from pneumoview.core.reading.annotations import Annotation, Kind
    from pneumoview.core.settings import Settings
    from pneumoview.qt.app import application, wait_until_idle
    from pneumoview.qt.export_image import export_view
    from pneumoview.qt.mainwindow import MainWindow

    app = application()
    folder = os.path.join(tmp, "scan")
    os.mkdir(folder)
    shutil.copy(src, folder)
    win = MainWindow(Settings())
    win.resize(1400, 900)
    win.show()
    win.open_path(folder)
    wait_until_idle(win, 300, settle=1.0)
    start = time.time()
    while win.view.decoded is None and time.time() - start < 120:
        app.processEvents()
        time.sleep(0.05)
    if win.view.decoded is None:
        print(f"{src}: not shown", file=sys.stderr)
        return 1
    s = win.view.decoded.shape[1] / 1024
    for a in (Annotation(Kind.DISTANCE, ((205 * s, 560 * s), (830 * s, 560 * s))),
              Annotation(Kind.ANGLE, ((150 * s, 800 * s), (230 * s, 890 * s),
                                      (380 * s, 860 * s))),
              Annotation(Kind.ELLIPSE, ((610 * s, 330 * s), (760 * s, 480 * s))),
              Annotation(Kind.RECTANGLE, ((280 * s, 300 * s), (400 * s, 420 * s))),
              Annotation(Kind.ARROW, ((640 * s, 700 * s), (560 * s, 620 * s))),
              Annotation(Kind.TEXT, ((650 * s, 705 * s),), text="check the hilum")):
        win.reading.layer.add(a)
    win.reading.dock.show()
    win.reading.dock.raise_()
    wait_until_idle(win, 120, settle=0.5)
    for _ in range(10):
        app.processEvents()
    win.grab().save(os.path.join(out, "reading-measurements.png"))
    export_view(win.view, os.path.join(out, "reading-export.png"), win.ai.caption(),
                long_side=900)
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
