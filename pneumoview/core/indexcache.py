"""On-disk cache of DICOM header summaries, so reopening a folder costs a ``stat`` per file.

One SQLite table (stdlib :mod:`sqlite3`) maps an absolute path to the file's identity when it
was read (:func:`stat_key`: size, ``mtime_ns``, ``ctime_ns``, inode and device), plus either the
indexed header fields (JSON) or the verdict "not DICOM". An entry is used only while all five
still match: an edited, replaced or rewritten-in-place file is read again, even when the writer
kept its size and restored its mtime (an in-place anonymisation does), because that changes the
ctime. Paths are stored as the bytes the OS gives (``os.fsencode``), so a name that is not valid
UTF-8 is cached like any other.

The cache holds patient names, IDs, birth dates and accession numbers, so it is private: the
file is created 0600 in a 0700 folder (:func:`paths.create_private_file`), whatever the umask;
entries of files that are gone are dropped after each complete walk of their folder, entries not
seen for :data:`PURGE_AFTER_DAYS` days are purged, and :meth:`IndexCache.clear` /
:func:`clear_cache_files` empty it (``pneumoview cache clear``, File > Clear Cache in the app).

The cache is disposable: a corrupt or foreign file is deleted and rebuilt, and any SQLite failure
later on turns the cache off for the rest of the session instead of failing the indexing that
uses it. Nothing patient-identifying is logged.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Bump when the stored fields change meaning: older files are then discarded and rebuilt.
SCHEMA_VERSION = "pv-index-3"
DEFAULT_FILENAME = "index-cache.sqlite3"
#: Entries no indexing has looked at for this long are deleted (a folder deleted or unplugged
#: long ago must not keep its patients' names on disk forever).
PURGE_AFTER_DAYS = 30
_SIDE_SUFFIXES = ("", "-journal", "-wal", "-shm")

#: ``kind`` column values.
KIND_NOT_DICOM = 0
KIND_INSTANCE = 1

StatKey = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device
CachedEntry = tuple[StatKey, int, Any]  # stat key, kind, fields (None: not DICOM)


def stat_key(st: os.stat_result) -> StatKey:
    """What must be unchanged for a cached entry to stand for the file now."""
    return (int(st.st_size), int(st.st_mtime_ns), int(st.st_ctime_ns), int(st.st_ino),
            int(st.st_dev))


def _today() -> int:
    return int(time.time() // 86400)


def default_cache_path() -> Path:
    """The per-user cache file (``$PNEUMOVIEW_CACHE_DIR`` redirects it, e.g. in tests)."""
    from pneumoview.core.paths import cache_dir

    return cache_dir() / DEFAULT_FILENAME


def _key(path: str) -> bytes:
    """A path as the stored key: the OS's bytes (undecodable names survive, surrogateescape)."""
    return os.fsencode(path)


def _prefix_bounds(root: str) -> tuple[bytes, bytes]:
    """Half-open byte range holding every path strictly below ``root`` (an index range scan)."""
    prefix = _key(root if root.endswith(os.sep) else root + os.sep)
    return prefix, prefix[:-1] + bytes([prefix[-1] + 1])


def clear_cache(path: str | os.PathLike[str] | None = None) -> int | None:
    """Delete the cache (file and side files); the number of entries it held, None when there
    was no cache. A cache in use by an indexing run elsewhere keeps working on its own copy
    until it closes; the next run starts a new, empty file."""
    base = Path(path) if path is not None else default_cache_path()
    if not base.exists():
        clear_cache_files(base)
        return None
    with IndexCache(base) as cache:
        entries = cache.stats()["entries"]
    clear_cache_files(base)
    return entries


