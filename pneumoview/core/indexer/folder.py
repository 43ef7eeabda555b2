"""Indexing a folder: :class:`FolderIndexer`, whose methods are the steps for one file (seen
before? a DICOMDIR? in the cache? read it), and :func:`index_folder`, the entry point.

An :class:`~pneumoview.core.indexcache.IndexCache` keyed by path and
:func:`~pneumoview.core.indexcache.stat_key` (size, mtime, ctime, inode, device) makes
reopening a folder a walk plus one ``stat`` per file. Paths are kept exactly as the OS gives
them (a name that is not valid UTF-8 is a str with surrogate escapes, as ``os.fsdecode``
makes). A DICOMDIR is read for the files it references, which may not escape its folder.
Symlink loops are cut by the walk (:mod:`pneumoview.core.walk`). Log messages carry paths at
debug level only, never patient data.
"""

from __future__ import annotations

import logging
import os
import stat as stat_mod
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.indexcache import IndexCache, stat_key
from pneumoview.core.indexer.dicomdir import dicomdir_references, is_dicomdir_name
from pneumoview.core.indexer.readfile import NOT_DICOM, read_file
from pneumoview.core.indexer.records import (
    DICOMDIR_SOP_CLASS,
    INSTANCE_FIELDS,
    IndexProgress,
    IndexResult,
    Instance,
    PathType,
)
from pneumoview.core.indexer.tree import build_tree
from pneumoview.core.walk import walk as _walk

__all__ = ["FolderIndexer", "index_folder"]

log = logging.getLogger(__name__)

_CACHED_FIELDS = INSTANCE_FIELDS[1:-2]  # everything but path, file_size, mtime_ns
_BATCH_SIZE = 256  # instances handed to on_instances at once, at most...
_BATCH_INTERVAL_S = 0.25  # ...or after this long
_FLUSH_EVERY = 500  # headers read between cache flushes

def _file_key(path: str, st: os.stat_result) -> tuple[Any, ...]:
    """Identity of a file, so one reached twice (DICOMDIR + walk, two symlinks) counts once."""
    if st.st_ino:
        return (st.st_dev, st.st_ino)
    return ("path", os.path.normcase(os.path.realpath(path)))


def _instance_from_cache(path: str, values: Any, size: int, mtime_ns: int) -> Instance | None:
    """Rebuild an Instance from its cached value list (None if the entry does not fit)."""
    if not isinstance(values, list) or len(values) != len(_CACHED_FIELDS):
        return None
    return Instance(path, *values, size, mtime_ns)  # type: ignore[call-arg]


def _cache_fields(inst: Instance) -> list[Any]:
    return [getattr(inst, k) for k in _CACHED_FIELDS]


