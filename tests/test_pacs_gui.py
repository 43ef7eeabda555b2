"""The PACS in the viewer: File > Open from PACS... against a real Orthanc (query, retrieve in
the background into the private cache, the studies then in the tree) and File > Save AI
Result as DICOM... of the result on screen."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("PySide6")

pytestmark = pytest.mark.gui
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.model_fixture import make_random_model_dir

    return make_random_model_dir(tmp_path_factory.mktemp("model") / "m", seed=8)


def _films(folder: Path, patient: str, n: int = 2, **tags: str) -> list[Path]:
    from tests.support.dicom_factory import make_dataset, save

    rng = np.random.default_rng(3)
    study = pydicom.uid.generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    return [save(make_dataset(rng.integers(0, 255, (160, 144)).astype(np.uint8),
                              PatientID=patient, StudyInstanceUID=study, ViewPosition="PA",
                              **tags),
                 folder / f"f{i}.dcm") for i in range(n)]


def _idle(qtbot, win) -> None:
    for _ in range(2):
        qtbot.waitUntil(lambda: win.runner.pending() == 0 and win.ai.pending() == 0,
                        timeout=TIMEOUT_MS)
        qtbot.wait(30)


def test_menus_hold_the_pacs_actions(make_viewer_window) -> None:
    win = make_viewer_window(show=False)
    actions = [a for a in win.menuBar().actions()[0].menu().actions()]
    assert {win.pacs.act_open, win.pacs.act_save, win.pacs.act_send} <= set(actions)


def test_open_from_pacs_query_retrieve_and_tree(qtbot, make_viewer_window, tmp_path: Path,
                                                ) -> None:
    from orthanc_support import start_orthanc

    from pneumoview.core.pacs import transfer
    from pneumoview.core.pacs.cache import retrieval_root
    from pneumoview.core.pacs.nodes import parse_node

    server = start_orthanc(tmp_path / "orthanc")
    try:
        sent = _films(tmp_path / "src", "GUI-PULL")
        assert not transfer.send(parse_node(server.dimse_url), sent).failed
        win = make_viewer_window()
        win.pacs.open_dialog()
        dialog = win.pacs.dialog
        dialog.node.setEditText(server.dimse_url)
        dialog.patient_id.setText("GUI-PULL")
        dialog.search_button.click()
        qtbot.waitUntil(lambda: dialog.table.rowCount() == 1 and dialog.job is None,
                        timeout=TIMEOUT_MS)
        assert dialog.table.item(0, 0).text() == "GUI-PULL"
        assert win.settings.pacs_nodes[0] == server.dimse_url
        dialog.table.selectRow(0)
        dialog.retrieve_button.click()
        qtbot.waitUntil(lambda: win.current_root == str(retrieval_root()), timeout=TIMEOUT_MS)
        _idle(qtbot, win)
        dialog.grab().save(str(tmp_path / "pacs-dialog.png"))
        got = sorted(retrieval_root().rglob("*.dcm"))
        assert {pydicom.dcmread(p).SOPInstanceUID for p in got} >= {
            pydicom.dcmread(p).SOPInstanceUID for p in sent}
        assert stat.S_IMODE(retrieval_root().stat().st_mode) == 0o700
        assert all(win.tree.instance_item(str(p)) is not None for p in got)
        dialog.close()
    finally:
        server.stop()


def test_the_query_form_searches_by_accession_number(qtbot, make_viewer_window,
                                                     tmp_path: Path) -> None:
    """The form had no accession field, though the issue's query names one."""
    from orthanc_support import start_orthanc

    from pneumoview.core.pacs import transfer
    from pneumoview.core.pacs.nodes import parse_node

    server = start_orthanc(tmp_path / "orthanc")
    try:
        node = parse_node(server.dimse_url)
        assert not transfer.send(node, _films(tmp_path / "a", "ACC-1", 1,
                                              AccessionNumber="A1001")).failed
        assert not transfer.send(node, _films(tmp_path / "b", "ACC-2", 1,
                                              AccessionNumber="A2002")).failed
        win = make_viewer_window(show=False)
        win.pacs.open_dialog()
        dialog = win.pacs.dialog
        dialog.node.setEditText(server.dimse_url)
        dialog.accession.setText("A2002")  # no other field: the accession alone narrows it
        dialog.search_button.click()
        qtbot.waitUntil(lambda: dialog.job is None, timeout=TIMEOUT_MS)
        assert dialog.table.rowCount() == 1, dialog.status.text()
        assert dialog.table.item(0, 0).text() == "ACC-2"
        assert dialog.table.item(0, 3).text() == "A2002"
        dialog.close()
    finally:
        server.stop()


def test_cancel_stops_a_search_against_a_silent_peer(qtbot, make_viewer_window) -> None:
    import socket

    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        win = make_viewer_window(show=False)
        win.settings.pacs_timeout_s = 5
        win.pacs.open_dialog()
        dialog = win.pacs.dialog
        dialog.node.setEditText(f"dicom://SILENT@127.0.0.1:{silent.getsockname()[1]}")
        dialog.patient_id.setText("X")
        dialog.search_button.click()
        assert dialog.cancel_button.isEnabled() and not dialog.search_button.isEnabled()
        dialog.cancel_button.click()
        qtbot.waitUntil(lambda: dialog.job is None, timeout=TIMEOUT_MS)
        assert dialog.search_button.isEnabled()
        dialog.close()


def test_save_ai_result_as_dicom(qtbot, make_viewer_window, model_dir: Path,
                                 tmp_path: Path) -> None:
    from dicomout_support import sr_measurements

    _films(tmp_path / "films", "GUI-SAVE", n=1)
    win = make_viewer_window(model=model_dir)
    win.open_path(str(tmp_path / "films"))
    _idle(qtbot, win)
    prediction = win.ai.current_prediction()
    assert prediction is not None and prediction.scored
    out = tmp_path / "results"
    win.pacs.save_result(str(out))
    qtbot.waitUntil(lambda: out.exists() and len(list(out.iterdir())) == 2, timeout=TIMEOUT_MS)
    _idle(qtbot, win)
    sr = next(p for p in out.iterdir()
              if pydicom.dcmread(p).SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33")
    assert sr_measurements(sr)["Probability"][0] == pytest.approx(prediction.probability,
                                                                 abs=5e-7)
    inside = tmp_path / "films" / "results"
    win.pacs.save_result(str(inside))
    _idle(qtbot, win)
    assert not inside.exists()


def test_send_ai_result_to_pacs(qtbot, make_viewer_window, model_dir: Path,
                                tmp_path: Path) -> None:
    from orthanc_support import start_orthanc

    server = start_orthanc(tmp_path / "orthanc")
    try:
        _films(tmp_path / "films", "GUI-SEND", n=1)
        win = make_viewer_window(model=model_dir)
        win.open_path(str(tmp_path / "films"))
        _idle(qtbot, win)
        win.pacs.send_result(server.dicomweb_url)
        _idle(qtbot, win)
        classes = sorted(server.rest(f"/instances/{i}/simplified-tags")["SOPClassUID"]
                         for i in server.rest("/instances"))
        assert classes == ["1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.33"]
    finally:
        server.stop()
