"""The main window: study tree (left), image (centre), details tabs (right), log (bottom).

It is the :class:`~pneumoview.qt.host.Host` of the feature controllers (AI, batch): they add
menu actions by :class:`~pneumoview.qt.host.MenuSlot`, docks by name, status widgets, and send
every message to :meth:`report` / :meth:`report_error` (status bar + log panel; nothing pops up a
dialog or prints a traceback). It composes the window's own parts, each in a module of its own:
``self.acts`` (:class:`~pneumoview.qt.windowactions.WindowActions`: File / View / Go / Help),
``self.opener`` (:class:`~pneumoview.qt.opening.OpenController`: opening and indexing),
``self.frame_bar`` (:class:`~pneumoview.qt.framebar.FrameBar`, with the cine control),
``self.preset_menu`` (:class:`~pneumoview.qt.presetmenu.PresetMenu`) and ``self.docks``
(:class:`~pneumoview.qt.docklayout.DockLayout`). Besides the host protocol:

* signals: ``folderOpened(str)``, ``instancesAdded(list)``, ``indexFinished(IndexResult)``,
  ``currentInstanceChanged(Instance)``, ``imageShown(DecodedImage)``, ``imageFailed(str, str)``,
  ``imageArriving(DecodedImage)`` (the active viewport's frame, decoded and about to be shown:
  the AI starts on it while the viewer draws it);
* ``self.runner`` (:class:`WorkRunner`) runs background jobs and counts pending work that
  ``--screenshot`` waits for; submit jobs there (or wrap outside work in ``begin``/``end``);
* ``self.ai_state`` (:class:`~pneumoview.core.aistate.AIState`): the model choice, thresholds
  and results the AI panel and the GUI batch share;
* ``self.frames`` (:class:`~pneumoview.core.framecache.FrameCache`): decoded frames;
* ``self.details`` (a QTabWidget in the right dock) holds the tag browser; add panels with
  :meth:`add_detail_tab`; ``self.view`` is the *active* viewport's image view
  (``self.view.add_layer`` stacks an overlay on it);
* ``self.viewports`` (:class:`~pneumoview.qt.viewportgrid.ViewportGrid`): the 1x1 / 1x2 / 2x2
  layout of :class:`~pneumoview.qt.viewport.Viewport` s; ``activeViewportChanged(Viewport)``
  fires when the reader clicks another one, followed by ``currentInstanceChanged`` /
  ``imageShown`` for what that one shows (a controller that follows those shows the active
  viewport's result); ``self.sync`` keeps zoom/pan (and optionally W/L) in step;
  ``self.tree`` has an empty ``AI_COLUMN`` (see :mod:`pneumoview.qt.studytree`);
* ``self.options`` carries ``--model`` / ``--device`` from the command line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QLabel,
    QMainWindow,
    QMenu,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from pneumoview.core.decoderprocess import IsolatedDecoder
from pneumoview.core.framecache import FrameCache
from pneumoview.core.indexer import Instance
from pneumoview.core.paths import display_path
from pneumoview.core.reading.priors import NoPrior, find_prior
from pneumoview.core.settings import Settings, save_settings
from pneumoview.qt.docklayout import DockLayout, hide_stray_tab_bars
from pneumoview.qt.framebar import FrameBar
from pneumoview.qt.host import DETAILS_DOCK, LOG_DOCK, STUDIES_DOCK, DockArea, MenuSlot
from pneumoview.qt.logpanel import LogPanel, QtLogHandler
from pneumoview.qt.menuplace import MenuPlace
from pneumoview.qt.opening import OpenController
from pneumoview.qt.plaintext import make_plain
from pneumoview.qt.presetmenu import PresetMenu
from pneumoview.qt.radiographview import PreparedImage, RadiographView
from pneumoview.qt.studytree import INSTANCE_ROLE, StudyTree
from pneumoview.qt.studytree import _date as _date_text
from pneumoview.qt.tagbrowser import TagBrowser
from pneumoview.qt.viewport import Viewport, decode_task
from pneumoview.qt.viewportgrid import Layout, ViewportGrid, ViewSync
from pneumoview.qt.welcome import WelcomePage
from pneumoview.qt.windowactions import WindowActions
from pneumoview.qt.workers import WorkRunner

log = logging.getLogger("pneumoview.viewer")


def prepared_nbytes(prepared: PreparedImage) -> int:
    """Bytes a cached frame holds: modality values plus the display copy."""
    grey = prepared.grey_data
    return int(prepared.decoded.values.nbytes) + (0 if grey is None else int(grey.nbytes))


@dataclass
class ViewerOptions:
    """Command-line choices the viewer passes on (the AI panel reads model and device)."""

    model: str | None = None
    device: str | None = None
    screenshot_mode: bool = False
    engine: str | None = None  # --engine / --precision (None: the settings, then auto)
    precision: str | None = None


_decode_task = decode_task  # the viewports' decode job (tests run it on its own)


class MainWindow(QMainWindow):
    """The viewer window. See the module docstring for the hooks."""

    folderOpened = Signal(str)
    instancesAdded = Signal(object)  # list[Instance]
    indexFinished = Signal(object)  # IndexResult
    currentInstanceChanged = Signal(object)  # Instance
    imageShown = Signal(object)  # DecodedImage
    imageArriving = Signal(object)  # DecodedImage: the active viewport's, decoded, not yet shown
    imageFailed = Signal(str, str)  # path, message
    activeViewportChanged = Signal(object)  # Viewport

    def __init__(self, settings: Settings | None = None,
                 options: ViewerOptions | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.options = options or ViewerOptions()
        self.runner = WorkRunner(self)
        self.decoder = IsolatedDecoder()  # a codec crash on a compressed file cannot close us
        self.current_root: str | None = None
        self._panel_path: str | None = None  # the image whose tags and cine rate are shown
        self._loading_text = ""
        #: decoded frames for quick back-and-forth (bounded by count and bytes)
        self.frames: FrameCache[tuple[str, int], PreparedImage] = FrameCache(prepared_nbytes)
        self._closed = False
        self.tools_menu: QMenu | None = None
        self.setWindowTitle("PneumoView")
        self.setAcceptDrops(True)
        # the final size before any dock is added or tabified: Qt keeps tab bars laid out for
        # the size at tabify time (seen as stray tab bars in offscreen screenshots)
        self.resize(1400, 900)
        self.opener = OpenController(self)
        self._build_central()
        self._build_docks()
        self._build_status()
        self.preset_menu = PresetMenu(lambda: self.view,
                                      lambda text: self.statusBar().showMessage(text, 3000), self)
        self.acts = WindowActions(self)
        self._build_menus()
        self._connect()
        self._install_log_handler()
        self._attach_features()
        self._build_help_menu()  # last: it lists every action, the controllers' included
        for dock in self.findChildren(QDockWidget):
            dock.visibilityChanged.connect(self.docks.tidy_tab_bars_later)
        self._add_panel_actions()
        self.docks.restore(self.settings, use_saved=not self.options.screenshot_mode)

    def _attach_features(self) -> None:
        """The feature controllers, each through the host protocol."""
        # AI panel, CAM overlay, tree column, menus (torch loads in its own thread after show)
        # one AI state: the viewer and the GUI batch use the same model and thresholds
        from pneumoview.core.aistate import AIState, resolve_choice
        from pneumoview.qt.ai.controller import AIController

        self.ai_state = AIState(self.settings, resolve_choice(
            self.options.model, self.options.device, self.settings, self.options.engine,
            self.options.precision))
        self.ai = AIController(self.settings, parent=self, state=self.ai_state)
        self.ai.attach(self)
        # File > Batch Flag Folder..., the Batch dock, Go > Next Flagged (N)
        from pneumoview.qt.batch.controller import BatchController

        self.batch = BatchController(self.settings, parent=self, state=self.ai_state)
        self.batch.attach(self)
        # the Worklist dock (batch results as studies to review), Open Report..., Use Site
        # Profile..., Tools > Calibrate from Reviews... / Export Reviews...
        from pneumoview.qt.worklist.controller import WorklistController

        self.worklist = WorklistController(self.settings, parent=self)
        self.worklist.attach(self, batch=self.batch)
        # File > Open from PACS..., File > Save AI Result as DICOM...
        from pneumoview.qt.pacs.controller import PacsController

        self.pacs = PacsController(self.settings, ai=self.ai)
        self.pacs.attach(self)
        # Tools menu: measurements, annotations, rotation/flip, presentation states; the
        # Measurements and Series docks
        from pneumoview.qt.tools.controller import ReadingTools

        self.reading = ReadingTools(parent=self)
        self.reading.attach(self)

    # -- construction ------------------------------------------------------------------------
    def _build_central(self) -> None:
        self.stack = QStackedWidget()
        self.welcome = WelcomePage()
        self.viewer_page = QWidget()
        vl = QVBoxLayout(self.viewer_page)
        vl.setContentsMargins(0, 0, 0, 0)
        vl.setSpacing(0)
        self.viewports = ViewportGrid(self._make_viewport)
        self.sync = ViewSync(self.viewports, self)
        vl.addWidget(self.viewports, 1)
        self.frame_bar = FrameBar(lambda: self.view.decoded.frame
                                  if self.view.decoded is not None else None, self)
        vl.addWidget(self.frame_bar)
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.viewer_page)
        self.setCentralWidget(self.stack)

    def _build_docks(self) -> None:
        # tabs of tabified docks (Log/Batch, Details/AI) above their panels
        self.setTabPosition(Qt.DockWidgetArea.AllDockWidgetAreas, QTabWidget.TabPosition.North)
        self.tree = StudyTree()
        tree_dock = self.add_dock(STUDIES_DOCK, "Studies", self.tree, DockArea.LEFT)
        self.tags = TagBrowser()
        self.details = QTabWidget()
        self.details.addTab(self.tags, "Tags")
        details_dock = self.add_dock(DETAILS_DOCK, "Details", self.details, DockArea.RIGHT)
        self.log_panel = LogPanel()
        log_dock = self.add_dock(LOG_DOCK, "Log", self.log_panel, DockArea.BOTTOM)
        self.docks = DockLayout(self, tree_dock, details_dock, log_dock)

    # -- the host protocol (pneumoview.qt.host) ----------------------------------------------
    def add_menu_action(self, slot: MenuSlot, action: QAction) -> None:
        """Put ``action`` at ``slot`` (after what is there); its shortcut works window-wide."""
        self._slots[slot].add(action)
        self.addAction(action)

    def _tools_menu(self) -> QMenu:
        if self.tools_menu is None:
            self.tools_menu = self.menuBar().addMenu("&Tools")
        return self.tools_menu

    def add_dock(self, name: str, title: str, widget: QWidget, area: DockArea, *,
                 tab_with: str | None = None, raised: bool = False,
                 hidden: bool = False) -> QDockWidget:
        """A dock with the object name ``name`` (saved layouts find it by that name)."""
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area.value, dock)
        other = self.findChild(QDockWidget, tab_with) if tab_with else None
        if other is not None:
            self.tabifyDockWidget(other, dock)
        if raised:
            dock.raise_()
        if hidden:
            dock.hide()
        return dock

    def show_dock(self, dock: QDockWidget, fraction: float | None = None) -> None:
        """Show and raise ``dock``; with ``fraction``, at least that share of the window's
        height when it was hidden or squeezed to under half of it, else as the user left it."""
        was_hidden = not dock.isVisible()
        dock.show()
        dock.raise_()
        if fraction is None:
            return
        want = int(self.height() * fraction)
        if was_hidden or dock.height() < want // 2:
            self.resizeDocks([dock], [want], Qt.Orientation.Vertical)

    def add_status_widget(self, widget: QWidget) -> None:
        self.statusBar().addPermanentWidget(widget)

    def open_in_viewer(self, path: str) -> None:
        """Select ``path`` in the study tree, or open the file when the tree does not hold it."""
        if not self.tree.select_instance(path):
            self.open_files([path])

    def add_detail_tab(self, widget: QWidget, title: str) -> int:
        """Add a panel to the right-hand tabs (the AI panel goes here); returns its index."""
        return self.details.addTab(widget, title)

    def _build_status(self) -> None:
        self.busy_label = make_plain(QLabel())
        self.statusBar().addPermanentWidget(self.busy_label)
        self.statusBar().addPermanentWidget(self.opener.progress)

    def _build_menus(self) -> None:
        acts = self.acts
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(acts.open_folder)
        file_menu.addAction(acts.open_file)
        file_menu.addMenu(self.opener.recent_menu)
        file_menu.addAction(acts.demo)
        file_menu.addSeparator()
        file_menu.addAction(acts.clear_cache)
        file_menu.addSeparator()
        file_menu.addAction(acts.quit)
        self.file_menu = file_menu
        view_menu = bar.addMenu("&View")
        for act in (acts.fit, acts.one, acts.invert, acts.reset):
            view_menu.addAction(act)
        view_menu.addMenu(self.preset_menu)
        view_menu.addSeparator()
        layout_menu = view_menu.addMenu("&Layout")
        for act in acts.layouts.values():
            layout_menu.addAction(act)
        view_menu.addAction(acts.compare_prior)
        view_menu.addAction(acts.sync_zoom)
        view_menu.addAction(acts.sync_window)
        view_menu.addSeparator()
        view_menu.addAction(acts.patient)
        view_menu.addAction(acts.overlays)
        view_menu.addAction(acts.roi_overlays)
        view_menu.addSeparator()
        view_menu.addAction(acts.reset_layout)  # the panels go above it (_add_panel_actions)
        self.view_menu = view_menu
        go_menu = bar.addMenu("&Go")
        for act in (acts.next, acts.prev, acts.next_series, acts.prev_series):
            go_menu.addAction(act)
        go_menu.addSeparator()
        for act in (acts.play, acts.next_frame, acts.prev_frame):
            go_menu.addAction(act)
        self._slots = {
            MenuSlot.FILE_OPEN: MenuPlace(lambda: file_menu, acts.open_file),
            MenuSlot.FILE_MODEL: MenuPlace(lambda: file_menu, acts.quit, trailing=True),
            MenuSlot.VIEW_OVERLAYS: MenuPlace(lambda: view_menu, None, leading=True),
            MenuSlot.GO_RESULTS: MenuPlace(lambda: go_menu, None, leading=True),
            MenuSlot.TOOLS: MenuPlace(lambda: self._tools_menu(), None),
        }
        self.opener.rebuild_recent_menu()
        self.preset_menu.rebuild()

    def _build_help_menu(self) -> None:
        help_menu = self.menuBar().addMenu("&Help")
        for act in self.acts.build_help(self._model_lines):
            help_menu.addAction(act)

    def _model_lines(self) -> list[str]:
        info = self.ai.info
        if info is None:
            return [f"none loaded ({self.ai.error})" if self.ai.error else "not loaded yet"]
        return [str(getattr(info, "label", "")), f"model_id {getattr(info, 'model_id', '?')}"]

    def _connect(self) -> None:
        self.welcome.demo_button.clicked.connect(self.opener.open_demo)
        self.welcome.open_button.clicked.connect(self.opener.choose_folder)
        self.tree.instanceSelected.connect(self.show_instance)
        self.frame_bar.frameRequested.connect(self._on_frame_changed)
        self.viewports.activeChanged.connect(self._on_active_viewport)
        self.runner.busyChanged.connect(self._on_busy_changed)

    def _install_log_handler(self) -> None:
        self._log_handler = QtLogHandler(logging.INFO)
        self._log_handler.bridge.record.connect(self.log_panel.add)
        logging.getLogger("pneumoview").addHandler(self._log_handler)
        if logging.getLogger("pneumoview").getEffectiveLevel() > logging.INFO:
            logging.getLogger("pneumoview").setLevel(logging.INFO)

    def _add_panel_actions(self) -> None:
        """View menu: a show/hide entry for every dock (the AI and Batch ones included), so a
        closed panel can always come back, then Reset Window Layout."""
        for dock in self.findChildren(QDockWidget):
            action = dock.toggleViewAction()
            action.setToolTip(f"Show or hide the {dock.windowTitle()} panel")
            self.view_menu.insertAction(self.acts.reset_layout, action)

    # -- the docks' layout -------------------------------------------------------------------
    def reset_layout(self) -> None:
        """Every dock back where it started, shown (the Batch dock while a batch runs)."""
        self.docks.reset()
        ai_dock = getattr(self.ai, "dock", None)
        if ai_dock is not None:
            ai_dock.raise_()
        if self.batch.running:
            self.batch.dock.show()
            self.batch.dock.raise_()
        self.docks.tidy_tab_bars_later()
        self.report("Window layout reset")

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.docks.first_show()

    def hide_stray_tab_bars(self) -> int:
        """Hide dock tab bars Qt left behind; returns how many (see :mod:`~pneumoview.qt.
        docklayout`)."""
        return hide_stray_tab_bars(self)

    # -- messages ----------------------------------------------------------------------------
    def report_error(self, message: str) -> None:
        """The one place errors go: the status bar and the log panel (no dialogs)."""
        message = display_path(message)
        self.statusBar().showMessage(message, 15000)
        log.warning(message)

    def report(self, message: str) -> None:
        message = display_path(message)
        self.statusBar().showMessage(message, 8000)
        log.info(message)

    def _on_busy_changed(self, pending: int) -> None:
        self.busy_label.setText("working..." if pending else "")

    # -- opening (OpenController does it) ------------------------------------------------------
    def open_demo(self) -> None:
        self.opener.open_demo()

    def open_path(self, path: str) -> None:
        """A folder or a file, from the command line or a drop."""
        self.opener.open_path(path)

    def open_folder(self, path: str) -> None:
        """Index ``path`` in the background; the tree fills as files are found."""
        self.opener.open_folder(path)

    def open_files(self, paths: list[str]) -> None:
        self.opener.open_files(paths)

    def open_side_by_side(self, paths: list[str]) -> bool:
        """``pneumoview view A B [C D]``: see :meth:`OpenController.open_side_by_side`."""
        return self.opener.open_side_by_side(paths)

    def show_empty_viewer(self, message: str) -> None:
        """The viewer page with nothing shown (a folder is about to be read)."""
        for vp in self.viewports.viewports:
            vp.forget()
        self.tree.clear_all()
        self.view.clear(message)
        self._panel_path = None
        self.tags.set_dataset(None)
        self.frame_bar.hide()
        self.stack.setCurrentWidget(self.viewer_page)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        self.opener.open_dropped(paths)

    # -- viewports -----------------------------------------------------------------------------
    def _make_viewport(self, index: int) -> Viewport:
        vp = Viewport(index, self.frames, self.runner, lambda: self.decoder,
                      lambda: self.settings.max_image_bytes)
        vp.view.set_show_patient_text(self.settings.show_patient_overlay)
        if index:  # the file-overlay toggles hold for every viewport
            vp.view.set_show_overlays(graphics=self.acts.overlays.isChecked(),
                                      roi=self.acts.roi_overlays.isChecked())
        vp.loading.connect(self._on_viewport_loading)
        vp.shown.connect(self._on_viewport_shown)
        vp.arriving.connect(
            lambda v, decoded: v is self.active_viewport and self.imageArriving.emit(decoded))
        vp.failed.connect(self._on_viewport_failed)
        vp.instanceDropped.connect(self._on_instance_dropped)
        vp.view.windowChanged.connect(
            lambda _w, v=vp: v is self.active_viewport and self.preset_menu.sync())
        vp.view.invertChanged.connect(
            lambda on, v=vp: v is self.active_viewport and self.acts.invert.setChecked(on))
        return vp

    def _on_viewport_loading(self, vp: Viewport, text: str) -> None:
        if vp is self.active_viewport:
            self._loading_text = text
            self.statusBar().showMessage(text)

    @property
    def active_viewport(self) -> Viewport:
        return self.viewports.active

    @property
    def view(self) -> RadiographView:
        """The active viewport's image view (what the View menu and the tools act on)."""
        return self.viewports.active.view

    @property
    def current_instance(self) -> Instance | None:
        """The image in the active viewport."""
        return self.viewports.active.instance

    def set_layout(self, layout: Layout) -> None:
        """Show ``layout``'s viewports (View > Layout); an empty new one shows the next image."""
        self.viewports.set_layout(layout)
        self.acts.layouts[layout].setChecked(True)
        for vp in self.viewports.visible():
            if vp.instance is None and vp is not self.viewports.viewports[0]:
                vp.view.show_message("Drag an image or series here from the study tree, "
                                     "or click here and choose one")

    def _on_active_viewport(self, vp: Viewport) -> None:
        """The View menu, frame bar, tags and AI panel now follow ``vp``."""
        self.activeViewportChanged.emit(vp)
        inst = vp.instance
        if inst is not None:
            self._follow_in_tree(inst)
            self.currentInstanceChanged.emit(inst)
            self.frame_bar.set_image(inst.n_frames,
                                     vp.decoded.frame if vp.decoded is not None else 0)
        self.acts.invert.setChecked(vp.view.user_invert)
        self.frame_bar.cine.stop()
        decoded = vp.decoded
        self._panel_path = decoded.path if decoded is not None else None
        self.tags.set_dataset(decoded.header if decoded is not None else None)
        if decoded is not None:
            self.frame_bar.cine.set_image(decoded.header)
        self.preset_menu.rebuild()
        if decoded is not None:
            self.imageShown.emit(decoded)

    def load_into(self, vp: Viewport, inst: Instance) -> None:
        """Show ``inst`` in ``vp`` and make it the active viewport (the tree follows)."""
        self.viewports.set_active(vp)
        self._follow_in_tree(inst)
        self.show_instance(inst)

    def _follow_in_tree(self, inst: Instance) -> None:
        """Select ``inst``'s row without loading it again (Down then steps from there)."""
        item = self.tree.instance_item(inst.path)
        if item is not None and self.tree.currentItem() is not item:
            self.tree.blockSignals(True)
            self.tree.setCurrentItem(item)
            self.tree.blockSignals(False)
            self.tree.scrollToItem(item)

    def _on_instance_dropped(self, vp: Viewport, path: str) -> None:
        item = self.tree.instance_item(path)
        if item is None:
            self.report_error(f"{path}: not in the study tree any more")
            return
        self.load_into(vp, item.data(0, INSTANCE_ROLE))

    def compare_with_prior(self) -> bool:
        """1 x 2: the current image on the left, the patient's prior study on the right."""
        current = self.current_instance
        if current is None:
            self.report("Compare with prior: no image is shown")
            return False
        prior = find_prior(current, self.tree.instances())
        if isinstance(prior, NoPrior):
            self.report(f"No prior to compare with: {prior.value}")
            return False
        self.set_layout(Layout.ONE_BY_TWO)
        left, right = self.viewports.visible()[:2]
        if left.instance is None or left.instance.path != current.path:
            self.load_into(left, current)
        self.load_into(right, prior.instance)
        self.report(f"Comparing with the prior study of {_date_text(prior.study_date)}")
        return True

    # -- showing an image ----------------------------------------------------------------------
    def show_instance(self, inst: Instance) -> None:
        """Show ``inst`` (first frame) in the active viewport; it decodes in the background."""
        vp = self.active_viewport
        changed = vp.instance is None or vp.instance.path != inst.path
        vp.instance = inst
        if changed:
            self.currentInstanceChanged.emit(inst)
            self.frame_bar.cine.stop()
        self.frame_bar.set_image(inst.n_frames, 0)
        vp.request_frame(inst.path, 0)

    def request_frame(self, path: str, frame: int) -> None:
        """Show ``frame`` of ``path`` in the active viewport."""
        self.active_viewport.request_frame(path, frame)

    def cache_bytes(self) -> int:
        """Bytes held by the decoded-frame cache (bounded by ``frames.max_bytes``)."""
        return self.frames.nbytes()

    def _on_frame_changed(self, frame: int) -> None:
        if self.current_instance is not None:
            self.frame_bar.show_frame(frame, self.current_instance.n_frames)
            self.request_frame(self.current_instance.path, frame)

    def _on_viewport_shown(self, vp: Viewport, prepared: PreparedImage) -> None:
        if vp is not self.active_viewport:
            return  # on screen; the panels follow it once it is made active
        if self.statusBar().currentMessage() == self._loading_text:
            self.statusBar().clearMessage()  # not a message that came after it
        decoded = prepared.decoded
        new_file = self._panel_path != decoded.path
        if new_file:
            self._panel_path = decoded.path
            self.frame_bar.cine.set_image(decoded.header)
        self.preset_menu.rebuild()
        self.frame_bar.show_frame(decoded.frame, decoded.n_frames)
        self.imageShown.emit(decoded)  # the AI's answer first: the tag table can wait
        if new_file:
            self.tags.set_dataset(decoded.header)

    def _on_viewport_failed(self, vp: Viewport, path: str, message: str) -> None:
        if vp is self.active_viewport:
            self._panel_path = None
            self.tags.set_dataset(None)
        self.report_error(message)
        if vp is self.active_viewport:
            self.imageFailed.emit(path, message)

    # -- closing -------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop background work, save the layout; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.docks.save(self.settings)
        self.ai.shutdown()
        self.batch.shutdown()  # cancels a running batch; the runner below joins its thread
        self.pacs.shutdown()  # cancels a query or retrieval; the runner joins its thread
        save_settings(self.settings)
        self.decoder.close()  # first: a decode in flight then ends at once
        self.runner.shutdown(timeout=10.0)
        logging.getLogger("pneumoview").removeHandler(self._log_handler)
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self.acts.nav_keys)
