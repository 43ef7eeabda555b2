"""Indexing a list of files (Open File, files dropped on the window) rather than a folder."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.indexer.readfile import read_instance
from pneumoview.core.indexer.records import IndexProgress, IndexResult, Instance
from pneumoview.core.indexer.tree import build_tree

__all__ = ["index_files"]


def index_files(
    paths: Sequence[str],
    *,
    on_instances: Callable[[list[Instance]], None],
    cancel: Callable[[], bool],
    progress: Callable[[IndexProgress], None] | None = None,
) -> IndexResult:
    """Read each file's header (no cache, no DICOMDIR following); failures become errors.

    ``on_instances`` gets each instance as it is read; ``cancel`` is polled between files.
    ``progress`` is accepted so that this has the signature of a folder-indexing task, and is
    not called (a handful of files needs none).
    """
    found: list[Instance] = []
    errors: list[tuple[str, str]] = []
    for path in paths:
        if cancel():
            break
        try:
            inst = read_instance(path)
        except PneumoViewError as exc:
            errors.append((path, exc.reason))
            continue
        found.append(inst)
        on_instances([inst])
    root = os.path.dirname(paths[0]) if paths else ""
    return IndexResult(root=root, patients=build_tree(found), instances=found, non_dicom=[],
                       errors=errors, cancelled=cancel(), from_cache=0)
