"""Opening and indexing: File > Open Folder / Open File(s) / Open Recent / Open Demo / Clear
Index Cache, drops, the command line's paths and side-by-side files.

:class:`OpenController` reads a folder (or files) with the indexer on the runner's ``index``
lane; the job reports through its signals only (it never touches a widget) and the study tree
fills as batches arrive. Only the newest index counts: results of one a newer open replaced are
dropped. Every message goes to the window's one sink (``report`` / ``report_error``).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMenu, QProgressBar

from pneumoview.core.decoderprocess import is_codec_syntax
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.indexer import IndexProgress, IndexResult, Instance, index_files, index_folder
from pneumoview.core.paths import display_path
from pneumoview.core.settings import MAX_RECENT, save_settings
from pneumoview.qt.plaintext import menu_text
from pneumoview.qt.studytree import INSTANCE_ROLE
from pneumoview.qt.viewportgrid import Layout
from pneumoview.qt.workers import Job

if TYPE_CHECKING:
    from pneumoview.qt.mainwindow import MainWindow

log = logging.getLogger("pneumoview.viewer")

MAX_LOGGED_INDEX_ERRORS = 50


class OpenController(QObject):
    """What the window opens and the index job that reads it (``window.opener``)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self._index_job: Job | None = None
        self._placement: list[str] = []  # files waiting for their viewports (side by side)
        self.recent_menu = QMenu("Open &Recent", window)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.setRange(0, 0)
        self.progress.setTextVisible(False)
        self.progress.hide()

    # -- asking the user ---------------------------------------------------------------------
    def choose_folder(self) -> None:
        settings = self.window.settings
        start = settings.recent_folders[0] if settings.recent_folders else ""
        path = QFileDialog.getExistingDirectory(self.window, "Open Folder", start)
        if path:
            self.open_folder(path)

    def choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self.window, "Open DICOM File(s)", "",
                                                "DICOM (*.dcm *.dicom *.DCM);;All files (*)")
        if paths:
            self.open_files(paths)

    def rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        folders = self.window.settings.recent_folders
        for path in folders[:MAX_RECENT]:
            act = self.recent_menu.addAction(menu_text(path))
            act.triggered.connect(lambda _=False, p=path: self.open_path(p))
        self.recent_menu.setEnabled(bool(folders))

    def clear_index_cache(self) -> None:
        """File > Clear Index Cache: delete the per-user cache of indexed headers."""
        from pneumoview.core.indexcache import clear_cache

        try:
            entries = clear_cache()
        except OSError as exc:
            self.window.report_error(f"cannot clear the index cache: {exc.strerror or exc}")
            return
        self.window.report("the index cache was empty" if entries is None
                           else f"index cache cleared ({entries} files forgotten)")

    # -- what to open --------------------------------------------------------------------------
    def open_demo(self) -> None:
        from pneumoview.core.demo import prepare_demo

        try:
            path = prepare_demo()
        except PneumoViewError as exc:
            self.window.report_error(str(exc))
            return
        self.open_folder(str(path))

    def open_path(self, path: str) -> None:
        """A folder or a file, from the command line or a drop."""
        if os.path.isdir(path):
            self.open_folder(path)
        elif os.path.exists(path):
            self.open_files([path])
        else:
            self.window.report_error(f"{path}: not found (moved, deleted or a network folder "
                                     "that is not connected?)")

    def open_dropped(self, paths: list[str]) -> None:
        folders = [p for p in paths if os.path.isdir(p)]
        if folders:
            self.open_folder(folders[0])
        else:
            self.open_files(paths)

    def open_folder(self, path: str) -> None:
        """Index ``path`` in the background; the tree fills as files are found."""
        w = self.window
        root = os.path.abspath(path)
        w.settings.add_recent(root)
        save_settings(w.settings)
        self.rebuild_recent_menu()
        w.setWindowTitle(f"PneumoView - {display_path(root)}")
        w.statusBar().showMessage(f"Reading {display_path(root)} ...")
        self._start_index(root, Job(index_folder, root, name="index"))
        w.folderOpened.emit(root)

    def open_files(self, paths: list[str]) -> None:
        paths = [os.path.abspath(p) for p in paths]
        self.window.setWindowTitle(f"PneumoView - {display_path(paths[0])}" if len(paths) == 1
                                   else "PneumoView")
        job = Job(index_files, paths, name="open-files")
        self._start_index(os.path.dirname(paths[0]), job)

    def open_side_by_side(self, paths: list[str]) -> bool:
        """``pneumoview view A B [C D]``: the files in a 1 x 2 (2 x 2) layout, in that order,
        the first one active; False (and a message) when they are not 2 to 4 files."""
        missing = [p for p in paths if not os.path.isfile(p)]
        if not 2 <= len(paths) <= Layout.TWO_BY_TWO.count or missing:
            self.window.report_error(f"{missing[0]}: not a file; side by side needs 2 to 4 "
                                     "files" if missing else "side by side needs 2 to 4 files")
            return False
        self.window.set_layout(Layout.ONE_BY_TWO if len(paths) == 2 else Layout.TWO_BY_TWO)
        self.open_files(paths)
        self._placement = [os.path.abspath(p) for p in paths]
        return True

    def _place_opened(self) -> bool:
        """After indexing for :meth:`open_side_by_side`: each file into its viewport."""
        w = self.window
        placement, self._placement = self._placement, []
        shown = w.viewports.visible()
        for vp, path in zip(shown, placement, strict=False):
            item = w.tree.instance_item(path)
            if item is not None:
                w.load_into(vp, item.data(0, INSTANCE_ROLE))
        w.viewports.set_active(shown[0])
        return bool(placement)

    # -- the index job -------------------------------------------------------------------------
    def _start_index(self, root: str, job: Job) -> None:
        w = self.window
        w.runner.cancel_lane("index")
        w.runner.cancel_lane("decode")
        self._index_job = job
        w.current_root = root
        w.show_empty_viewer("Reading the folder...")
        job.bind(progress=job.signals.progress.emit, cancel=job.is_cancelled,
                 on_instances=job.signals.partial.emit)
        job.signals.partial.connect(lambda batch, j=job: self._on_index_batch(j, batch))
        job.signals.progress.connect(lambda p, j=job: self._on_index_progress(j, p))
        job.signals.result.connect(lambda r, j=job: self._on_index_result(j, r))
        job.signals.error.connect(lambda e, j=job: self._on_index_error(j, e))
        self.progress.show()
        w.runner.submit(job, lane="index")

    def _on_index_batch(self, job: Job, batch: list[Instance]) -> None:
        if job is not self._index_job:
            return  # a folder opened before this one
        w = self.window
        if w.tree.add_instances(batch):
            w.instancesAdded.emit(batch)
        if any(is_codec_syntax(inst.transfer_syntax) for inst in batch):
            w.decoder.prewarm()  # its imports overlap indexing, not the first decode
        if w.current_instance is None and not w.options.screenshot_mode \
                and not self._placement:
            first = w.tree.first_instance()
            if first is not None:
                w.tree.select_instance(first.path)

    def _on_index_progress(self, job: Job, progress: IndexProgress) -> None:
        if job is self._index_job:
            self.window.statusBar().showMessage(
                f"Reading... {progress.files_seen} files, {progress.dicom_found} DICOM images")

    def _on_index_result(self, job: Job, result: IndexResult) -> None:
        if job is not self._index_job:
            return
        self._index_job = None
        self.progress.hide()
        for path, reason in result.errors[:MAX_LOGGED_INDEX_ERRORS]:
            log.warning("%s: %s", path, reason)
        if len(result.errors) > MAX_LOGGED_INDEX_ERRORS:
            log.warning("... and %d more unreadable files",
                        len(result.errors) - MAX_LOGGED_INDEX_ERRORS)
        w = self.window
        n = w.tree.instance_count()
        summary = f"{result.root}: " + ", ".join(_summary_parts(n, result))
        if result.errors:
            w.report_error(summary)
        else:
            w.report(summary)
        if n == 0:
            w.view.clear(f"No DICOM images found in\n{result.root}")
        elif self._placement:
            self._place_opened()
        elif w.current_instance is None or w.options.screenshot_mode:
            first = w.tree.first_instance()
            if first is not None and (w.current_instance is None
                                      or first.path != w.current_instance.path):
                w.tree.select_instance(first.path)
        w.indexFinished.emit(result)

    def _on_index_error(self, job: Job, exc: Exception) -> None:
        if job is not self._index_job:
            return
        self._index_job = None
        self.progress.hide()
        self.window.view.clear(f"Cannot read this folder:\n{exc}")
        self.window.report_error(str(exc))


def _summary_parts(n: int, result: IndexResult) -> list[str]:
    parts = [f"{n} image(s)"]
    if result.non_dicom:
        parts.append(f"{len(result.non_dicom)} non-DICOM file(s) skipped")
    if result.errors:
        parts.append(f"{len(result.errors)} unreadable (see the log)")
    if result.cancelled:
        parts.append("stopped")
    return parts
