"""``pneumoview listen``: a Storage SCP on loopback that files, scores and reports what
arrives, survives malformed input, refuses unknown calling AE titles, and logs no patient data."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pneumoview.cli import main
from pneumoview.core import report as rep
from pneumoview.core.pacs import dimse
from pneumoview.core.pacs.audit import AuditLog
from pneumoview.core.pacs.listen import ListenService, ScoreOptions
from pneumoview.core.pacs.nodes import PacsError, parse_node
from pneumoview.core.pacs.scp import ServerOptions
from tests.support.dicom_factory import make_dataset, save

PATIENT_ID = "LISTEN-PID-4711"
PATIENT_NAME = "Secret^Patient"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.model_fixture import make_random_model_dir

    return make_random_model_dir(tmp_path_factory.mktemp("model") / "m", seed=4)


def _films(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(1)
    study = pydicom.uid.generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    return [save(make_dataset(rng.integers(0, 255, (128, 112)).astype(np.uint8),
                              PatientID=PATIENT_ID, PatientName=PATIENT_NAME,
                              StudyInstanceUID=study, ViewPosition="PA"),
                 folder / f"f{i}.dcm") for i in range(n)]


def _malformed(folder: Path) -> Path:
    """A file whose meta header and SOP Common UIDs are valid and whose dataset then breaks
    (an element claiming more bytes than the file has)."""
    good = pydicom.dcmread(_films(folder / "m", 1)[0])
    head = pydicom.Dataset()
    head.SOPClassUID, head.SOPInstanceUID = good.SOPClassUID, good.SOPInstanceUID
    head.file_meta = good.file_meta
    path = folder / "malformed.dcm"
    head.save_as(path, enforce_file_format=True)
    with open(path, "ab") as fh:
        fh.write(b"\x10\x00\x10\x00PN\xff\x7f" + b"\x9c" * 300)
    return path


def _send_raw(port: int, path: Path) -> int:
    """Send a file as it is (pynetdicom reads only its meta header; the dataset bytes go as
    they are): what a broken modality does. Returns the C-STORE status."""
    from pynetdicom import AE
    from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation

    ae = AE(ae_title="SENDER2")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation,
                             pydicom.uid.ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="PVLISTEN")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        assoc.release()


def _service(tmp_path: Path, model_dir: Path | None, timeout_s: float = 60.0,
             **score: object) -> ListenService:
    server = ServerOptions(out=tmp_path / "in", ae_title="PVLISTEN", port=0,
                           allowed_aes=("SENDER", "SENDER2"), timeout_s=timeout_s)
    options = None if model_dir is None else ScoreOptions(
        report=tmp_path / "r.csv", model_dir=str(model_dir), quiet_s=0.5, **score)
    return ListenService(server, options, AuditLog(tmp_path / "audit" / "a.jsonl"))


def _node(service: ListenService) -> object:
    return parse_node(f"dicom://PVLISTEN@127.0.0.1:{service.server.port}")


def test_receive_score_and_report_with_a_malformed_dataset_beside(tmp_path: Path,
                                                                  model_dir: Path) -> None:
    films = _films(tmp_path / "src", 3)
    bad = _malformed(tmp_path)
    service = _service(tmp_path, model_dir, dicom_out=tmp_path / "results")
    service.start()
    try:
        node = _node(service)
        statuses: list[int] = []
        other = threading.Thread(
            target=lambda: statuses.append(_send_raw(service.server.port, bad)))
        other.start()
        sent = dimse.store(node, films, "SENDER")
        other.join(timeout=60)
        assert not sent.failed and len(sent.done) == 3
        assert statuses == [0]  # filed as received; the batch engine judges it
        assert service.wait_idle(240)
    finally:
        service.stop()
    received = sorted((tmp_path / "in").iterdir())
    assert len(received) == 4  # the malformed one is kept, named by its UID, not lost
    rows = rep.read_report(tmp_path / "r.csv")
    statuses = sorted(r["status"] for r in rows)
    assert statuses == ["error", "scored", "scored", "scored"], rows
    assert len(list((tmp_path / "results").iterdir())) == 6  # SR + SC per scored film
    assert not list((tmp_path / ".in.incoming").iterdir())  # nothing left half-written


def test_audit_log_has_no_patient_data(tmp_path: Path) -> None:
    service = _service(tmp_path, None)
    service.start()
    try:
        assert not dimse.store(_node(service), _films(tmp_path / "src", 2), "SENDER").failed
    finally:
        service.stop()
    text = (tmp_path / "audit" / "a.jsonl").read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    assert [e["event"] for e in entries].count("received") == 2
    sop_uids = [pydicom.dcmread(p).SOPInstanceUID for p in (tmp_path / "in").iterdir()]
    for secret in (PATIENT_ID, "Secret", *sop_uids):
        assert secret not in text


def test_an_unknown_calling_ae_is_rejected_and_logged(tmp_path: Path) -> None:
    service = _service(tmp_path, None)
    service.start()
    try:
        with pytest.raises(PacsError, match="rejected"):
            dimse.echo(_node(service), "INTRUDER")
        assert dimse.echo(_node(service), "SENDER") > 0
    finally:
        service.stop()
    events = [json.loads(x) for x in (tmp_path / "audit" / "a.jsonl").read_text().splitlines()]
    assert any(e["event"] == "association_rejected" and e["peer_ae"] == "INTRUDER"
               for e in events)
    assert not (tmp_path / "in").exists() or not list((tmp_path / "in").iterdir())


def test_garbage_on_the_socket_does_not_stop_the_server(tmp_path: Path) -> None:
    service = _service(tmp_path, None, timeout_s=3.0)
    service.start()
    try:
        for payload in (b"\x01\x00\x00\x00\xff\xff" + b"A" * 64, b"GET / HTTP/1.0\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", service.server.port), 5) as s:
                s.sendall(payload)
                s.settimeout(5)
                try:
                    s.recv(100)
                except (TimeoutError, ConnectionError):
                    pass
        assert dimse.echo(_node(service), "SENDER") > 0
    finally:
        service.stop()


def test_listen_binds_loopback_and_needs_allowed_aes(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoview.cli import build_parser
    from pneumoview.commands.listen import build_service

    assert main(["listen", "--port", "0", "--out", str(tmp_path / "in")]) == 2
    assert "no calling AE title is allowed" in capsys.readouterr().err
    args = build_parser().parse_args(["listen", "--port", "0", "--out", str(tmp_path / "in"),
                                      "--allow-ae", "SENDER"])
    service = build_service(args)
    assert service.server.options.host == "127.0.0.1"
    assert main(["listen", "--port", "0", "--out", str(tmp_path / "in"), "--allow-ae", "S",
                 "--flag", str(tmp_path / "in" / "r.csv")]) == 2


def test_retention_deletes_only_old_received_files(tmp_path: Path) -> None:
    import os
    import time

    server = ServerOptions(out=tmp_path / "in", port=0, allowed_aes=("SENDER",),
                           retain_days=2)
    service = ListenService(server, None, AuditLog(tmp_path / "a.jsonl"))
    (tmp_path / "in").mkdir()
    old, new = tmp_path / "in" / "1.2.3.dcm", tmp_path / "in" / "1.2.4.dcm"
    for f in (old, new):
        f.write_bytes(b"x")
    three_days_ago = time.time() - 3 * 86400
    os.utime(old, (three_days_ago, three_days_ago))
    assert service.expire() == 1
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["1.2.4.dcm"]
    assert '"event": "expired"' in (tmp_path / "a.jsonl").read_text()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_dicom_tls_verifies_the_peer_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = ServerOptions(out=tmp_path / "in", port=0, allowed_aes=("SENDER",),
                           tls_cert=str(cert), tls_key=str(key), timeout_s=5)
    service = ListenService(server, None, AuditLog(tmp_path / "a.jsonl"))
    service.start()
    try:
        node = parse_node(f"dicom+tls://PNEUMOVIEW@127.0.0.1:{service.server.port}")
        assert dimse.echo(node, "SENDER", ca_file=str(cert)) > 0
        films = _films(tmp_path / "src", 1)
        assert not dimse.store(node, films, "SENDER", ca_file=str(cert)).failed
        with pytest.raises(PacsError):  # the system CAs do not know this certificate
            dimse.echo(node, "SENDER", dimse.Timeouts.uniform(5))
    finally:
        service.stop()
    assert len(list((tmp_path / "in").iterdir())) == 1


def test_the_listen_command_receives_and_stops_on_sigterm(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from orthanc_support import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "pneumoview", "listen", "--port", str(port), "--out",
           str(tmp_path / "in"), "--allow-ae", "SENDER", "--audit-log", str(tmp_path / "a.log")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        node = parse_node(f"dicom://PNEUMOVIEW@127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while True:
            try:
                dimse.echo(node, "SENDER", dimse.Timeouts.uniform(2))
                break
            except PacsError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.3)
        assert not dimse.store(node, _films(tmp_path / "src", 1), "SENDER").failed
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "received" in err and "127.0.0.1" in err and PATIENT_ID not in err
    assert len(list((tmp_path / "in").iterdir())) == 1


def _raw_pdata(assoc: object, command: bytes) -> None:
    """Send one P-DATA-TF whose single PDV is ``command`` as a last command fragment: what a
    peer with a broken DIMSE encoder sends."""
    import struct

    context_id = assoc.accepted_contexts[0].context_id  # type: ignore[attr-defined]
    pdv = bytes([context_id, 0x03]) + command
    assoc.dul.socket.send(b"\x04\x00" + struct.pack(">I", 4 + len(pdv))  # type: ignore[attr-defined]
                          + struct.pack(">I", len(pdv)) + pdv)


def _malformed_traffic(port: int, film: Path) -> None:
    """Four bad exchanges from SENDER2: an abort, bytes that are no PDU, an undecodable
    command set and a C-STORE whose SOP Instance UID cannot name a file."""
    import contextlib
    import time
    import warnings

    from pynetdicom import AE
    from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation

    ae = AE(ae_title="SENDER2")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation,
                             pydicom.uid.ExplicitVRLittleEndian)
    ae.associate("127.0.0.1", port, ae_title="PVLISTEN").abort()
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.settimeout(5)
        with contextlib.suppress(OSError):  # the server may close or just drop it
            s.recv(100)
    assoc = ae.associate("127.0.0.1", port, ae_title="PVLISTEN")
    _raw_pdata(assoc, b"\x00\x00\x00\x00\x04\x00\x00\x00zzzz")  # no CommandField
    deadline = time.monotonic() + 30
    while assoc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assoc.abort()
    bad = pydicom.dcmread(film)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad.SOPInstanceUID = "1.2.not..a-uid"
    assoc = ae.associate("127.0.0.1", port, ae_title="PVLISTEN")
    try:
        with warnings.catch_warnings():  # pydicom warns while encoding the bad UID
            warnings.simplefilter("ignore")
            assert int(assoc.send_c_store(bad).Status) == 0xC000
    finally:
        assoc.release()


def _incident_rows(report: Path) -> list[dict[str, str]]:
    return [r for r in rep.read_report(report) if r["relpath"].startswith("dicom-peer://")]


# pynetdicom's reader thread dies on the undecodable command set (its traceback is expected)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_malformed_associations_each_get_an_error_row_kept_across_restarts(
        tmp_path: Path, model_dir: Path) -> None:
    """A broken peer's association used to reach the audit log only: no report row."""
    films = _films(tmp_path / "src", 2)
    service = _service(tmp_path, model_dir, timeout_s=10.0)
    service.start()
    try:
        assert not dimse.store(_node(service), films[:1], "SENDER").failed
        _malformed_traffic(service.server.port, films[1])
        assert service.wait_idle(240)
    finally:
        service.stop()
    rows = _incident_rows(tmp_path / "r.csv")
    messages = sorted(r["message"] for r in rows)
    assert len(rows) == 4, messages
    assert all(r["status"] == "error" for r in rows)
    for needle in ("aborted the association (A-ABORT)", "not a valid DICOM PDU",
                   "could not be decoded", "C-STORE refused: cannot name a file"):
        assert sum(needle in m for m in messages) == 1, (needle, messages)
    assert sum("from SENDER2 at 127.0.0.1:" in m for m in messages) == 3
    assert sum("from (no AE title) at 127.0.0.1:" in m for m in messages) == 1
    assert [r["status"] for r in rep.read_report(tmp_path / "r.csv")].count("scored") == 1
    events = [json.loads(x)["event"] for x in (tmp_path / "audit" / "a.jsonl").read_text()
              .splitlines()]
    assert events.count("incident") == 4
    # a restarted listener's next round rewrites the report: the incidents stay in it
    again = _service(tmp_path, model_dir)
    again.start()
    try:
        assert not dimse.store(_node(again), films[1:], "SENDER").failed
        assert again.wait_idle(240)
    finally:
        again.stop()
    assert sorted(r["message"] for r in _incident_rows(tmp_path / "r.csv")) == messages
    assert [r["status"] for r in rep.read_report(tmp_path / "r.csv")].count("scored") == 2
