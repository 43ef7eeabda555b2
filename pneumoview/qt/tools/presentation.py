"""Presentation states in the window: saving the reader's work as a GSPS, and offering the
ones found in an opened folder for the images they reference.

Found states are read in the background as the folder's files are indexed (only those whose
SOP Class is Grayscale Softcopy Presentation State). Saving never writes into the scanned
folder: a path inside it is refused with a message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from pneumoview.core.dicomio import DecodedImage, read_header
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.reading.annotations import Annotation
from pneumoview.core.reading.gsps import (
    GSPS_SOP_CLASS,
    PresentationState,
    build_presentation_state,
    read_presentation_state,
)
from pneumoview.core.reading.orientation import ViewTransform
from pneumoview.core.windowing import Window
from pneumoview.qt.workers import Job

LANE = "presentation-states"


def _read_states(paths: list[str]) -> list[tuple[str, PresentationState | str]]:
    out: list[tuple[str, PresentationState | str]] = []
    for path in paths:
        try:
            out.append((path, read_presentation_state(read_header(path))))
        except PneumoViewError as exc:
            out.append((path, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a damaged sequence inside a valid header
            out.append((path, f"{path}: unreadable presentation state ({type(exc).__name__})"))
    return out


def inside(path: str | os.PathLike[str], folder: str | None) -> bool:
    """Whether ``path`` lies in ``folder`` (resolved, so links and ``..`` do not hide it)."""
    if not folder:
        return False
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


def save_state(path: str, decoded: DecodedImage, annotations: list[Annotation],
               labels: dict[str, list[str]], window: Window | None, invert: bool,
               transform: ViewTransform) -> str:
    if decoded.header is None:
        raise PneumoViewError("the image has no DICOM header to reference", decoded.path)
    try:
        ds = build_presentation_state(decoded.header, annotations, labels, window, invert,
                                      transform)
    except (ValueError, TypeError, AttributeError) as exc:  # highdicom's checks
        raise PneumoViewError(f"cannot make a presentation state for it ({exc})",
                              decoded.path) from exc
    try:
        ds.save_as(path, enforce_file_format=True)
    except OSError as exc:
        raise PneumoViewError(f"cannot write the presentation state ({exc.strerror or exc})",
                              path) from exc
    return path


class PresentationStates(QObject):
    """The presentation states found in the open folder, by the SOP Instance UID they show."""

    found = Signal(str)  # a referenced SOP Instance UID that has a state now

    def __init__(self, host: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.by_image: dict[str, list[tuple[str, PresentationState]]] = {}

    def clear(self) -> None:
        self.by_image = {}

    def on_instances(self, instances: list[Any]) -> None:
        paths = [i.path for i in instances if getattr(i, "sop_class_uid", "") == GSPS_SOP_CLASS]
        if not paths:
            return
        job = Job(_read_states, paths, name="read presentation states")
        job.signals.result.connect(self._on_read)
        self.host.runner.submit(job, lane=LANE)

    def _on_read(self, results: list[tuple[str, PresentationState | str]]) -> None:
        for path, state in results:
            if isinstance(state, str):
                self.host.report_error(state)
                continue
            for uid in state.referenced:
                entries = self.by_image.setdefault(uid, [])
                if all(p != path for p, _s in entries):
                    entries.append((path, state))
                    self.found.emit(uid)

    def for_image(self, sop_instance_uid: str) -> list[tuple[str, PresentationState]]:
        return self.by_image.get(sop_instance_uid, [])
