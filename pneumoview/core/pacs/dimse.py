"""DIMSE as a service class user (pynetdicom): C-ECHO, C-STORE, C-FIND and C-GET.

Each call opens one association with the time limits of :class:`Timeouts`, polls ``cancel``
between messages (a cancelled transfer aborts the association; files already written are
complete, each written atomically) and releases the association however the call ends.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, build_role, evt

from pneumoview.core.pacs import storage
from pneumoview.core.pacs.nodes import DEFAULT_CALLING_AE, PacsError, PacsNode, check_ae_title
from pneumoview.core.pacs.query import StudyMatch, StudyQuery

#: The SOP classes of the service calls (pynetdicom makes its names at run time).
Verification = UID("1.2.840.10008.1.1")
StudyRootQueryRetrieveInformationModelFind = UID("1.2.840.10008.5.1.4.1.2.2.1")
StudyRootQueryRetrieveInformationModelGet = UID("1.2.840.10008.5.1.4.1.2.2.3")

Cancel = Callable[[], bool]
Progress = Callable[[int, int], None]  # (done, total); total 0 when not known yet
#: Most presentation contexts one association may propose (PS3.8: odd IDs 1-255).
MAX_CONTEXTS = 128
SUCCESS = 0x0000
#: C-STORE warning statuses: the peer kept the object (coerced, or elements discarded).
STORE_WARNINGS = (0x0001, 0xB000, 0xB006, 0xB007)
PENDING = (0xFF00, 0xFF01)


@dataclass(frozen=True)
class Timeouts:
    """Seconds: TCP connect, association set-up/release, each DIMSE answer, network idle."""

    connect_s: float = 10.0
    acse_s: float = 30.0
    dimse_s: float = 60.0
    network_s: float = 60.0

    @classmethod
    def uniform(cls, seconds: float) -> Timeouts:
        return cls(connect_s=min(seconds, 10.0), acse_s=seconds, dimse_s=seconds,
                   network_s=seconds)


@dataclass
class TransferOutcome:
    """What a send or retrieve did: files done, failures (what, reason), cancelled."""

    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False


def _ae(calling_ae: str, timeouts: Timeouts) -> AE:
    ae = AE(ae_title=check_ae_title(calling_ae or DEFAULT_CALLING_AE, "calling AE"))
    ae.connection_timeout = timeouts.connect_s
    ae.acse_timeout = timeouts.acse_s
    ae.dimse_timeout = timeouts.dimse_s
    ae.network_timeout = timeouts.network_s
    return ae


def tls_args(node: PacsNode, ca_file: str | None = None) -> tuple[Any, str] | None:
    """The client side of DICOM TLS: the peer's certificate verified (system CAs or
    ``ca_file``) and its host name checked."""
    if not node.tls:
        return None
    import ssl

    context = ssl.create_default_context(cafile=ca_file)
    return context, node.host


@contextlib.contextmanager
def associate(node: PacsNode, ae: AE, *, ext_neg: list[Any] | None = None,
              evt_handlers: Sequence[Any] | None = None,
              ca_file: str | None = None) -> Iterator[Any]:
    """An established association with ``node`` (released or aborted on exit)."""
    if node.kind != "dimse":
        raise PacsError(f"{node.label} is not a DICOM (DIMSE) node")
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, ext_neg=ext_neg,
                         evt_handlers=list(evt_handlers or []), tls_args=tls_args(node, ca_file))
    if not assoc.is_established:
        raise PacsError(_why_not(assoc, node))
    try:
        yield assoc
    finally:
        if assoc.is_established:
            with contextlib.suppress(Exception):
                assoc.release()
        if assoc.is_alive():
            assoc.abort()


def _why_not(assoc: Any, node: PacsNode) -> str:
    if assoc.is_rejected:
        return (f"{node.label} rejected the association (check the called and calling AE "
                "titles and that this node is configured on the peer)")
    if assoc.is_aborted:
        return f"{node.label} aborted the association"
    return f"no association with {node.label} (not reachable, or no answer in time)"


def echo(node: PacsNode, calling_ae: str = "", timeouts: Timeouts = Timeouts(),
         ca_file: str | None = None) -> float:
    """C-ECHO; the round trip in milliseconds, or PacsError."""
    ae = _ae(calling_ae, timeouts)
    ae.add_requested_context(Verification)
    t0 = time.perf_counter()
    with associate(node, ae, ca_file=ca_file) as assoc:
        status = assoc.send_c_echo()
    _check_status(status, node, "C-ECHO")
    return (time.perf_counter() - t0) * 1000


def _check_status(status: Dataset, node: PacsNode, what: str) -> int:
    if not status or "Status" not in status:
        raise PacsError(f"{node.label}: no answer to {what} in time (or the association "
                        "was lost)")
    code = int(status.Status)
    if code != SUCCESS and code not in PENDING:
        raise PacsError(f"{node.label} answered {what} with status 0x{code:04X}")
    return code


# --------------------------------------------------------------------------------------------
# C-STORE


def _header(path: Path) -> Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
        "SOPClassUID", "SOPInstanceUID"])


def _contexts_for(classes: dict[str, set[str]]) -> list[Any]:
    out = []
    for sop_class, syntaxes in classes.items():
        wanted = list(dict.fromkeys([*sorted(syntaxes), ExplicitVRLittleEndian,
                                     ImplicitVRLittleEndian]))
        out.append(build_context(sop_class, wanted))
    return out


def plan_store(paths: Sequence[Path]) -> tuple[list[tuple[Path, str, str]],
                                               list[tuple[str, str]]]:
    """(path, SOP class, transfer syntax) of each DICOM file, and the files that cannot be
    sent (not DICOM, no SOP class), each with its reason."""
    plan, bad = [], []
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            sop_class = str(ds.SOPClassUID)
            syntax = str(ds.file_meta.TransferSyntaxUID)
        except (OSError, AttributeError, pydicom.errors.InvalidDicomError, ValueError,
                KeyError) as exc:
            bad.append((str(path), f"not a DICOM file that can be sent ({type(exc).__name__})"))
            continue
        plan.append((Path(path), sop_class, syntax))
    return plan, bad


def store(node: PacsNode, paths: Sequence[Path], calling_ae: str = "",
          timeouts: Timeouts = Timeouts(), cancel: Cancel = lambda: False,
          progress: Progress | None = None, ca_file: str | None = None) -> TransferOutcome:
    """C-STORE each file (one association per at most :data:`MAX_CONTEXTS` SOP classes)."""
    plan, bad = plan_store(paths)
    outcome = TransferOutcome(failed=bad)
    by_class: dict[str, list[tuple[Path, str, str]]] = {}
    for item in plan:
        by_class.setdefault(item[1], []).append(item)
    classes = list(by_class)
    total = len(plan)
    for start in range(0, len(classes), MAX_CONTEXTS):
        chunk = classes[start:start + MAX_CONTEXTS]
        items = [item for c in chunk for item in by_class[c]]
        _store_chunk(node, items, calling_ae, timeouts, cancel, progress, outcome, total,
                     ca_file)
        if outcome.cancelled:
            break
    return outcome


def _store_chunk(node: PacsNode, items: list[tuple[Path, str, str]], calling_ae: str,
                 timeouts: Timeouts, cancel: Cancel, progress: Progress | None,
                 outcome: TransferOutcome, total: int, ca_file: str | None) -> None:
    ae = _ae(calling_ae, timeouts)
    classes: dict[str, set[str]] = {}
    for _, sop_class, syntax in items:
        classes.setdefault(sop_class, set()).add(syntax)
    ae.requested_contexts = _contexts_for(classes)
    with associate(node, ae, ca_file=ca_file) as assoc:
        for i, (path, _, _) in enumerate(items):
            if cancel():
                outcome.cancelled = True
                assoc.abort()
                return
            reason = _store_one(assoc, path, node)
            if reason:
                outcome.failed.append((str(path), reason))
            else:
                outcome.done.append(str(path))
            if progress is not None:
                progress(len(outcome.done) + len(outcome.failed), total)
            if not assoc.is_established:
                outcome.failed.extend((str(p), f"the association with {node.label} was lost")
                                      for p, _, _ in items[i + 1:])
                return


def _store_one(assoc: Any, path: Path, node: PacsNode) -> str:
    """"" when stored, else why not."""
    try:
        ds = pydicom.dcmread(path)
        status = assoc.send_c_store(ds)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        return f"cannot read the file ({type(exc).__name__})"
    except ValueError as exc:  # no accepted presentation context for this class/syntax
        return f"{node.label} accepts no transfer syntax for this file ({exc})"
    except (RuntimeError, AttributeError) as exc:
        return f"cannot send the file ({type(exc).__name__}: {exc})"
    if not status or "Status" not in status:
        return f"no answer from {node.label} in time"
    code = int(status.Status)
    if code == SUCCESS or code in STORE_WARNINGS:
        return ""
    return f"{node.label} refused the object (status 0x{code:04X})"


# --------------------------------------------------------------------------------------------
# C-FIND and C-GET


def find_studies(node: PacsNode, query: StudyQuery, calling_ae: str = "",
                 timeouts: Timeouts = Timeouts(), cancel: Cancel = lambda: False,
                 limit: int = 1000, ca_file: str | None = None) -> list[StudyMatch]:
    """C-FIND (Study Root) at STUDY level; at most ``limit`` matches (the rest cancelled)."""
    ae = _ae(calling_ae, timeouts)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    matches: list[StudyMatch] = []
    with associate(node, ae, ca_file=ca_file) as assoc:
        responses = assoc.send_c_find(query.identifier(),
                                      StudyRootQueryRetrieveInformationModelFind)
        for status, identifier in responses:
            code = _check_status(status, node, "C-FIND")
            if code in PENDING and identifier is not None:
                matches.append(StudyMatch.from_dataset(identifier))
            if cancel() or len(matches) >= limit:
                assoc.abort()
                break
    return matches


def get_study(node: PacsNode, study_uid: str, out: Path, calling_ae: str = "",
              timeouts: Timeouts = Timeouts(), cancel: Cancel = lambda: False,
              progress: Progress | None = None, ca_file: str | None = None) -> TransferOutcome:
    """C-GET a whole study into ``out`` (one file per instance, named by its UID)."""
    ae = _ae(calling_ae, timeouts)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    contexts = storage.retrieve_contexts()
    for cx in contexts:
        ae.add_requested_context(cx.abstract_syntax, cx.transfer_syntax)
    roles = [build_role(cx.abstract_syntax, scp_role=True) for cx in contexts]
    outcome = TransferOutcome()
    handlers = [(evt.EVT_C_STORE, storage.store_handler(out, outcome))]
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    with associate(node, ae, ext_neg=roles, evt_handlers=handlers, ca_file=ca_file) as assoc:
        for status, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet):
            if not status or "Status" not in status:
                raise PacsError(f"{node.label}: no answer to C-GET in time")
            code = int(status.Status)
            remaining = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
            if progress is not None:
                progress(len(outcome.done), len(outcome.done) + remaining)
            if code not in PENDING:
                _final_get_status(code, status, node, outcome)
            if cancel():
                outcome.cancelled = True
                assoc.abort()
                break
    return outcome


def _final_get_status(code: int, status: Dataset, node: PacsNode,
                      outcome: TransferOutcome) -> None:
    failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
    if code == SUCCESS:
        return
    if code in (0xB000,) or failed:
        outcome.failed.append((node.label, f"{failed} instances of the study were not "
                               "delivered (a storage class or transfer syntax not offered?)"))
        return
    if code == 0xFE00:
        outcome.cancelled = True
        return
    raise PacsError(f"{node.label} answered C-GET with status 0x{code:04X}")


def files_in(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files named, and the files below folders named (sorted), links not followed."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(f for f in path.rglob("*") if f.is_file() and not f.is_symlink()))
        else:
            out.append(path)
    return out

