"""Protocol-neutral PACS calls: the commands and the GUI name a node and get DIMSE or
DICOMweb as the node says, with the same options, outcomes and errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pneumoview.core import defaults
from pneumoview.core.pacs import dimse, web
from pneumoview.core.pacs.dimse import Cancel, Progress, Timeouts, TransferOutcome
from pneumoview.core.pacs.nodes import DEFAULT_CALLING_AE, PacsNode, check_ae_title
from pneumoview.core.pacs.query import StudyMatch, StudyQuery

DEFAULT_TIMEOUT_S = float(defaults.PACS_TIMEOUT_S)


@dataclass(frozen=True)
class Connection:
    """How PneumoView talks to peers: its calling AE title, a time limit, a CA bundle."""

    calling_ae: str = DEFAULT_CALLING_AE
    timeout_s: float = DEFAULT_TIMEOUT_S
    ca_file: str | None = None

    def __post_init__(self) -> None:
        check_ae_title(self.calling_ae, "calling AE")

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts.uniform(self.timeout_s)


def echo(node: PacsNode, conn: Connection = Connection()) -> float:
    """C-ECHO (DIMSE) or a QIDO-RS probe (DICOMweb); round trip in ms."""
    if node.kind == "web":
        import time

        t0 = time.perf_counter()
        web.search_studies(node, StudyQuery(patient_id="*"), conn.timeout_s, limit=1,
                           ca_file=conn.ca_file)
        return (time.perf_counter() - t0) * 1000
    return dimse.echo(node, conn.calling_ae, conn.timeouts, conn.ca_file)


def send(node: PacsNode, paths: Sequence[Path], conn: Connection = Connection(),
         cancel: Cancel = lambda: False, progress: Progress | None = None) -> TransferOutcome:
    if node.kind == "web":
        return web.stow(node, paths, conn.timeout_s, cancel, progress, conn.ca_file)
    return dimse.store(node, paths, conn.calling_ae, conn.timeouts, cancel, progress,
                       conn.ca_file)


def find(node: PacsNode, query: StudyQuery, conn: Connection = Connection(),
         cancel: Cancel = lambda: False) -> list[StudyMatch]:
    if node.kind == "web":
        return web.search_studies(node, query, conn.timeout_s, ca_file=conn.ca_file)
    return dimse.find_studies(node, query, conn.calling_ae, conn.timeouts, cancel,
                              ca_file=conn.ca_file)


def retrieve(node: PacsNode, study_uid: str, out: Path, conn: Connection = Connection(),
             cancel: Cancel = lambda: False,
             progress: Progress | None = None) -> TransferOutcome:
    if node.kind == "web":
        return web.retrieve_study(node, study_uid, out, conn.timeout_s, cancel, progress,
                                  conn.ca_file)
    return dimse.get_study(node, study_uid, out, conn.calling_ae, conn.timeouts, cancel,
                           progress, conn.ca_file)
