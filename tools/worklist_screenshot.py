"""README screenshot of the worklist after a GUI batch over real adult chest films.

    python -m tools.worklist_screenshot NIH_FOLDER OUT.png [N]

NIH_FOLDER is the shared NIH folder (``labels.csv`` and ``images/``). The first N/2 pneumonia and
N/2 "No Finding" films (by file name, default N = 12) become DICOM files of their own patients,
with the age and view from ``labels.csv``, in a temporary folder (the user folders are
redirected there too). The window opens the folder, runs the batch from its panel with the
bundled model, waits for the worklist, opens the top study with Enter and records one review,
as a reader would.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _pick(nih: str, n: int) -> list[dict[str, str]]:
    with open(os.path.join(nih, "labels.csv"), newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["image"])
    per_label = max(1, n // 2)
    return ([r for r in rows if r["label"] == "1"][:per_label]
            + [r for r in rows if r["label"] == "0"][:per_label])


def _as_dicom(nih: str, row: dict[str, str], index: int, out: str) -> str:
    import numpy as np
    from PIL import Image
    from pydicom.uid import generate_uid

    from tests.support.dicom_factory import make_dataset, save

    pixels = np.asarray(Image.open(os.path.join(nih, row["image"])).convert("L"))
    ds = make_dataset(pixels, modality="DX", PatientID=f"NIH{row['patient_id']}",
                      PatientName=f"Adult^{index:02d}", PatientAge=f"{int(row['age']):03d}Y",
                      StudyDate=f"202611{index + 1:02d}", StudyInstanceUID=generate_uid(),
                      SeriesInstanceUID=generate_uid(), SeriesNumber=1, InstanceNumber=1,
                      StudyDescription="Chest", SeriesDescription=f"Chest {row['view']}",
                      ViewPosition=row["view"], BodyPartExamined="CHEST")
    return str(save(ds, out))


def _wait(app, done, timeout_s: float) -> bool:
    start = time.time()
    while not done() and time.time() - start < timeout_s:
        app.processEvents()
        time.sleep(0.05)
    return bool(done())


def main(nih: str, out: str, n: int = 12) -> int:
    tmp = tempfile.mkdtemp()
    for var in ("CONFIG", "DATA", "CACHE"):
        os.environ[f"PNEUMOVIEW_{var}_DIR"] = os.path.join(tmp, var.lower())
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from pneumoview.core.settings import Settings
    from pneumoview.qt.app import SCREENSHOT_SIZE, application, wait_until_idle
    from pneumoview.qt.mainwindow import MainWindow

    folder = os.path.join(tmp, "ward")
    os.mkdir(folder)
    for i, row in enumerate(_pick(nih, n)):
        _as_dicom(nih, row, i, os.path.join(folder, f"film{i:02d}.dcm"))
    app = application()
    win = MainWindow(Settings(reviewer="demo reader"))
    win.resize(*SCREENSHOT_SIZE)
    win.show()
    win.open_path(folder)
    wait_until_idle(win, 300, settle=1.0)
    finished: list[object] = []
    win.batch.finished.connect(finished.append)
    win.batch.start(folder, workers=1, batch_size=4)
    panel = win.worklist.panel
    if not _wait(app, lambda: bool(finished) and bool(panel.entries()), 900):
        print("the batch did not fill the worklist", file=sys.stderr)
        return 1
    panel.table.setFocus()
    QTest.keyClick(panel.table, Qt.Key.Key_Return)
    wait_until_idle(win, 300, settle=1.0)
    QTest.keyClick(panel.table, Qt.Key.Key_A)  # agree with the top study, move to the next
    wait_until_idle(win, 300, settle=1.0)
    win.ai.dock.raise_()  # the opened study's AI result beside the worklist
    win.hide_stray_tab_bars()
    app.processEvents()
    ok = win.grab().save(out, "PNG")
    win.close()
    win.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:])))