def clear_cache_files(path: str | os.PathLike[str] | None = None) -> list[Path]:
    """Delete the cache file and its SQLite side files; returns those that existed."""
    base = Path(path) if path is not None else default_cache_path()
    removed = []
    for suffix in _SIDE_SUFFIXES:
        target = Path(str(base) + suffix)
        try:
            target.unlink()
            removed.append(target)
        except FileNotFoundError:
            pass
    return removed


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
        self._pending: list[tuple[Any, ...]] = []
        try:
            self._conn = self._open()
        except (sqlite3.Error, OSError) as exc:
            log.warning("index cache unavailable, indexing without it (%s: %s)",
                        type(exc).__name__, exc)
            self._conn = None

    # -- opening, validation and rebuild ---------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        from pneumoview.core.paths import create_private_file

        create_private_file(self.path)  # SQLite would create it with the umask's mode
        for suffix in _SIDE_SUFFIXES[1:]:  # left by a crash, maybe by an older version
            side = Path(str(self.path) + suffix)
            if side.exists():
                create_private_file(side)
        return sqlite3.connect(str(self.path), timeout=2.0, check_same_thread=False)

    def _open(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            self._ensure_schema(conn)
            self._purge_stale(conn)
            return conn
        except sqlite3.DatabaseError as exc:  # "file is not a database", malformed, old schema
            conn.close()
            log.warning("index cache file is corrupt or outdated; rebuilding it (%s)", exc)
            self._delete_files()
            conn = self._connect()
            self._ensure_schema(conn)
            return conn

    def _delete_files(self) -> None:
        clear_cache_files(self.path)

    @staticmethod
    def _purge_stale(conn: sqlite3.Connection) -> None:
        """Delete entries not seen for PURGE_AFTER_DAYS (at most once a day)."""
        today = _today()
        row = conn.execute("SELECT value FROM meta WHERE key='purged'").fetchone()
        if row is not None and str(row[0]).isdigit() and int(row[0]) >= today:
            return
        conn.execute("DELETE FROM entries WHERE seen < ?", (today - PURGE_AFTER_DAYS,))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('purged', ?)", (str(today),))
        conn.commit()

    @staticmethod
    def _ensure_schema(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA synchronous=NORMAL")  # the first statement that reads the file
        conn.execute("PRAGMA secure_delete=ON")  # deleted entries are zeroed, not left in pages
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is not None and row[0] != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema {row[0]!r}, expected {SCHEMA_VERSION!r}")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS entries (path BLOB PRIMARY KEY, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, ino INTEGER NOT NULL, "
            "dev INTEGER NOT NULL, kind INTEGER NOT NULL, data TEXT, seen INTEGER NOT NULL)")
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
        """Every cached entry strictly below the absolute folder ``root``, in one query (they
        are marked seen today, so the purge keeps folders still in use)."""
        lo, hi = _prefix_bounds(root)
        out: dict[str, CachedEntry] = {}
        today = _today()
        with self._lock:
            if self._conn is None:
                return out
            try:
                rows = self._conn.execute(
                    "SELECT path, size, mtime_ns, ctime_ns, ino, dev, kind, data, seen "
                    "FROM entries WHERE path >= ? AND path < ?", (lo, hi)).fetchall()
                if any(r[8] < today for r in rows):
                    self._conn.execute("UPDATE entries SET seen = ? WHERE path >= ? AND "
                                       "path < ? AND seen < ?", (today, lo, hi, today))
                    self._conn.commit()
            except sqlite3.Error as exc:
                self._disable(exc)
                return out
        for path, size, mtime_ns, ctime_ns, ino, dev, kind, data, _seen in rows:
            entry = self._entry((size, mtime_ns, ctime_ns, ino, dev), kind, data)
            if entry is not None and isinstance(path, bytes):
                out[os.fsdecode(path)] = entry
        return out

    @staticmethod
    def _entry(key: tuple[Any, ...], kind: Any, data: Any) -> CachedEntry | None:
        try:
            fields = json.loads(data) if kind == KIND_INSTANCE else None
            return (tuple(int(v) for v in key), int(kind), fields)  # type: ignore[return-value]
        except (TypeError, ValueError):
            return None  # a damaged row is a miss, the file is read again

    def get(self, path: str, key: StatKey) -> CachedEntry | None:
        """The entry for ``path`` if its :func:`stat_key` is still ``key``, else None."""
        with self._lock:
            if self._conn is None:
                return None
            try:
                row = self._conn.execute(
                    "SELECT size, mtime_ns, ctime_ns, ino, dev, kind, data FROM entries "
                    "WHERE path = ?", (_key(path),)).fetchone()
            except sqlite3.Error as exc:
                self._disable(exc)
                return None
        if row is None:
            return None
        entry = self._entry(row[:5], row[5], row[6])
        return entry if entry is not None and entry[0] == tuple(key) else None

    def stats(self) -> dict[str, int]:
        """Counts for ``pneumoview cache info``: entries, DICOM instances, bytes on disk."""
        out = {"entries": 0, "instances": 0, "bytes": 0}
        for suffix in _SIDE_SUFFIXES:
            try:
                out["bytes"] += os.stat(str(self.path) + suffix).st_size
            except OSError:
                pass
        self.flush()
        with self._lock:
            if self._conn is None:
                return out
            try:
                total, inst = self._conn.execute(
                    "SELECT count(*), coalesce(sum(kind = ?), 0) FROM entries",
                    (KIND_INSTANCE,)).fetchone()
            except sqlite3.Error as exc:
                self._disable(exc)
                return out
        out.update(entries=int(total), instances=int(inst))
        return out

    # -- updates (buffered) ----------------------------------------------------------------
    def put_instance(self, path: str, key: StatKey, fields: Any) -> None:
        self._pending.append((_key(path), *key, KIND_INSTANCE,
                              json.dumps(fields, separators=(",", ":")), _today()))

    def put_not_dicom(self, path: str, key: StatKey) -> None:
        self._pending.append((_key(path), *key, KIND_NOT_DICOM, None, _today()))

    def discard(self, paths: Iterable[str]) -> None:
        """Forget entries (e.g. files that now fail to read), committed with the next flush."""
        self.flush()
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.executemany("DELETE FROM entries WHERE path = ?",
                                       [(_key(p),) for p in paths])
                self._conn.commit()
            except sqlite3.Error as exc:
                self._disable(exc)

    def forget_missing(self, root: str, present: set[str]) -> int:
        """Drop entries below ``root`` whose path is not in ``present`` (deleted files)."""
        self.flush()
        lo, hi = _prefix_bounds(root)
        keep = {_key(p) for p in present}
        with self._lock:
            if self._conn is None:
                return 0
            try:
                stale = [(p,) for (p,) in self._conn.execute(
                    "SELECT path FROM entries WHERE path >= ? AND path < ?", (lo, hi))
                    if p not in keep]
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
                    "INSERT OR REPLACE INTO entries (path, size, mtime_ns, ctime_ns, ino, dev, "
                    "kind, data, seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._conn.commit()
            except sqlite3.Error as exc:
                self._disable(exc)

    def clear(self) -> None:
        """Forget every entry and give the freed pages back (VACUUM: deleted rows' text would
        otherwise stay readable in the file's free pages)."""
        with self._lock:
            self._pending.clear()
            if self._conn is None:
                return
            try:
                self._conn.execute("DELETE FROM entries")
                self._conn.commit()
                self._conn.execute("VACUUM")
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
