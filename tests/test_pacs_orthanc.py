"""The PACS against a real server: Orthanc on loopback (skips where it is not installed).

send, pull (by patient ID, over DIMSE and over DICOMweb) and the AI result objects sent both
ways and read back from Orthanc; no mocks on the network path."""

from __future__ import annotations

import stat
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from orthanc_support import Orthanc, start_orthanc

from pneumoview.cli import main
from pneumoview.core.pacs import transfer
from pneumoview.core.pacs.nodes import parse_node
from pneumoview.core.pacs.query import StudyQuery
from tests.support.dicom_factory import make_dataset, save

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Orthanc:
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


def _study(folder: Path, patient_id: str, n: int = 3, seed: int = 0) -> list[Path]:
    """``n`` films of one study of ``patient_id`` (two series)."""
    rng = np.random.default_rng(seed)
    study, series = pydicom.uid.generate_uid(), [pydicom.uid.generate_uid() for _ in range(2)]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        arr = rng.integers(0, 255, (96, 80)).astype(np.uint8)
        ds = make_dataset(arr, PatientID=patient_id, StudyInstanceUID=study,
                          SeriesInstanceUID=series[i % 2], InstanceNumber=i + 1,
                          ViewPosition="PA", AccessionNumber=f"A{patient_id}")
        out.append(save(ds, folder / f"img{i}.dcm"))
    return out


def _same_objects(sent: list[Path], got: Path) -> None:
    """Every sent object arrived: named by its UID, same attributes and pixel data."""
    files = sorted(got.iterdir())
    assert len(files) == len(sent)
    by_uid = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in sent}
    for f in files:
        ds = pydicom.dcmread(f)
        assert f.name == f"{ds.SOPInstanceUID}.dcm"
        original = by_uid[ds.SOPInstanceUID]
        for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns"):
            assert ds.get(keyword) == original.get(keyword), keyword
        assert ds.PixelData == original.PixelData
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(got.stat().st_mode) == 0o700