class FolderIndexer:
    """One indexing run over a folder (or a single file); see :func:`index_folder`."""

    def __init__(
        self,
        root: PathType,
        *,
        progress: Callable[[IndexProgress], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        on_instances: Callable[[list[Instance]], None] | None = None,
        cache: IndexCache | None | bool = True,
        follow_symlinks: bool = True,
        progress_every: int = 50,
        progress_interval_s: float = 0.1,
    ) -> None:
        self.t0 = time.perf_counter()
        self.root = os.path.abspath(os.fspath(root))
        if not os.path.exists(self.root):
            raise PneumoViewError("folder not found", self.root)
        self.single_file = os.path.isfile(self.root)
        self.base = os.path.dirname(self.root) if self.single_file else self.root
        self.base_prefix = self.base if self.base.endswith(os.sep) else self.base + os.sep
        self.progress, self.cancel, self.on_instances = progress, cancel, on_instances
        self.cache_option = cache
        self.follow_symlinks = follow_symlinks
        self.progress_every, self.progress_interval_s = progress_every, progress_interval_s

        self.store: IndexCache | None = None
        self.cached: dict[str, Any] = {}
        self.instances: list[Instance] = []
        self.non_dicom: list[str] = []
        self.errors: list[tuple[str, str]] = []
        self.dicomdirs: list[str] = []
        self.seen_keys: set[tuple[Any, ...]] = set()
        self.present: set[str] = set()
        self.files_seen = self.from_cache = self.headers_read = 0
        self.batch: list[Instance] = []
        self.last_progress = self.last_batch = time.monotonic()
        self.cancelled = False
        self.queue: deque[tuple[str, os.stat_result]] = deque()  # DICOMDIR references
        self.walk_state = {"cancelled": False}

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> IndexResult:
        """Walk, index every file, close the cache; the result holds what was found."""
        self._open_store()
        try:
            self._walk_all()
        finally:
            self._close_store()
        self._emit(force=True)
        self._report("", force=True)
        return IndexResult(
            root=self.root, patients=build_tree(self.instances), instances=self.instances,
            non_dicom=self.non_dicom, errors=self.errors, cancelled=self.cancelled,
            from_cache=self.from_cache, headers_read=self.headers_read,
            dicomdirs=self.dicomdirs, elapsed_s=time.perf_counter() - self.t0)

    def _open_store(self) -> None:
        cache = self.cache_option
        if cache is True:
            self.store = IndexCache()
        elif isinstance(cache, IndexCache):
            self.store = cache
        if self.store is not None and not self.store.available:
            self.store = None
        if self.store is not None:
            self.cached = self.store.entries_under(self.base)

    def _close_store(self) -> None:
        if self.store is None:
            return
        self.store.flush()
        if not self.cancelled and not self.single_file:
            self.store.forget_missing(self.base, self.present)
        if self.cache_option is True:
            self.store.close()

    def _walk_all(self) -> None:
        walk: Iterator[tuple[str, os.stat_result]]
        if self.single_file:
            walk = iter([(self.root, os.stat(self.root))])
        else:
            walk = _walk(self.root, self.follow_symlinks, self.cancel, self.walk_state)
        for path, st in walk:
            if self._cancel_requested():
                break
            self._handle(path, st)
            while self.queue:
                if self._cancel_requested():
                    break
                self._handle(*self.queue.popleft())
            if self.cancelled:
                break
        self.cancelled = self.cancelled or self.walk_state["cancelled"]

    def _cancel_requested(self) -> bool:
        if self.cancel is not None and self.cancel():
            self.cancelled = True
        return self.cancelled

    # -- one file --------------------------------------------------------------------------
    def _handle(self, path: str, st: os.stat_result) -> None:
        key = _file_key(path, st)
        if key in self.seen_keys:
            return
        self.seen_keys.add(key)
        self.present.add(path)
        self.files_seen += 1
        rel = path[len(self.base_prefix):] if path.startswith(self.base_prefix) \
            else os.path.relpath(path, self.base)
        self._report(rel)
        if is_dicomdir_name(path):
            self.headers_read += 1  # DICOMDIRs are not cached: small, and read each time
            self._follow_dicomdir(path)
            return
        skey = stat_key(st)
        if not self._take_from_cache(path, st, skey):
            self._read_header(path, st, skey)

    def _take_from_cache(self, path: str, st: os.stat_result, skey: Any) -> bool:
        """Use the cached entry if the file is unchanged; False when it must be read."""
        hit = self.cached.get(path)
        if hit is None or hit[0] != skey:
            return False
        if hit[2] is None:
            self.non_dicom.append(path)
            self.from_cache += 1
            return True
        inst = _instance_from_cache(path, hit[2], st.st_size, st.st_mtime_ns)
        if inst is None:
            return False
        self.from_cache += 1
        self._add_instance(inst)
        return True

    def _read_header(self, path: str, st: os.stat_result, skey: Any) -> None:
        self.headers_read += 1
        try:
            result = read_file(path, st)
        except PneumoViewError as exc:
            self.errors.append((path, exc.reason))
            log.debug("header failed: %s", path)
            return
        if result is NOT_DICOM:
            self.non_dicom.append(path)
            if self.store is not None:
                self.store.put_not_dicom(path, skey)
            return
        assert isinstance(result, Instance)
        if result.sop_class_uid == DICOMDIR_SOP_CLASS:
            self._follow_dicomdir(path)
            return
        if self.store is not None:
            self.store.put_instance(path, skey, _cache_fields(result))
            if self.headers_read % _FLUSH_EVERY == 0:
                self.store.flush()
        self._add_instance(result)

    def _add_instance(self, inst: Instance) -> None:
        self.instances.append(inst)
        self.batch.append(inst)
        self._emit()

    def _follow_dicomdir(self, path: str) -> None:
        self.dicomdirs.append(path)
        try:
            refs, refused = dicomdir_references(path)
        except PneumoViewError as exc:
            self.errors.append((path, f"DICOMDIR unreadable: {exc.reason}"))
            return
        self.errors.extend(refused)
        for ref in refs:
            try:
                st = os.stat(ref)
            except OSError:
                self.errors.append((path, "DICOMDIR refers to a missing file "
                                          f"{os.path.relpath(ref, os.path.dirname(path))!r}"))
                continue
            if stat_mod.S_ISREG(st.st_mode):
                self.queue.append((ref, st))

    # -- callbacks -------------------------------------------------------------------------
    def _report(self, current: str, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if force or self.files_seen % self.progress_every == 0 \
                or now - self.last_progress >= self.progress_interval_s:
            self.last_progress = now
            self.progress(IndexProgress(
                files_seen=self.files_seen, dicom_found=len(self.instances),
                non_dicom=len(self.non_dicom), errors=len(self.errors), current=current))

    def _emit(self, force: bool = False) -> None:
        if self.on_instances is None or not self.batch:
            return
        now = time.monotonic()
        if force or len(self.batch) >= _BATCH_SIZE or now - self.last_batch >= _BATCH_INTERVAL_S:
            self.last_batch = now
            out, self.batch = self.batch, []
            self.on_instances(out)


def index_folder(
    root: PathType,
    *,
    progress: Callable[[IndexProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_instances: Callable[[list[Instance]], None] | None = None,
    cache: IndexCache | None | bool = True,
    follow_symlinks: bool = True,
    progress_every: int = 50,
    progress_interval_s: float = 0.1,
) -> IndexResult:
    """Index every DICOM file below ``root`` (a folder, or a single file) into a tree.

    ``progress`` is called every ``progress_every`` files or ``progress_interval_s`` seconds
    and once at the end; ``cancel`` is polled between files (a cancelled result holds what was
    found so far); ``on_instances`` receives batches of new instances as they are found.
    ``cache``: True uses the per-user cache file, an :class:`IndexCache` uses that one (left
    open), False/None reads every header. Callbacks run in the calling thread (a GUI calls
    this from a worker and forwards them with signals). Files that failed are not cached, so
    they are retried on the next run; a cancelled run keeps what it cached so far.
    """
    return FolderIndexer(
        root, progress=progress, cancel=cancel, on_instances=on_instances, cache=cache,
        follow_symlinks=follow_symlinks, progress_every=progress_every,
        progress_interval_s=progress_interval_s).run()

