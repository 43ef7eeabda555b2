"""The reading tools in the window: Tools menu, Measurements dock, per-image persistence.

Attached to the window through the host protocol (:mod:`pneumoview.qt.host`): the actions go
into the Tools menu slot (their shortcuts window-wide), the Measurements panel is a dock beside
Details. For each image shown, its saved annotations are loaded from the private store
(:class:`~pneumoview.core.reading.store.AnnotationStore`, keyed by SOP Instance UID, else the
file's digest, which is computed in the background) and every edit is saved there at once, in
order, off the GUI thread. A damaged store file is reported and left alone: that image's edits
are then not saved, rather than overwriting what the reader may still want back.
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog, QInputDialog

from pneumoview.core.dicomio import DecodedImage, header_text
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.reading.annotations import Annotation, Kind
from pneumoview.core.reading.orientation import ViewTransform
from pneumoview.core.reading.store import AnnotationStore, image_key
from pneumoview.qt.host import DETAILS_DOCK, STUDIES_DOCK, DockArea, MenuSlot
from pneumoview.qt.tools.layer import AnnotationLayer
from pneumoview.qt.tools.magnifier import Magnifier
from pneumoview.qt.tools.markers import OrientationMarkers
from pneumoview.qt.tools.panel import MeasurementsPanel
from pneumoview.qt.tools.presentation import PresentationStates, inside, save_state
from pneumoview.qt.tools.thumbnails import SeriesStrip
from pneumoview.qt.workers import Job

LANE = "annotations"
DOCK = "dock-measurements"
SERIES_DOCK = "dock-series"

#: (kind or None for the pointer, menu text, shortcut, status tip)
MODES: tuple[tuple[Kind | None, str, str, str], ...] = (
    (None, "&Pointer (Pan)", "Esc", "Left-drag pans; click a measurement to select it"),
    (Kind.DISTANCE, "&Distance", "L", "Drag from one point to the other"),
    (Kind.ANGLE, "&Angle", "A", "Drag the first arm to the vertex, then click the other end"),
    (Kind.RECTANGLE, "&Rectangle ROI", "Shift+R", "Drag a rectangle: mean, SD, min, max, area"),
    (Kind.ELLIPSE, "&Ellipse ROI", "E", "Drag an ellipse: mean, SD, min, max, area"),
    (Kind.ARROW, "A&rrow", "Shift+A", "Drag from the tail to the tip"),
    (Kind.TEXT, "&Text", "T", "Click where the text goes"),
)


def _load(store: AnnotationStore, decoded: DecodedImage) -> tuple[str, list[Annotation]]:
    key = image_key(decoded.header, decoded.path)
    return key, store.load(key)


class ReadingTools(QObject):
    """Measurements, annotations, rotation and flips on the window's image view."""

    def __init__(self, parent: QObject | None = None,
                 store: AnnotationStore | None = None) -> None:
        super().__init__(parent)
        self.store = store or AnnotationStore()
        self.host: Any = None
        self.path: str | None = None  # the image the layer holds
        self.key: str | None = None  # its store key, once known
        self.unsaved_keys: set[str] = set()  # damaged store files: never overwritten
        #: per image view (one per viewport): its orientation markers and magnifier
        self._aids: dict[int, tuple[OrientationMarkers, Magnifier]] = {}
        self._shown_in: dict[int, str] = {}  # per image view: the image it last showed
        self._markers_on = True
        self._magnifier_on = False
        self._load_job: Job | None = None

    # -- wiring ----------------------------------------------------------------------------------
    def attach(self, host: Any) -> None:
        self.host = host
        view = host.view
        self.view = view
        self.layer = AnnotationLayer(view, ask_text=self.ask_text)
        self._aids_for(view)
        grid = getattr(host, "viewports", None)  # a window with several viewports
        if grid is not None:
            for vp in grid.viewports:
                self._watch_viewport(vp)
            grid.viewportAdded.connect(self._watch_viewport)
            host.activeViewportChanged.connect(lambda vp: self.follow_view(vp.view))
        self.panel = MeasurementsPanel(self.layer)
        self.dock = host.add_dock(DOCK, "Measurements", self.panel, DockArea.RIGHT,
                                  tab_with=DETAILS_DOCK)
        self._build_actions()
        self._build_series(host)
        host.imageShown.connect(self.on_image_shown)
        host.imageFailed.connect(lambda _path, _msg: self._forget_image())
        self.layer.changed.connect(self._save)
        self.layer.modeChanged.connect(self._sync_mode)
        self.states = PresentationStates(host, self)
        self.states.found.connect(self._on_state_found)
        for name, slot in (("instancesAdded", self.states.on_instances),
                           ("folderOpened", lambda _root: self.states.clear())):
            signal = getattr(host, name, None)  # a window that indexes folders has them
            if signal is not None:
                signal.connect(slot)

    def _aids_for(self, view: Any) -> tuple[OrientationMarkers, Magnifier]:
        aids = self._aids.get(id(view))
        if aids is None:
            aids = (OrientationMarkers(view), Magnifier(view))
            aids[0].set_enabled(self._markers_on)
            aids[1].set_enabled(self._magnifier_on)
            self._aids[id(view)] = aids
        return aids

    def _watch_viewport(self, vp: Any) -> None:
        """Each viewport's markers follow its own image, active or not."""
        markers = self._aids_for(vp.view)[0]
        vp.shown.connect(lambda _vp, prepared: markers.set_image(prepared.decoded))

    @property
    def markers(self) -> OrientationMarkers:
        """The active view's orientation markers."""
        return self._aids_for(self.view)[0]

    @property
    def magnifier(self) -> Magnifier:
        return self._aids_for(self.view)[1]

    def _set_markers(self, on: bool) -> None:
        self._markers_on = bool(on)
        for markers, _magnifier in self._aids.values():
            markers.set_enabled(on)

    def _set_magnifier(self, on: bool) -> None:
        self._magnifier_on = bool(on)
        for _markers, magnifier in self._aids.values():
            magnifier.set_enabled(on)

    def follow_view(self, view: Any) -> None:
        """Measure and annotate on the active viewport's view; the window then announces its
        image (:meth:`on_image_shown` loads that image's annotations)."""
        if view is self.view:
            return
        self.layer.set_view(view)
        self.view = view
        self._forget_image()

    def _transform(self, change: Any) -> None:
        self.view.set_view_transform(change(self.view.view_transform))

    def _action(self, text: str, slot: Any, shortcut: str | None = None,
                tip: str = "", checkable: bool = False) -> QAction:
        action = QAction(text, self.host)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.setToolTip(tip)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.host.add_menu_action(MenuSlot.TOOLS, action)
        return action

    def _separator(self) -> None:
        sep = QAction(self.host)
        sep.setSeparator(True)
        self.host.add_menu_action(MenuSlot.TOOLS, sep)

    def _build_actions(self) -> None:
        self.mode_group = QActionGroup(self)
        self.mode_actions: dict[Kind | None, QAction] = {}
        for kind, text, key, tip in MODES:
            act = self._action(text, lambda _=False, k=kind: self.layer.set_mode(k), key, tip,
                               checkable=True)
            self.mode_group.addAction(act)
            self.mode_actions[kind] = act
        self.mode_actions[None].setChecked(True)
        self.act_delete = self._action("Delete &Measurement", self.layer.delete_selected,
                                       "Delete", "Remove the selected measurement or annotation")
        self._separator()
        self.act_rotate_right = self._action(
            "Rotate Ri&ght", lambda: self._transform(lambda t: t.rotated()),
            "]", "Rotate the image 90 degrees clockwise")
        self.act_rotate_left = self._action(
            "Rotate &Left", lambda: self._transform(lambda t: t.rotated(clockwise=False)),
            "[", "Rotate the image 90 degrees anticlockwise")
        self.act_flip_h = self._action(
            "Flip &Horizontally", lambda: self._transform(lambda t: t.flipped_horizontally()),
            "H", "Mirror left and right")
        self.act_flip_v = self._action(
            "Flip &Vertically", lambda: self._transform(lambda t: t.flipped_vertically()),
            "V", "Mirror top and bottom")
        self.act_markers = self._action(
            "Orientation &Markers", self._set_markers, "M",
            "Show the patient directions (from the file's orientation) on the edges",
            checkable=True)
        self.act_markers.setChecked(True)
        self.act_magnifier = self._action(
            "Ma&gnifier", self._set_magnifier, "Z",
            "A loupe beside the cursor with the image's own pixels enlarged", checkable=True)
        self._separator()
        self.act_save_state = self._action(
            "&Save Presentation State...", self.ask_save_state, "Ctrl+Shift+S",
            "Save the window, rotation and measurements as a DICOM presentation state that "
            "other viewers show")
        self.act_apply_state = self._action(
            "Apply &Presentation State", self.apply_found_state, None,
            "Apply the window and graphics of a presentation state found in the folder")
        self.act_apply_state.setEnabled(False)

    def actions(self) -> list[QAction]:
        return [*self.mode_actions.values(), self.act_delete, self.act_rotate_right,
                self.act_rotate_left, self.act_flip_h, self.act_flip_v, self.act_markers,
                self.act_magnifier, self.act_save_state, self.act_apply_state]

    def _sync_mode(self, kind: object) -> None:
        act = self.mode_actions.get(kind if isinstance(kind, Kind) else None)
        if act is not None and not act.isChecked():
            act.setChecked(True)

    def ask_text(self) -> str | None:
        text, ok = QInputDialog.getText(self.host, "Text annotation", "Text:")
        return text if ok else None

    # -- images ----------------------------------------------------------------------------------
    def on_image_shown(self, decoded: DecodedImage) -> None:
        """Another frame of the same image keeps the list; another image loads its own."""
        self.markers.set_image(decoded)
        self._offer_state(decoded)
        new_here = self._shown_in.get(id(self.view)) != decoded.path
        self._shown_in[id(self.view)] = decoded.path
        if decoded.path == self.path:
            self.layer.show_image(decoded)
            self.panel.refresh()
            return
        self.path, self.key = decoded.path, None
        if new_here and not self.view.view_transform.is_identity:
            self.view.set_view_transform(ViewTransform())
        self.layer.show_image(decoded, [])
        self.panel.refresh()
        if self._load_job is not None:
            self._load_job.cancel()
        job = Job(_load, self.store, decoded, name="load annotations", tag=decoded.path)
        job.signals.result.connect(lambda result, j=job: self._on_loaded(j, result))
        job.signals.error.connect(lambda exc, j=job: self._on_load_failed(j, exc))
        self._load_job = job
        self.host.runner.submit(job, lane=LANE)

    def _forget_image(self) -> None:
        self.path, self.key = None, None
        self.layer.show_image(None, [])
        self.markers.set_image(None)
        self.panel.refresh()

    def _on_loaded(self, job: Job, result: tuple[str, list[Annotation]]) -> None:
        if job.tag != self.path:
            return
        key, saved = result
        self.key = key
        drawn = self.layer.annotations  # drawn while the file was being read
        known = {a.id for a in saved}
        self.layer.show_image(self.layer.decoded, saved + [a for a in drawn if a.id not in known])
        self.panel.refresh()
        if drawn:
            self._save()

    def _on_load_failed(self, job: Job, exc: object) -> None:
        if job.tag != self.path:
            return
        if isinstance(exc, PneumoViewError) and exc.path is not None:
            self.key = f"unsaved:{exc.path}"
            self.unsaved_keys.add(self.key)
        self.host.report_error(f"Annotations not loaded: {exc}; new ones on this image will "
                               "not be saved")

    def _save(self) -> None:
        key = self.key
        if key is None or key in self.unsaved_keys:
            return  # not known yet (saved once loaded), or its file is damaged
        job = Job(self.store.save, key, list(self.layer.annotations), name="save annotations")
        job.signals.error.connect(lambda exc: self.host.report_error(
            f"Annotations not saved: {exc}"))
        self.host.runner.submit(job, lane=LANE)

    # -- presentation states ---------------------------------------------------------------------
    def _uid(self) -> str:
        d = self.layer.decoded
        return header_text(d.header, "SOPInstanceUID") if d is not None else ""

    def _offer_state(self, decoded: DecodedImage) -> None:
        found = self.states.for_image(header_text(decoded.header, "SOPInstanceUID"))
        self.act_apply_state.setEnabled(bool(found))
        if found and decoded.path != self.path:
            label = found[-1][1].label or "unnamed"
            self.host.report(f"A presentation state ({label}) refers to this image: "
                             "Tools > Apply Presentation State shows it")

    def _on_state_found(self, uid: str) -> None:
        if uid and uid == self._uid() and self.layer.decoded is not None:
            self._offer_state(self.layer.decoded)

    def apply_found_state(self) -> bool:
        """Apply the latest state found for the image: its window, inversion, rotation/flip,
        and its graphics added to the image's annotations (once per state)."""
        decoded = self.layer.decoded
        found = self.states.for_image(self._uid())
        if decoded is None or not found:
            return False
        path, state = found[-1]
        if state.window is not None and not decoded.is_colour:
            self.view.set_levels(*state.window)
        if state.invert is not None:
            self.view.set_invert(state.invert != decoded.invert)
        self.view.set_view_transform(state.transform)
        have = {(a.kind, a.points, a.frame, a.text) for a in self.layer.annotations}
        new = [a for a in state.annotations.get(self._uid(), [])
               if (a.kind, a.points, a.frame, a.text) not in have]
        for a in new:
            self.layer.add(a)
        skipped = f"; {state.skipped} graphic(s) of other forms not shown" if state.skipped else ""
        self.host.report(f"Applied presentation state {path}: {len(new)} graphic(s){skipped}")
        return True

    def ask_save_state(self) -> None:
        decoded = self.layer.decoded
        if decoded is None:
            return
        stem = os.path.splitext(os.path.basename(decoded.path))[0] or "image"
        path, _ = QFileDialog.getSaveFileName(self.host, "Save Presentation State",
                                              os.path.join(os.path.expanduser("~"),
                                                           f"{stem}_pr.dcm"),
                                              "DICOM presentation state (*.dcm)")
        if path:
            self.save_state(path)

    def save_state(self, path: str) -> Job | None:
        """Write the presentation state in the background; a path in the scanned folder is
        refused (PneumoView never writes there)."""
        decoded = self.layer.decoded
        if decoded is None:
            return None
        if inside(path, getattr(self.host, "current_root", None)):
            self.host.report_error(f"{path}: not saved: PneumoView does not write into the "
                                   "folder it is reading; choose another folder")
            return None
        annotations = list(self.layer.annotations)
        labels = {a.id: self.layer.lines(a) for a in annotations
                  if a.frame == decoded.frame and a.kind.is_measurement}
        window = self.view.window
        job = Job(save_state, path, decoded, annotations, labels, window,
                  bool(self.view.effective_invert), self.view.view_transform,
                  name="save presentation state")
        job.signals.result.connect(lambda out: self.host.report(f"Saved presentation state {out}"))
        job.signals.error.connect(lambda exc: self.host.report_error(str(exc)))
        self.host.runner.submit(job, lane=LANE)
        return job

    # -- series thumbnails -----------------------------------------------------------------------
    def _build_series(self, host: Any) -> None:
        """The Series dock, a tab beside Studies; thumbnails are decoded only while it shows."""
        self.series = SeriesStrip(host.runner, getattr(host, "decoder", None))
        self.series_dock = host.add_dock(SERIES_DOCK, "Series", self.series, DockArea.LEFT,
                                         tab_with=STUDIES_DOCK)
        studies = host.findChild(QDockWidget, STUDIES_DOCK)
        if studies is not None:
            studies.raise_()  # the tree stays in front; Series is one click away
        self.series.seriesChosen.connect(host.open_in_viewer)
        self.series_dock.visibilityChanged.connect(lambda shown: shown and self._show_series())
        changed = getattr(host, "currentInstanceChanged", None)
        if changed is not None:
            changed.connect(lambda _inst: self._show_series())
        added = getattr(host, "instancesAdded", None)
        if added is not None:
            added.connect(self._on_instances_added)

    def _study_uid(self) -> str | None:
        inst = self.host.tree.current_instance()
        return inst.study_instance_uid if inst is not None else None

    def _show_series(self, force: bool = False) -> None:
        uid = self._study_uid()
        if uid is not None and self.series_dock.isVisible() \
                and not self.series_dock.visibleRegion().isEmpty():
            self.series.show_study(self.host.tree.instances(), uid, force=force)

    def _on_instances_added(self, instances: list[Any]) -> None:
        uid = self.series.study_uid
        if uid is not None and any(i.study_instance_uid == uid
                                   and i.series_instance_uid not in self.series.series_uids
                                   for i in instances):
            self._show_series(force=True)
