"""The audit log of the network services: what was received, refused, scored and sent.

One JSON object per line in a private file (0600 in a 0700 folder), never inside a folder that
is scanned. It holds no patient data: no names, IDs, dates or descriptions; objects are named
by a short digest of their SOP Instance UID (:func:`storage.uid_digest`), peers by AE title and
address, which are the hospital's configuration, not the patient's.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from pneumoview.core.paths import data_dir, private_dir

AUDIT_FILE = "pacs-audit.jsonl"
#: The only keys an entry may have: a new one must be checked for patient data first.
ALLOWED_KEYS = frozenset({"time", "event", "peer_ae", "peer", "sop_class", "object", "status",
                          "reason", "count", "node", "service"})


def default_audit_path() -> Path:
    return data_dir() / AUDIT_FILE


class AuditLog:
    """Appends entries (thread-safe: pynetdicom calls from its association threads)."""

    def __init__(self, path: Path | None = None, echo: Any = None) -> None:
        self.path = Path(path) if path is not None else default_audit_path()
        self.echo = echo  # a text stream that gets one readable line per entry, or None
        self._lock = threading.Lock()
        private_dir(self.path.parent)

    def write(self, event: str, **fields: Any) -> None:
        unknown = set(fields) - ALLOWED_KEYS
        if unknown:
            raise ValueError(f"audit entries have no field {sorted(unknown)}")
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": event,
                 **{k: v for k, v in fields.items() if v not in (None, "")}}
        line = json.dumps(entry, ensure_ascii=True, sort_keys=False)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                         | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                os.write(fd, (line + "\n").encode("ascii"))
            finally:
                os.close(fd)
            if self.echo is not None:
                self.echo.write(_readable(entry) + "\n")
                self.echo.flush()


def _readable(entry: dict[str, Any]) -> str:
    rest = " ".join(f"{k}={v}" for k, v in entry.items() if k not in ("time", "event"))
    return f"{entry['time']} {entry['event']} {rest}".rstrip()
