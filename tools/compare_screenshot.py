"""README screenshot of Compare with Prior: two radiographs of one patient, the newer active.

    python -m tools.compare_screenshot NEW.png|dcm PRIOR.png|dcm OUT.png

Each picture becomes a DICOM file of one patient (PatientID ``COMPARE``) in a temporary folder
(the user folders are redirected there too), the newer study dated 2024-03-01 and the prior
2019-06-15; the window opens the folder, shows the newer one and runs View > Compare with
Prior, exactly as a reader would.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _as_dicom(src: str, out: str, date: str) -> str:
    import numpy as np
    import pydicom
    from PIL import Image
    from pydicom.uid import generate_uid

    from tests.support.dicom_factory import make_dataset, save

    if src.lower().endswith(".png"):
        pixels = np.asarray(Image.open(src).convert("L"))
    else:
        pixels = pydicom.dcmread(src).pixel_array
    ds = make_dataset(pixels, modality="CR", PatientID="COMPARE", PatientName="Compare^Demo",
                      StudyDate=date, StudyInstanceUID=generate_uid(),
                      SeriesInstanceUID=generate_uid(), SeriesNumber=1, InstanceNumber=1,
                      SeriesDescription="Chest AP", PatientOrientation=["L", "F"])
    return str(save(ds, out))


def main(new: str, prior: str, out: str) -> int:
    tmp = tempfile.mkdtemp()
    for var in ("CONFIG", "DATA", "CACHE"):
        os.environ[f"PNEUMOVIEW_{var}_DIR"] = os.path.join(tmp, var.lower())
    from pneumoview.core.settings import Settings
    from pneumoview.qt.app import SCREENSHOT_SIZE, application, wait_until_idle
    from pneumoview.qt.mainwindow import MainWindow

    folder = os.path.join(tmp, "scan")
    os.mkdir(folder)
    newest = _as_dicom(new, os.path.join(folder, "new.dcm"), "20240301")
    _as_dicom(prior, os.path.join(folder, "prior.dcm"), "20190615")
    app = application()
    win = MainWindow(Settings())
    win.resize(*SCREENSHOT_SIZE)
    win.show()
    win.open_path(folder)
    wait_until_idle(win, 300, settle=1.0)
    win.tree.select_instance(newest)
    wait_until_idle(win, 120, settle=0.5)
    if not win.compare_with_prior():
        print("no prior found", file=sys.stderr)
        return 1
    win.viewports.set_active(win.viewports.viewports[0])
    start = time.time()
    while time.time() - start < 60 and any(vp.decoded is None for vp in win.viewports.visible()):
        app.processEvents()
        time.sleep(0.05)
    wait_until_idle(win, 300, settle=1.0)
    win.ai.dock.raise_()  # the active (newer) image's AI result beside the pair
    app.processEvents()
    win.hide_stray_tab_bars()
    app.processEvents()
    ok = win.grab().save(out, "PNG")
    win.close()
    win.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
