"""The folder walk shared by the indexer and the batch engine: regular files below a root.

Symlink-loop safe (each folder is visited once, by device and inode), never opens an entry (a
FIFO cannot block it), and tells what it passes over (a folder it cannot list, a dangling link,
a special file) to an ``on_issue`` callback. Its own module so that the batch engine walks a
folder without importing the indexer.
"""

from __future__ import annotations

import errno
import logging
import os
import stat as stat_mod
from collections.abc import Callable, Iterator
from os import PathLike

log = logging.getLogger(__name__)

PathType = str | PathLike[str]

#: ``on_issue(path, reason, is_folder)``: what the walk passes over and why (a folder it cannot
#: list; a dangling link, a FIFO, a socket, a device). Called as they are met.
IssueCallback = Callable[[str, str, bool], None]


def special_kind(mode: int) -> str:
    if stat_mod.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat_mod.S_ISSOCK(mode):
        return "a socket"
    if stat_mod.S_ISCHR(mode):
        return "a character device"
    if stat_mod.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def _entry_stat(entry: os.DirEntry[str], follow_symlinks: bool,
                on_issue: IssueCallback | None) -> os.stat_result | None:
    """The entry's stat (its target's, for a link), with a real inode; None (told to
    ``on_issue``) for a link not followed or one that cannot be stat-ed."""
    try:
        if entry.is_symlink() and not follow_symlinks:
            if on_issue is not None:
                on_issue(entry.path, "a symbolic link (links are not followed)", False)
            return None
        st = entry.stat(follow_symlinks=True)
    except OSError as exc:
        if on_issue is not None:  # dangling symlink, vanished file
            dangling = entry.is_symlink() and exc.errno in (errno.ENOENT, errno.ELOOP)
            on_issue(entry.path, "a dangling symbolic link (its target does not exist)"
                     if dangling else f"cannot stat it ({exc.strerror or exc})", False)
        return None
    if not st.st_ino and (stat_mod.S_ISDIR(st.st_mode) or stat_mod.S_ISREG(st.st_mode)):
        try:  # Windows DirEntry.stat() leaves st_ino at 0
            st = os.stat(entry.path)
        except OSError:
            return None
    return st


def walk(root: str, follow_symlinks: bool = True, cancel: Callable[[], bool] | None = None,
          state: dict[str, bool] | None = None,
          on_issue: IssueCallback | None = None) -> Iterator[tuple[str, os.stat_result]]:
    """Depth-first walk yielding (path, stat) of regular files, each folder visited once.

    When ``cancel()`` turns true while a folder is listed, the walk stops and sets
    ``state["cancelled"]``. Entries are only ``stat``-ed, never opened (a FIFO cannot block)."""
    try:
        st_root = os.stat(root)
    except OSError:
        return
    visited = {(st_root.st_dev, st_root.st_ino)}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            log.debug("skipping unreadable folder (%s)", type(exc).__name__)
            if on_issue is not None:
                on_issue(folder, f"cannot list this folder ({exc.strerror or exc})", True)
            continue
        subdirs: list[str] = []
        for entry in entries:
            if cancel is not None and cancel():
                if state is not None:
                    state["cancelled"] = True
                return
            st = _entry_stat(entry, follow_symlinks, on_issue)
            if st is None:
                continue
            if stat_mod.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in visited:
                    log.debug("skipping a folder reached twice (symlink loop?)")
                    continue
                visited.add(key)
                subdirs.append(entry.path)
            elif stat_mod.S_ISREG(st.st_mode):
                yield entry.path, st
            elif on_issue is not None:
                on_issue(entry.path, f"{special_kind(st.st_mode)}, not a regular file",
                         False)
        stack.extend(reversed(subdirs))


def iter_files(root: PathType, follow_symlinks: bool = True,
               on_issue: IssueCallback | None = None) -> Iterator[str]:
    """Every regular file below ``root``, recursively, in a stable (sorted) order.

    Symlinked folders are followed once each (visited folders are remembered by device and
    inode), so a link to a parent cannot loop; unreadable folders, special files and dangling
    links are passed over, and told to ``on_issue`` when given.
    """
    for path, _st in walk(os.path.abspath(os.fspath(root)), follow_symlinks,
                           on_issue=on_issue):
        yield path
