"""Series thumbnails: the current study's series as small pictures, decoded in the background.

When the reader shows an image of another study, the strip lists that study's series at once
(titles and a blank square) and one background job decodes the first image of each, windowed
with its default window and reduced to :data:`SIZE` pixels, sending each thumbnail as it is
ready. Compressed files go through the window's isolated decoder like every other decode.
Clicking a thumbnail shows its series.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem

from pneumoview.core.dicomio import decode
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.reading.series import SeriesEntry, study_series
from pneumoview.core.reading.thumbnail import thumbnail
from pneumoview.qt.workers import Job

SIZE = 96
LANE = "thumbnails"
_PATH = Qt.ItemDataRole.UserRole


def _make_thumbnails(decoder: Any, paths: list[str], partial: Callable[[object], None],
                     cancelled: Callable[[], bool]) -> int:
    """Decode and reduce each file; ``partial((path, array | message))`` per file."""
    done = 0
    for path in paths:
        if cancelled():
            break
        try:
            decoded = decoder.decode(path, 0) if decoder is not None else decode(path, 0)
            partial((path, thumbnail(decoded, SIZE)))
            done += 1
        except PneumoViewError as exc:
            partial((path, str(exc)))
    return done


def _icon(array: np.ndarray) -> QIcon:
    rgb = np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2
                               else array[..., :3])
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QIcon(QPixmap.fromImage(image))


def _blank() -> QIcon:
    pix = QPixmap(SIZE, SIZE)
    pix.fill(QColor(40, 40, 40))
    return QIcon(pix)


class SeriesStrip(QListWidget):
    seriesChosen = Signal(str)  # the path of the series' first image

    def __init__(self, runner: Any, decoder: Any = None) -> None:
        super().__init__()
        self.runner = runner
        self.decoder = decoder
        self.study_uid: str | None = None
        self.series_uids: set[str] = set()
        self._job: Job | None = None
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(QSize(SIZE, SIZE))
        self.setGridSize(QSize(SIZE + 24, SIZE + 40))
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setWordWrap(True)
        self.setUniformItemSizes(True)
        self.itemClicked.connect(lambda item: self.seriesChosen.emit(item.data(_PATH)))

    def show_study(self, instances: list[Any], study_uid: str, force: bool = False) -> None:
        """List ``study_uid``'s series (from ``instances``) and start their thumbnails."""
        if study_uid == self.study_uid and not force:
            return
        self.study_uid = study_uid
        if self._job is not None:
            self._job.cancel()
        self.clear()
        entries: list[SeriesEntry] = study_series(instances, study_uid)
        self.series_uids = {e.series_uid for e in entries}
        for e in entries:
            item = QListWidgetItem(_blank(), f"{e.title}\n{e.count} image"
                                   + ("s" if e.count != 1 else ""))
            item.setData(_PATH, e.first.path)
            item.setToolTip(e.title)  # plain text: QListWidget items do not render markup
            self.addItem(item)
        if not entries:
            return
        job = Job(_make_thumbnails, self.decoder, [e.first.path for e in entries],
                  name="series thumbnails")
        job.bind(partial=job.signals.partial.emit, cancelled=job.is_cancelled)
        job.signals.partial.connect(lambda value, j=job: self._on_thumbnail(j, value))
        self._job = job
        self.runner.submit(job, lane=LANE, latest_only=True)

    def item_for(self, path: str) -> QListWidgetItem | None:
        for i in range(self.count()):
            if self.item(i).data(_PATH) == path:
                return self.item(i)
        return None

    def _on_thumbnail(self, job: Job, value: object) -> None:
        if job is not self._job:
            return
        path, result = value  # type: ignore[misc]
        item = self.item_for(path)
        if item is None:
            return
        if isinstance(result, np.ndarray):
            item.setIcon(_icon(result))
        else:
            item.setToolTip(f"{item.toolTip()}\n{result}")
