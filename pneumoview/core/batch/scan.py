"""The files a batch run flags: every regular file under the root, minus its own outputs."""

from __future__ import annotations

import os
from collections.abc import Callable
from os import PathLike
from pathlib import Path

from pneumoview.core import report as rep
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.walk import iter_files


class _OwnOutputs:
    """The files the scan must not read: the report being written, its manifest and lock, their
    temporary files."""

    def __init__(self, output: str | None) -> None:
        self.names: dict[str, str] = {}
        self.prefixes: tuple[str, ...] = ()
        self.folder = ""
        if output is None:
            return
        out = Path(output)
        for p in (out, rep.manifest_path(out), rep.lock_path(out)):
            self.names[p.name] = os.path.realpath(p)
        self.prefixes = tuple(f".{name}.tmp-" for name in self.names)
        self.folder = os.path.realpath(out.parent)

    def __contains__(self, path: str) -> bool:
        name = os.path.basename(path)
        if name in self.names:
            return os.path.realpath(path) == self.names[name]
        if self.prefixes and name.startswith(self.prefixes):
            return os.path.realpath(os.path.dirname(path)) == self.folder
        return False


class ScanCancelled(Exception):
    """The scan was asked to stop (a cancelled GUI batch over a huge archive)."""


#: ``(path, relpath, reason, is_folder)`` of what the scan met but cannot flag.
ScanIssue = tuple[str, str, str, bool]


def scan(root: str | PathLike[str], output: str | PathLike[str] | None = None,
         follow_symlinks: bool = True,
         cancel: Callable[[], bool] | None = None,
         issues: list[ScanIssue] | None = None) -> list[tuple[str, str]]:
    """``(absolute path, '/'-separated relpath)`` of every regular file under ``root``, sorted.

    Uses the symlink-loop-safe walk of :mod:`pneumoview.core.walk`; skips the report being
    written (and its manifest, lock and temporary files) when it lies inside ``root``. What
    cannot be flagged is appended to ``issues``: folders that cannot be listed (relpath ending
    in ``/``), dangling links and special files (FIFOs, sockets, devices: only ``stat``-ed, never
    opened). ``cancel()`` is polled every 500 files (:class:`ScanCancelled`).
    """
    root_s = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root_s):
        raise PneumoViewError("not a folder (or not found)", root_s)
    own = _OwnOutputs(None if output is None else os.path.abspath(os.fspath(output)))
    found: list[ScanIssue] = []

    def on_issue(path: str, reason: str, is_folder: bool) -> None:
        if is_folder and os.path.abspath(path) == root_s:
            raise PneumoViewError(f"{reason}; nothing to flag", root_s)
        ap = os.path.abspath(path)
        if ap in own:
            return
        rel = os.path.relpath(ap, root_s).replace(os.sep, "/") + ("/" if is_folder else "")
        found.append((ap, rel, reason, is_folder))

    files = []
    for i, p in enumerate(iter_files(root_s, follow_symlinks=follow_symlinks,
                                     on_issue=on_issue)):
        if cancel is not None and i % 500 == 499 and cancel():
            raise ScanCancelled
        ap = os.path.abspath(p)
        if ap in own:
            continue
        rel = os.path.relpath(ap, root_s).replace(os.sep, "/")
        files.append((ap, rel))
    files.sort(key=lambda t: t[1])
    if issues is not None:
        issues.extend(sorted(found, key=lambda t: t[1]))
    return files
