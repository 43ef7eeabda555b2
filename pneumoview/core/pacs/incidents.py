"""What went wrong on the listener's network side, as report rows.

A Storage SCP sees failures that are no file: a C-STORE it could not file (an unusable SOP
Instance UID, a full disk), an association the peer aborted or dropped mid-transfer, bytes that
are no DICOM PDU, a message pynetdicom could not decode (its reader thread dies and the
association ends without release or abort). Each becomes one :class:`Incident`, which
``pneumoview listen --flag`` writes as an ``error`` row naming the peer and the reason, beside
the rows of the files it received, so nothing that was sent is silently missing.

:class:`AssociationTracker` follows each association through pynetdicom's events (connection,
state-machine transitions, release, rejection) and, once its thread has ended,
:meth:`~AssociationTracker.sweep` says whether it ended badly and why. A released
association, a rejected calling AE title (a policy, in the audit log), a bare TCP probe and the
associations the listener itself aborts while stopping are not incidents.

An incident row's ``relpath`` starts with :data:`INCIDENT_SCHEME`: it names no file under the
receive folder, so a resumed report keeps it only because the listener hands it back
(:func:`is_incident_row`).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pneumoview.core.reportrow import Status

INCIDENT_SCHEME = "dicom-peer://"
#: pynetdicom's state-machine events (DICOM PS3.8 table 9-10) that end an association badly.
_ENDINGS = {
    "Evt15": "the listener aborted the association (a time limit ran out, or no presentation "
             "context was acceptable)",
    "Evt16": "the peer aborted the association (A-ABORT)",
    "Evt17": "the peer closed the connection without releasing the association",
    "Evt18": "the peer sent no valid association request in time",
    "Evt19": "the peer sent data that is not a valid DICOM PDU",
}
_UNDECODED = ("the association broke off without release or abort: a message from the peer "
              "could not be decoded")
_serial = itertools.count(1)


@dataclass(frozen=True)
class Incident:
    """One failure on the network side, named by the peer (AE title and address)."""

    peer_ae: str
    peer: str  # "host:port"
    reason: str
    sop_instance_uid: str = ""  # the refused object's, when it is a plain UID
    when: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S"))
    serial: int = field(default_factory=lambda: next(_serial))

    @property
    def peer_label(self) -> str:
        return f"{self.peer_ae or '(no AE title)'} at {self.peer}"

    def row(self) -> dict[str, Any]:
        """The report cells of this incident (the batch run adds the model's)."""
        where = f"{INCIDENT_SCHEME}{self.peer_ae or '-'}@{self.peer}"
        return {"path": where, "relpath": f"{where}/{self.when}.{self.serial}",
                "status": Status.ERROR, "sop_instance_uid": self.sop_instance_uid,
                "message": f"received from {self.peer_label}: {self.reason}"}


def is_incident_row(row: dict[str, Any]) -> bool:
    return str(row.get("relpath", "")).startswith(INCIDENT_SCHEME)


@dataclass
class _Association:
    assoc: Any
    peer_ae: str = ""
    peer: str = ""
    last_event: str = ""
    events: int = 0
    established: bool = False
    ended_well: bool = False  # released, or rejected (audited as such)
    stored: int = 0


def _peer_of(assoc: Any) -> tuple[str, str]:
    requestor = assoc.requestor
    title = str(getattr(requestor, "ae_title", "") or "").strip()
    return title, f"{getattr(requestor, 'address', '')}:{getattr(requestor, 'port', '')}"


class AssociationTracker:
    """Event handlers for the server (:meth:`handlers`) and the sweep that turns ended
    associations into incidents. Thread-safe: pynetdicom calls from its threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[int, _Association] = {}
        self._found: list[Incident] = []
        self.stopping = False

    def handlers(self) -> list[tuple[Any, Any]]:
        from pynetdicom import evt

        return [(evt.EVT_CONN_OPEN, self._opened), (evt.EVT_FSM_TRANSITION, self._transition),
                (evt.EVT_ESTABLISHED, self._established), (evt.EVT_RELEASED, self._ended_well),
                (evt.EVT_REJECTED, self._ended_well)]

    def _record(self, assoc: Any) -> _Association:
        with self._lock:
            record = self._live.get(id(assoc))
            if record is None:
                record = self._live[id(assoc)] = _Association(assoc)
            return record

    def _opened(self, event: Any) -> None:
        self._record(event.assoc)

    def _transition(self, event: Any) -> None:
        record = self._record(event.assoc)
        record.events += 1
        if event.fsm_event in _ENDINGS and not record.last_event:
            record.last_event = event.fsm_event  # the first ending is the cause

    def _established(self, event: Any) -> None:
        record = self._record(event.assoc)
        record.established = True
        record.peer_ae, record.peer = _peer_of(event.assoc)

    def _ended_well(self, event: Any) -> None:
        self._record(event.assoc).ended_well = True

    def stored(self, event: Any) -> None:
        self._record(event.assoc).stored += 1

    def refused(self, event: Any, reason: str, sop_instance_uid: str) -> None:
        """A C-STORE the listener could not file: an incident at once."""
        from pneumoview.core.dicomout.output import UID_PATTERN

        title, peer = _peer_of(event.assoc)
        uid = sop_instance_uid if UID_PATTERN.match(sop_instance_uid or "") else ""
        with self._lock:
            self._found.append(Incident(title, peer, f"C-STORE refused: {reason}", uid))

    @property
    def busy(self) -> bool:
        """Associations still open, or incidents not yet taken by :meth:`sweep`."""
        with self._lock:
            return bool(self._live or self._found)

    def sweep(self, join_s: float = 0.0) -> list[Incident]:
        """The incidents since the last sweep: refused objects and ended associations."""
        self._collect(join_s)
        with self._lock:
            found, self._found = self._found, []
        return found

    def stop(self) -> None:
        """Judge what has ended, then take no more incidents: the associations the listener
        aborts while stopping are its own doing."""
        self._collect(0.0)
        self.stopping = True

    def _collect(self, join_s: float) -> None:
        with self._lock:
            records = list(self._live.items())
        ended = []
        for key, record in records:
            if join_s and record.assoc.ident is not None:
                record.assoc.join(timeout=join_s)
            if record.assoc.ident is not None and not record.assoc.is_alive():
                ended.append((key, record))
        judged = [self._judge(record) for _, record in ended]
        with self._lock:
            for key, _ in ended:
                self._live.pop(key, None)
            self._found.extend(i for i in judged if i is not None)

    def _judge(self, record: _Association) -> Incident | None:
        if record.ended_well or self.stopping:
            return None
        if not record.peer:
            record.peer_ae, record.peer = _peer_of(record.assoc)
        cause = record.last_event
        if not record.established and cause in ("Evt17", ""):
            return None  # connected and closed without a byte: a port probe
        reason = _ENDINGS.get(cause, _UNDECODED) if cause else _UNDECODED
        if record.established:
            reason += (f"; {record.stored} object(s) filed before, any object then in "
                       "transfer was not received")
        return Incident(record.peer_ae, record.peer, reason)
