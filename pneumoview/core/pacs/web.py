"""DICOMweb (dicomweb-client): STOW-RS to send, QIDO-RS to query, WADO-RS to retrieve.

TLS certificates are verified (requests' default, or ``ca_file``); a URL with credentials is
refused by :func:`nodes.parse_node`, so none reach a log. Every request has a time limit;
``cancel`` is polled between instances.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from pneumoview.core.dicomout.output import part10_bytes, write_raw
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.pacs.dimse import Cancel, Progress, TransferOutcome, plan_store
from pneumoview.core.pacs.nodes import PacsError, PacsNode
from pneumoview.core.pacs.query import StudyMatch, StudyQuery
from pneumoview.core.pacs.storage import uid_digest  # also quiets identifying loggers


def client(node: PacsNode, timeout_s: float = 60.0, ca_file: str | None = None) -> Any:
    """A DICOMwebClient for ``node`` with certificate checks on."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    if node.kind != "web":
        raise PacsError(f"{node.label} is not a DICOMweb URL")
    session = requests.Session()
    session.verify = ca_file or True
    session.trust_env = False  # no proxy or netrc credentials picked up behind the user's back
    return DICOMwebClient(node.url, session=session, timeout=(min(timeout_s, 10.0), timeout_s))


def _failure(node: PacsNode, what: str, exc: BaseException) -> PacsError:
    """A requests/HTTP failure as a message naming the node, never the response body."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    detail = f"HTTP {status}" if status else type(exc).__name__
    return PacsError(f"{node.label}: {what} failed ({detail})")


def _http_errors() -> tuple[type[BaseException], ...]:
    import requests

    return (requests.RequestException, OSError, ValueError)


def stow(node: PacsNode, paths: Sequence[Path], timeout_s: float = 60.0,
         cancel: Cancel = lambda: False, progress: Progress | None = None,
         ca_file: str | None = None) -> TransferOutcome:
    """STOW-RS each file (one request per file, so one bad file fails alone)."""
    plan, bad = plan_store(paths)
    outcome = TransferOutcome(failed=bad)
    web = client(node, timeout_s, ca_file)
    for path, _, _ in plan:
        if cancel():
            outcome.cancelled = True
            break
        try:
            answer = web.store_instances([pydicom.dcmread(path)])
        except _http_errors() as exc:
            outcome.failed.append((str(path), _failure(node, "STOW-RS", exc).reason))
        else:
            if "FailedSOPSequence" in answer and len(answer.FailedSOPSequence):
                outcome.failed.append((str(path), f"{node.label} refused the object"))
            else:
                outcome.done.append(str(path))
        if progress is not None:
            progress(len(outcome.done) + len(outcome.failed), len(plan))
    return outcome


def search_studies(node: PacsNode, query: StudyQuery, timeout_s: float = 60.0,
                   limit: int = 1000, ca_file: str | None = None) -> list[StudyMatch]:
    """QIDO-RS studies matching ``query``."""
    web = client(node, timeout_s, ca_file)
    try:
        found = web.search_for_studies(search_filters=query.qido_filters(), limit=limit,
                                       fields=["NumberOfStudyRelatedInstances",
                                               "ModalitiesInStudy", "StudyDescription"])
    except _http_errors() as exc:
        raise _failure(node, "QIDO-RS", exc) from None
    return [StudyMatch.from_dataset(Dataset.from_json(item)) for item in found]


def retrieve_study(node: PacsNode, study_uid: str, out: Path, timeout_s: float = 60.0,
                   cancel: Cancel = lambda: False, progress: Progress | None = None,
                   ca_file: str | None = None) -> TransferOutcome:
    """WADO-RS every instance of a study into ``out`` (QIDO-RS lists them first, so the
    progress has a total and a cancel stops between instances)."""
    web = client(node, timeout_s, ca_file)
    try:
        listed = web.search_for_instances(study_instance_uid=study_uid, get_remaining=True)
    except _http_errors() as exc:
        raise _failure(node, "QIDO-RS", exc) from None
    instances = [Dataset.from_json(item) for item in listed]
    outcome = TransferOutcome()
    for ds in instances:
        if cancel():
            outcome.cancelled = True
            break
        series, sop = str(ds.get("SeriesInstanceUID", "")), str(ds.get("SOPInstanceUID", ""))
        try:
            got = web.retrieve_instance(study_uid, series, sop)
            outcome.done.append(str(write_raw(part10_bytes(got), sop, out)))
        except _http_errors() as exc:
            outcome.failed.append((uid_digest(sop), _failure(node, "WADO-RS", exc).reason))
        except PneumoViewError as exc:  # a UID that cannot name a file
            outcome.failed.append((uid_digest(sop), exc.reason))
        if progress is not None:
            progress(len(outcome.done) + len(outcome.failed), len(instances))
    return outcome
