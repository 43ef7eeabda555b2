"""``pneumoview listen``: the Storage SCP plus a scorer that runs the batch engine on what
arrives, writes the AI result objects and sends them on.

The scorer is one thread that owns the model (an :class:`~pneumoview.core.inference.Engine`
is used from one thread). It wakes when an object arrives, waits for a quiet moment
(:attr:`ScoreOptions.quiet_s`) so a study arrives whole, then runs the batch engine over the
receive folder with ``resume``: rows of files already scored are kept, new files are scored
and appended, and a malformed file becomes an error row, as does each network incident (an
object that could not be filed, an association that ended badly: :mod:`.incidents`), which
the report keeps across rounds and restarts. New scored rows get their SR and
Secondary Capture (``dicom_out``), which are then sent to ``forward``. Files older than the
retention limit are deleted from the receive folder between rounds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.pacs.audit import AuditLog
from pneumoview.core.pacs.incidents import is_incident_row
from pneumoview.core.pacs.nodes import PacsNode
from pneumoview.core.pacs.scp import ServerOptions, StorageServer
from pneumoview.core.pacs.transfer import Connection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreOptions:
    report: Path
    model_dir: str | None = None
    device: str = "auto"
    dicom_out: Path | None = None
    forward: PacsNode | None = None
    connection: Connection = Connection()
    quiet_s: float = 2.0


class ListenService:
    """The server and (with ``score``) the scorer; :meth:`start`, then :meth:`stop`."""

    def __init__(self, server: ServerOptions, score: ScoreOptions | None,
                 audit: AuditLog) -> None:
        self.audit = audit
        self.score = score
        self.server = StorageServer(server, audit, on_stored=self._arrived,
                                    on_incident=self._maybe_incident)
        self.retain_days = server.retain_days
        self.out = Path(server.out)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._files_arrived = False
        self.rounds = 0
        self.errors: list[str] = []
        #: incident rows of the report (earlier runs' and this one's): every round writes them
        self.incident_rows: list[dict[str, Any]] = []
        self._unwritten = False

    def start(self) -> None:
        if self.score is not None:
            self.incident_rows = _incident_rows(self.score.report)
        self.server.start()
        # the thread sweeps ended associations for incidents even when nothing is scored
        self._thread = threading.Thread(target=self._run, name="pneumoview-listen-scorer",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.stop()
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
            self._thread = None

    def wait_idle(self, timeout: float) -> bool:
        """True once everything received so far is scored (for tests and the GUI)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._idle.is_set() and not self._wake.is_set() and not self.server.busy:
                return True
            time.sleep(0.1)
        return False

    @property
    def _retaining(self) -> bool:
        return self.retain_days is not None

    def _arrived(self, path: Path) -> None:
        self._files_arrived = True
        self._maybe_incident()

    def _maybe_incident(self) -> None:
        self._idle.clear()
        self._wake.set()

    # -- the scorer thread ------------------------------------------------------------------
    def _run(self) -> None:
        engine = None
        while not self._stop.is_set():
            # an association whose reader died ends without an event: poll while any is open
            self._wake.wait(timeout=1.0 if self.server.busy else 60.0)
            if self._stop.is_set():
                break
            if self._wake.is_set():
                self._quiet()
            if self.server.busy:
                self._idle.clear()  # until what ended is swept and written
            try:
                self._take_incidents()
                if self._due():
                    engine = engine or self._engine()
                    self._round(engine)
                self.expire()
            except PneumoViewError as exc:
                self.errors.append(exc.reason)
                self.audit.write("error", reason=exc.reason[:300])
            finally:
                if not self._wake.is_set():
                    self._idle.set()
        self._last_round(engine)

    def _take_incidents(self) -> None:
        found = self.server.incidents()
        if found and self.score is not None:
            self.incident_rows.extend(i.row() for i in found)
            self._unwritten = True

    def _due(self) -> bool:
        if self.score is None or not (self._files_arrived or self._unwritten):
            return False
        self._files_arrived = False
        return True

    def _last_round(self, engine: Any) -> None:
        """At stop: incidents not yet in the report are written (nothing new is scored)."""
        self._take_incidents()
        if not self._unwritten or self.score is None:
            return
        written = threading.Event()

        def seen(rows: list[dict[str, Any]]) -> None:
            if any(is_incident_row(r) for r in rows):
                written.set()

        try:
            self._round(engine or self._engine(), cancel=written.is_set, on_rows=seen)
        except PneumoViewError as exc:
            self.audit.write("error", reason=exc.reason[:300])

    def _quiet(self) -> None:
        """Wait until no object arrived for ``quiet_s``."""
        quiet = self.score.quiet_s if self.score is not None else 0.5
        while self._wake.is_set() and not self._stop.is_set():
            self._wake.clear()
            self._stop.wait(quiet)

    def _engine(self) -> Any:
        from pneumoview.core.inference import Engine

        assert self.score is not None
        engine = Engine(self.score.model_dir, self.score.device,
                        with_cam=self.score.dicom_out is not None, interactive=False)
        engine.load()
        return engine

    def _round(self, engine: Any, cancel: Any = None, on_rows: Any = None) -> None:
        from pneumoview.core.batch import BatchOptions, run_batch
        from pneumoview.core.paths import private_dir

        score = self.score
        assert score is not None
        before = self._scored_uids(score.report)
        private_dir(self.out)  # an incident may come before any file
        options = BatchOptions(root=self.out, output=score.report, model_dir=score.model_dir,
                               device=score.device, resume=score.report.exists(), workers=1,
                               quiet=True, extra_rows=tuple(self.incident_rows))
        summary = run_batch(options, engine=engine, cancel=cancel or self._stop.is_set,
                            on_rows=on_rows)
        self._unwritten = False
        self.rounds += 1
        self.audit.write("scored", count=summary.run_counts.get("scored", 0),
                         status=f"{summary.run_counts.get('error', 0)} errors, "
                                f"{summary.run_flagged} flagged")
        if score.dicom_out is not None and not summary.cancelled:
            self._results(engine, score, before)

    @staticmethod
    def _scored_uids(report: Path) -> set[str]:
        from pneumoview.core import report as rep

        if not report.exists():
            return set()
        return {r["path"] for r in rep.read_report(report) if r["status"] == "scored"}

    def _results(self, engine: Any, score: ScoreOptions, before: set[str]) -> None:
        from pneumoview.core import report as rep
        from pneumoview.core.dicomout.export import ResultExporter
        from pneumoview.core.pacs import transfer

        rows = [rep.parse_row(r) for r in rep.read_report(score.report)
                if r["status"] == "scored" and r["path"] not in before]
        assert score.dicom_out is not None
        summary = ResultExporter(engine, score.dicom_out, [self.out]).export_rows(
            rows, self._stop.is_set)
        self.audit.write("results_written", count=len(summary.written),
                         status=f"{len(summary.errors)} errors")
        if score.forward is not None and summary.written:
            outcome = transfer.send(score.forward, summary.written, score.connection,
                                    self._stop.is_set)
            self.audit.write("sent", node=score.forward.label, count=len(outcome.done),
                             status=f"{len(outcome.failed)} failed")

    def expire(self) -> int:
        """Delete received files older than the retention limit; how many were deleted."""
        if self.retain_days is None or not self.out.is_dir():
            return 0
        limit = time.time() - self.retain_days * 86400
        removed = 0
        for entry in os.scandir(self.out):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < limit:
                    os.unlink(entry.path)
                    removed += 1
            except OSError as exc:
                log.warning("cannot delete an expired file (%s)", exc.strerror)
        if removed:
            self.audit.write("expired", count=removed)
        return removed


def _incident_rows(report: Path) -> list[dict[str, Any]]:
    """The incident rows an existing report holds (a later round rewrites them)."""
    from pneumoview.core import report as rep

    if not report.exists():
        return []
    try:
        rows = rep.read_report(report)
    except PneumoViewError:
        return []  # the first round says why the report cannot be continued
    return [dict(r) for r in rows if is_incident_row(r)]
