"""Indexing a folder of DICOM files into Patient -> Study -> Series -> Instance.

Only headers are read, never pixel data. The package's modules, in the order a file meets
them:

* :mod:`.folder` -- :func:`index_folder` (the entry point) and :class:`FolderIndexer`, whose
  methods are the steps for one file; the walk itself is :mod:`pneumoview.core.walk`;
* :mod:`.dicomdir` -- the files a DICOMDIR references (never outside its folder);
* :mod:`.readfile` -- one file's header: the fast parser first, then the pydicom path;
* :mod:`.fastheader` over :mod:`.readbuffer` -- the few wanted elements straight from the
  bytes, through a read buffer; :mod:`.pydicomheader` -- the same fields read by pydicom;
  :mod:`.fields` -- the wanted tags and the normalisation both readers share;
* :mod:`.tree` -- grouping into the display tree; :mod:`.records` -- the records;
* :mod:`.files` -- :func:`index_files`, for a list of files rather than a folder.
"""

from __future__ import annotations

from pneumoview.core.indexcache import IndexCache
from pneumoview.core.indexer.files import index_files
from pneumoview.core.indexer.folder import FolderIndexer, index_folder
from pneumoview.core.indexer.readfile import read_instance
from pneumoview.core.indexer.records import (
    DICOMDIR_SOP_CLASS,
    IndexProgress,
    IndexResult,
    Instance,
    Patient,
    Series,
    Study,
)
from pneumoview.core.indexer.tree import build_tree
from pneumoview.core.walk import IssueCallback, iter_files

__all__ = [
    "Instance", "Series", "Study", "Patient", "IndexProgress", "IndexResult", "IndexCache",
    "build_tree", "iter_files", "read_instance", "index_folder", "index_files",
    "FolderIndexer", "DICOMDIR_SOP_CLASS", "IssueCallback",
]
