"""A Storage SCP (``pneumoview listen``): files what peers send into a private folder.

Bound to loopback unless configured; accepts only the calling AE titles it is given (an
association from any other is rejected, and logged); answers C-ECHO. Each object is written
byte for byte as received, named by its SOP Instance UID (:mod:`.storage`), and announced to
``on_stored`` (the scorer). A malformed dataset is still filed, so the batch engine reports it
as an error row rather than losing it; an object that cannot be filed and an association that
ends badly are :class:`~.incidents.Incident` s (:meth:`StorageServer.incidents`).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pynetdicom import AE, evt

from pneumoview.core import defaults
from pneumoview.core.pacs import storage
from pneumoview.core.pacs.audit import AuditLog
from pneumoview.core.pacs.dimse import TransferOutcome, Verification
from pneumoview.core.pacs.incidents import AssociationTracker, Incident
from pneumoview.core.pacs.nodes import PacsError, check_ae_title

LOOPBACK = defaults.LISTEN_HOST


@dataclass(frozen=True)
class ServerOptions:
    out: Path
    ae_title: str = defaults.CALLING_AE
    port: int = defaults.LISTEN_PORT  # 0: any free port (tests)
    host: str = LOOPBACK
    allowed_aes: tuple[str, ...] = ()
    allow_any_ae: bool = False
    tls_cert: str | None = None  # PEM certificate and key: DICOM TLS
    tls_key: str | None = None
    timeout_s: float = 60.0
    retain_days: float | None = None  # received files older than this are deleted

    def __post_init__(self) -> None:
        check_ae_title(self.ae_title, "--ae-title")
        for title in self.allowed_aes:
            check_ae_title(title, "allowed calling AE")
        if not self.allowed_aes and not self.allow_any_ae:
            raise PacsError("no calling AE title is allowed: give --allow-ae AET (or configure "
                            "listen_allowed_aes), or --allow-any-ae to accept every peer")


def staging_folder(out: Path) -> Path:
    """Where objects are written before they are renamed into ``out``: beside it (the same
    file system), never inside it (``out`` is scanned while objects arrive)."""
    out = Path(out).absolute()
    return out.parent / f".{out.name}.incoming"


def _peer(event: Any) -> tuple[str, str]:
    assoc = event.assoc
    title = str(getattr(assoc.requestor, "ae_title", "") or "").strip()
    address = str(getattr(assoc.requestor, "address", "") or "")
    return title, address


class StorageServer:
    """Start with :meth:`start`, stop with :meth:`stop` (joins pynetdicom's threads)."""

    def __init__(self, options: ServerOptions, audit: AuditLog,
                 on_stored: Callable[[Path], None] | None = None,
                 on_incident: Callable[[], None] | None = None) -> None:
        self.options = options
        self.audit = audit
        self.on_stored = on_stored
        self.on_incident = on_incident  # something may have gone wrong: sweep soon
        self.outcome = TransferOutcome()
        self.tracker = AssociationTracker()
        self._server: Any = None

    @property
    def port(self) -> int:
        if self._server is None:
            return self.options.port
        return int(self._server.server_address[1])

    def _ae(self) -> AE:
        ae = AE(ae_title=self.options.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.options.timeout_s
        ae.add_supported_context(Verification)
        for cx in storage.retrieve_contexts():
            ae.add_supported_context(cx.abstract_syntax, cx.transfer_syntax)
        if not self.options.allow_any_ae:
            ae.require_calling_aet = list(self.options.allowed_aes)
        return ae

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.options.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.options.tls_cert, self.options.tls_key)
        return context

    def start(self) -> None:
        handlers: list[Any] = [
            (evt.EVT_C_STORE, storage.store_handler(self.options.out, self.outcome,
                                                    self._stored, self._refused,
                                                    staging_folder(self.options.out))),
            (evt.EVT_REJECTED, self._rejected), (evt.EVT_ACCEPTED, self._accepted),
            (evt.EVT_ABORTED, self._aborted), (evt.EVT_CONN_CLOSE, self._closed),
            *self.tracker.handlers(),
        ]
        try:
            self._server = self._ae().start_server(
                (self.options.host, self.options.port), block=False,
                ssl_context=self._ssl(), evt_handlers=handlers)
        except OSError as exc:
            raise PacsError(f"cannot listen on {self.options.host}:{self.options.port} "
                            f"({exc.strerror or exc})") from None
        self.audit.write("listening", service=f"{self.options.ae_title}@"
                         f"{self.options.host}:{self.port}")

    def incidents(self, join_s: float = 0.0) -> list[Incident]:
        """Objects refused and associations ended badly since the last call (audited)."""
        found = self.tracker.sweep(join_s)
        for incident in found:
            self.audit.write("incident", peer_ae=incident.peer_ae, peer=incident.peer,
                             reason=incident.reason[:300])
        return found

    @property
    def busy(self) -> bool:
        """Associations open, or incidents not yet taken."""
        return self.tracker.busy

    def stop(self) -> None:
        self.tracker.stop()
        if self._server is not None:
            active = list(self._server.active_associations)
            for assoc in active:  # a peer that went quiet must not keep a thread for minutes
                assoc.abort()
            self._server.shutdown()
            for assoc in active:
                assoc.join(timeout=10)
            self._server = None
            self.audit.write("stopped", count=len(self.outcome.done))

    # -- events (pynetdicom's threads) ----------------------------------------------------
    def _stored(self, path: Path, event: Any) -> None:
        title, address = _peer(event)
        self.audit.write("received", peer_ae=title, peer=address,
                         sop_class=_class_name(event), object=storage.uid_digest(path.stem))
        self.tracker.stored(event)
        if self.on_stored is not None:
            self.on_stored(path)

    def _refused(self, reason: str, event: Any) -> None:
        title, address = _peer(event)
        self.audit.write("refused", peer_ae=title, peer=address, reason=reason)
        uid = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
        self.tracker.refused(event, reason, uid)
        if self.on_incident is not None:
            self.on_incident()

    def _closed(self, event: Any) -> None:
        if self.on_incident is not None:
            self.on_incident()

    def _rejected(self, event: Any) -> None:
        title, address = _peer(event)
        self.audit.write("association_rejected", peer_ae=title, peer=address,
                         reason="calling AE title not allowed or no common context")

    def _accepted(self, event: Any) -> None:
        title, address = _peer(event)
        self.audit.write("association_accepted", peer_ae=title, peer=address)

    def _aborted(self, event: Any) -> None:
        title, address = _peer(event)
        self.audit.write("association_aborted", peer_ae=title, peer=address)


def _class_name(event: Any) -> str:
    uid = getattr(event.request, "AffectedSOPClassUID", "")
    name = getattr(uid, "name", "") or str(uid)
    return str(name)[:64]