@pytest.mark.parametrize("protocol", ["dimse", "web"])
def test_echo(orthanc: Orthanc, protocol: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = orthanc.dimse_url if protocol == "dimse" else orthanc.dicomweb_url
    assert main(["echo", url]) == 0
    assert "answered" in capsys.readouterr().out


@pytest.mark.parametrize("protocol", ["dimse", "web"])
def test_send_then_pull_by_patient_id(orthanc: Orthanc, tmp_path: Path, protocol: str) -> None:
    url = orthanc.dimse_url if protocol == "dimse" else orthanc.dicomweb_url
    patient = f"PULL-{protocol}"
    sent = _study(tmp_path / "src", patient)
    assert main(["send", str(tmp_path / "src"), "--to", url, "-q"]) == 0
    out = tmp_path / "pulled"
    assert main(["pull", "--from", url, "--patient-id", patient, "--out", str(out), "-q"]) == 0
    _same_objects(sent, out)


def test_pull_over_dimse_what_was_sent_over_dicomweb(orthanc: Orthanc, tmp_path: Path) -> None:
    sent = _study(tmp_path / "src", "CROSS", seed=4)
    assert main(["send", *map(str, sent), "--to", orthanc.dicomweb_url, "-q"]) == 0
    assert main(["pull", "--from", orthanc.dimse_url, "--accession", "ACROSS",
                 "--out", str(tmp_path / "out"), "-q"]) == 0
    _same_objects(sent, tmp_path / "out")


def test_flag_results_sent_both_ways_read_back_from_orthanc(orthanc: Orthanc, tmp_path: Path,
                                                            ) -> None:
    from dicomout_support import sr_measurements

    from pneumoview.core import report as rep
    from tests.support.model_fixture import make_random_model_dir

    model = make_random_model_dir(tmp_path / "model", seed=2)
    _study(tmp_path / "films", "RESULTS", n=2, seed=7)
    report, results = tmp_path / "r.csv", tmp_path / "results"
    assert main(["flag", str(tmp_path / "films"), "-o", str(report), "--model", str(model),
                 "--workers", "1", "-q", "--dicom-out", str(results)]) == 0
    objects = sorted(results.iterdir())
    assert len(objects) == 4
    half = len(objects) // 2
    assert main(["send", *map(str, objects[:half]), "--to", orthanc.dimse_url, "-q"]) == 0
    assert main(["send", *map(str, objects[half:]), "--to", orthanc.dicomweb_url, "-q"]) == 0
    stored = orthanc.instance_files()
    probability = {r["sop_instance_uid"]: float(r["probability"])
                   for r in rep.read_report(report)}
    for f in objects:
        ds = pydicom.dcmread(f)
        # Orthanc keeps the dataset as sent (it rewrites only the file meta header)
        assert pydicom.dcmread(BytesIO(stored[ds.SOPInstanceUID])) == ds
        if ds.SOPClassUID == SR_CLASS:
            source = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[
                0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            assert sr_measurements(f)["Probability"][0] == probability[source]


def test_query_and_cancelled_retrieve(orthanc: Orthanc, tmp_path: Path) -> None:
    sent = _study(tmp_path / "src", "CANCEL", n=3, seed=9)
    node = parse_node(orthanc.dimse_url)
    assert not transfer.send(node, sent).failed
    (match,) = transfer.find(node, StudyQuery(patient_id="CANCEL"))
    assert match.instances == 3 and match.modalities == "DX"
    outcome = transfer.retrieve(node, match.study_uid, tmp_path / "out", cancel=lambda: True)
    assert outcome.cancelled
    web = parse_node(orthanc.dicomweb_url)
    outcome = transfer.retrieve(web, match.study_uid, tmp_path / "web", cancel=lambda: True)
    assert outcome.cancelled and not outcome.done


def test_pull_refuses_a_folder_of_other_files(orthanc: Orthanc, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["pull", "--from", orthanc.dimse_url, "--patient-id", "X", "--out",
                 str(out)]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_refused_object_is_named_with_its_reason(orthanc: Orthanc, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    good = _study(tmp_path / "src", "MIXED", n=1)
    assert main(["send", str(junk), *map(str, good), "--to", orthanc.dimse_url, "-q"]) == 1
    err = capsys.readouterr().err
    assert "junk.dcm" in err and "not a DICOM file" in err and "1 of 2 files stored" in err


def test_listen_scores_and_forwards_the_results_to_the_pacs(orthanc: Orthanc,
                                                            tmp_path: Path) -> None:
    """A modality sends a study to ``listen``; its SRs and Secondary Captures reach Orthanc."""
    from pneumoview.core.pacs import dimse
    from pneumoview.core.pacs.audit import AuditLog
    from pneumoview.core.pacs.listen import ListenService, ScoreOptions
    from pneumoview.core.pacs.scp import ServerOptions
    from tests.support.model_fixture import make_random_model_dir

    model = make_random_model_dir(tmp_path / "model", seed=6)
    films = _study(tmp_path / "src", "FORWARD", n=2, seed=11)
    before = set(orthanc.rest("/instances"))  # type: ignore[arg-type]
    service = ListenService(
        ServerOptions(out=tmp_path / "in", port=0, allowed_aes=("MODALITY",)),
        ScoreOptions(report=tmp_path / "r.csv", model_dir=str(model), quiet_s=0.5,
                     dicom_out=tmp_path / "results", forward=parse_node(orthanc.dimse_url)),
        AuditLog(tmp_path / "audit.jsonl"))
    service.start()
    try:
        node = parse_node(f"dicom://PNEUMOVIEW@127.0.0.1:{service.server.port}")
        assert not dimse.store(node, films, "MODALITY").failed
        assert service.wait_idle(240)
    finally:
        service.stop()
    new = set(orthanc.rest("/instances")) - before  # type: ignore[arg-type]
    classes = sorted(orthanc.rest(f"/instances/{i}/simplified-tags")["SOPClassUID"]  # type: ignore[index]
                     for i in new)
    assert classes == sorted([SR_CLASS] * 2 + ["1.2.840.10008.5.1.4.1.1.7"] * 2)
    events = (tmp_path / "audit.jsonl").read_text()
    assert '"event": "sent"' in events and "FORWARD" not in events
