"""On-disk cache of DICOM header summaries, so reopening a folder costs a ``stat`` per file.

One SQLite table (stdlib :mod:`sqlite3`) maps an absolute path to the file's size and
``mtime_ns`` when it was read, plus either the indexed header fields (JSON) or the verdict "not
DICOM". An entry is used only while size and mtime still match, so an edited or replaced file is
read again. The cache is disposable: a corrupt or foreign file is deleted and rebuilt, and any
SQLite failure later on turns the cache off for the rest of the session instead of failing the
indexing that uses it. Nothing patient-identifying is logged.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Bump when the stored fields change meaning: older files are then discarded and rebuilt.
SCHEMA_VERSION = "pv-index-2"
DEFAULT_FILENAME = "index-cache.sqlite3"

#: ``kind`` column values.
KIND_NOT_DICOM = 0
KIND_INSTANCE = 1

CachedEntry = tuple[int, int, int, Any]  # size, mtime_ns, kind, fields (None: not DICOM)


def default_cache_path() -> Path:
    """The per-user cache file (``$PNEUMOVIEW_CACHE_DIR`` redirects it, e.g. in tests)."""
    from pneumoview.core.paths import cache_dir

    return cache_dir() / DEFAULT_FILENAME


def _prefix_bounds(root: str) -> tuple[str, str]:
    """Half-open string range holding every path strictly below ``root`` (an index range scan)."""
    prefix = root if root.endswith(os.sep) else root + os.sep
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


class IndexCache:
    """SQLite-backed map ``absolute path -> (size, mtime_ns, header fields | not-DICOM)``.

    Safe to create in one thread and use from one worker thread (a lock serialises access).
    Writes are buffered and committed by :meth:`flush` (``index_folder`` flushes every few
    hundred files and at the end), so a crash loses at most the last unflushed batch.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[str, int, int, int, str | None]] = []
        try:
            self._conn = self._open()
        except (sqlite3.Error, OSError) as exc:
            log.warning("index cache unavailable, indexing without it (%s: %s)",
                        type(exc).__name__, exc)
            self._conn = None

    # -- opening, validation and rebuild ---------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(str(self.path), timeout=2.0, check_same_thread=False)

    def _open(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            self._ensure_schema(conn)
            return conn
        except sqlite3.DatabaseError as exc:  # "file is not a database", malformed, old schema
            conn.close()
            log.warning("index cache file is corrupt or outdated; rebuilding it (%s)", exc)
            self._delete_files()
            conn = self._connect()
            self._ensure_schema(conn)
            return conn

    def _delete_files(self) -> None:
        for suffix in ("", "-journal", "-wal", "-shm"):
            try:
                os.remove(str(self.path) + suffix)
            except FileNotFoundError:
                pass

    @staticmethod
    def _ensure_schema(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA synchronous=NORMAL")  # the first statement that reads the file
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is not None and row[0] != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema {row[0]!r}, expected {SCHEMA_VERSION!r}")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS entries (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, kind INTEGER NOT NULL, data TEXT)")
        if row is None:
            conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        conn.commit()
        # Touch the table so a damaged page shows up now, while we can still rebuild.
        conn.execute("SELECT count(*) FROM (SELECT path FROM entries LIMIT 1)").fetchone()

    def _disable(self, exc: BaseException) -> None:
        log.warning("index cache disabled for this session (%s: %s)", type(exc).__name__, exc)
        conn, self._conn = self._conn, None
        self._pending.clear()
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    @property
    def available(self) -> bool:
        """False when the cache could not be opened or failed later (indexing then reads all)."""
        return self._conn is not None

    # -- queries ---------------------------------------------------------------------------
    def entries_under(self, root: str) -> dict[str, CachedEntry]:
        """Every cached entry strictly below the absolute folder ``root``, in one query."""
        lo, hi = _prefix_bounds(root)
        out: dict[str, CachedEntry] = {}
        with self._lock:
            if self._conn is None:
                return out
            try:
                rows = self._conn.execute(
                    "SELECT path, size, mtime_ns, kind, data FROM entries "
                    "WHERE path >= ? AND path < ?", (lo, hi)).fetchall()
            except sqlite3.Error as exc:
                self._disable(exc)
                return out
        for path, size, mtime_ns, kind, data in rows:
            try:
                fields = json.loads(data) if kind == KIND_INSTANCE else None
            except (TypeError, ValueError):
                continue  # a damaged row is a miss, the file is read again
            out[path] = (int(size), int(mtime_ns), int(kind), fields)
        return out

    def get(self, path: str, size: int, mtime_ns: int) -> CachedEntry | None:
        """The entry for ``path`` if its size and mtime still match, else None."""
        with self._lock:
            if self._conn is None:
                return None
            try:
                row = self._conn.execute(
                    "SELECT size, mtime_ns, kind, data FROM entries WHERE path = ?",
                    (path,)).fetchone()
            except sqlite3.Error as exc:
                self._disable(exc)
                return None
        if row is None or row[0] != size or row[1] != mtime_ns:
            return None
        try:
            fields = json.loads(row[3]) if row[2] == KIND_INSTANCE else None
        except (TypeError, ValueError):
            return None
        return int(row[0]), int(row[1]), int(row[2]), fields

    # -- updates (buffered) ----------------------------------------------------------------
    def put_instance(self, path: str, size: int, mtime_ns: int, fields: Any) -> None:
        self._pending.append((path, size, mtime_ns, KIND_INSTANCE,
                              json.dumps(fields, separators=(",", ":"))))

    def put_not_dicom(self, path: str, size: int, mtime_ns: int) -> None:
        self._pending.append((path, size, mtime_ns, KIND_NOT_DICOM, None))

    def discard(self, paths: Iterable[str]) -> None:
        """Forget entries (e.g. files that now fail to read), committed with the next flush."""
        self.flush()
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.executemany("DELETE FROM entries WHERE path = ?",
                                       [(p,) for p in paths])
                self._conn.commit()
            except sqlite3.Error as exc:
                self._disable(exc)

    def forget_missing(self, root: str, present: set[str]) -> int:
        """Drop entries below ``root`` whose path is not in ``present`` (deleted files)."""
        self.flush()
        lo, hi = _prefix_bounds(root)
        with self._lock:
            if self._conn is None:
                return 0
            try:
                stale = [(p,) for (p,) in self._conn.execute(
                    "SELECT path FROM entries WHERE path >= ? AND path < ?", (lo, hi))
                    if p not in present]
                if stale:
                    self._conn.executemany("DELETE FROM entries WHERE path = ?", stale)
                    self._conn.commit()
                return len(stale)
            except sqlite3.Error as exc:
                self._disable(exc)
                return 0

    def flush(self) -> None:
        """Commit buffered writes; a failure (disk full, locked) only disables the cache."""
        with self._lock:
            if not self._pending or self._conn is None:
                self._pending.clear()
                return
            rows, self._pending = self._pending, []
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO entries (path, size, mtime_ns, kind, data) "
                    "VALUES (?, ?, ?, ?, ?)", rows)
                self._conn.commit()
            except sqlite3.Error as exc:
                self._disable(exc)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
            if self._conn is None:
                return
            try:
                self._conn.execute("DELETE FROM entries")
                self._conn.commit()
            except sqlite3.Error as exc:
                self._disable(exc)

    def close(self) -> None:
        self.flush()
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> IndexCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
