"""PACS nodes as users write them: parsed, checked, refused with a reason (no network)."""

from __future__ import annotations

import pytest

from pneumoview.cli import main
from pneumoview.core.pacs.nodes import PacsError, check_ae_title, parse_node
from pneumoview.core.pacs.query import StudyQuery


def test_dimse_node() -> None:
    node = parse_node("dicom://ORTHANC@127.0.0.1:4242")
    assert (node.kind, node.ae_title, node.host, node.port, node.tls) == (
        "dimse", "ORTHANC", "127.0.0.1", 4242, False)
    assert parse_node("dicom+tls://PACS@pacs.example.org:2762").tls
    assert node.label == "dicom://ORTHANC@127.0.0.1:4242"


def test_web_node() -> None:
    node = parse_node("https://pacs.example.org/dicom-web/")
    assert (node.kind, node.url, node.port, node.tls) == (
        "web", "https://pacs.example.org/dicom-web", 443, True)


@pytest.mark.parametrize("text, phrase", [
    ("ftp://x", "not a PACS node"),
    ("dicom://127.0.0.1:4242", "called AE title"),
    ("dicom://PACS@host", "needs a port"),
    ("dicom://PACS@host:99999", "port"),
    ("dicom://A_TITLE_LONGER_THAN_16@host:104", "not a valid AE title"),
    ("dicom://PA\\CS@host:104", "not a valid AE title"),
    ("https://user:secret@pacs.example.org/dicom-web", "password"),
    ("dicom://PACS:secret@host:104", "no password"),
])
def test_bad_nodes_are_refused_with_a_reason(text: str, phrase: str) -> None:
    with pytest.raises(PacsError, match=phrase):
        parse_node(text)


def test_credentials_never_reach_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["echo", "https://user:hunter2@pacs.example.org/dicom-web"]) == 2
    assert "hunter2" not in capsys.readouterr().err


def test_ae_titles() -> None:
    assert check_ae_title(" STORESCU ") == "STORESCU"
    for bad in ("", "   ", "x" * 17, "A\nB"):
        with pytest.raises(PacsError):
            check_ae_title(bad)


def test_an_unbounded_query_is_refused() -> None:
    with pytest.raises(PacsError, match="every study"):
        StudyQuery(modality="DX")
    with pytest.raises(PacsError, match="YYYYMMDD"):
        StudyQuery(date_from="2024-01-01")
    assert StudyQuery(date_from="20240101").identifier().StudyDate == "20240101-"


def test_echo_to_a_closed_port_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    from orthanc_support import free_port

    port = free_port()
    assert main(["echo", f"dicom://NOBODY@127.0.0.1:{port}", "--timeout", "3"]) == 1
    assert f"dicom://NOBODY@127.0.0.1:{port}" in capsys.readouterr().err


def test_network_libraries_log_no_identifiers_even_at_debug(caplog: pytest.LogCaptureFixture,
                                                            tmp_path) -> None:
    """A C-FIND for a patient, with the root logger at DEBUG: nothing logs the patient ID."""
    import logging

    from orthanc_support import free_port

    from pneumoview.core.pacs import dimse

    caplog.set_level(logging.DEBUG)
    secret = "PID-SHOULD-NOT-BE-LOGGED"
    with pytest.raises(PacsError):
        dimse.find_studies(parse_node(f"dicom://NOBODY@127.0.0.1:{free_port()}"),
                           StudyQuery(patient_id=secret), timeouts=dimse.Timeouts.uniform(2))
    assert secret not in caplog.text
    for name in ("pynetdicom", "dicomweb_client", "urllib3.connectionpool"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING
