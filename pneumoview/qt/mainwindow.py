"""The main window: study tree (left), image (centre), details tabs (right), log (bottom).

It is the :class:`~pneumoview.qt.host.Host` of the feature controllers (AI, batch): they add
menu actions by :class:`~pneumoview.qt.host.MenuSlot`, docks by name, status widgets, and send
every message to :meth:`report` / :meth:`report_error` (status bar + log panel; nothing pops up a
dialog or prints a traceback). Besides that protocol:

* signals: ``folderOpened(str)``, ``instancesAdded(list)``, ``indexFinished(IndexResult)``,
  ``currentInstanceChanged(Instance)``, ``imageShown(DecodedImage)``, ``imageFailed(str, str)``;
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

import base64
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QProgressBar,
    QPushButton,
    QSlider,
    QStackedWidget,
    QTabBar,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from pneumoview.core.decoderprocess import IsolatedDecoder, is_codec_syntax
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.framecache import FrameCache
from pneumoview.core.indexer import IndexProgress, IndexResult, Instance, index_files, index_folder
from pneumoview.core.paths import display_path
from pneumoview.core.reading.priors import NoPrior, find_prior
from pneumoview.core.settings import MAX_RECENT, Settings, save_settings
from pneumoview.qt.host import DETAILS_DOCK, LOG_DOCK, STUDIES_DOCK, DockArea, MenuSlot
from pneumoview.qt.logpanel import LogPanel, QtLogHandler
from pneumoview.qt.navkeys import NavigationKeys
from pneumoview.qt.plaintext import make_plain, menu_text
from pneumoview.qt.radiographview import PreparedImage, RadiographView
from pneumoview.qt.studytree import INSTANCE_ROLE, StudyTree
from pneumoview.qt.studytree import _date as _date_text
from pneumoview.qt.tagbrowser import TagBrowser
from pneumoview.qt.tools.cine import CineControl
from pneumoview.qt.viewport import Viewport, decode_task
from pneumoview.qt.viewportgrid import Layout, ViewportGrid, ViewSync
from pneumoview.qt.workers import Job, WorkRunner

log = logging.getLogger("pneumoview.viewer")

def prepared_nbytes(prepared: PreparedImage) -> int:
    """Bytes a cached frame holds: modality values plus the display copy."""
    grey = prepared.grey_data
    return int(prepared.decoded.values.nbytes) + (0 if grey is None else int(grey.nbytes))
MAX_LOGGED_INDEX_ERRORS = 50

WELCOME = """<h2>PneumoView</h2>
<p>Open a folder of DICOM studies (<b>File &gt; Open Folder</b>, Ctrl+O), drop a folder or
file onto this window, or look at the demo: a real chest radiograph from pydicom-data in three
series (uncompressed, JPEG 2000 and an inverted MONOCHROME2 copy).</p>
<p><i>Not for diagnostic use.</i></p>"""


@dataclass
class ViewerOptions:
    """Command-line choices the viewer passes on (the AI panel reads model and device)."""

    model: str | None = None
    device: str | None = None
    screenshot_mode: bool = False
    engine: str | None = None  # --engine / --precision (None: the settings, then auto)
    precision: str | None = None


_decode_task = decode_task  # the viewports' decode job (tests run it on its own)

#: View > Layout: (layout, menu text, shortcut)
LAYOUTS = ((Layout.ONE, "&1 x 1", "Alt+1"), (Layout.ONE_BY_TWO, "1 x &2", "Alt+2"),
           (Layout.TWO_BY_TWO, "2 x 2 (&4)", "Alt+4"))


@dataclass
class _Slot:
    """A place in a menu: before ``anchor`` (``None``: at the end), in its own group when
    ``leading`` / ``trailing`` ask for a separator before / after what is added."""

    menu: Callable[[], QMenu]
    anchor: QAction | None
    leading: bool = False
    trailing: bool = False
    used: bool = False

    def add(self, action: QAction) -> None:
        menu = self.menu()
        if not self.used:
            self.used = True
            if self.leading:
                self._insert(menu, None)
            if self.trailing:
                self.anchor = self._insert(menu, None)
        self._insert(menu, action)

    def _insert(self, menu: QMenu, action: QAction | None) -> QAction:
        if action is None:
            if self.anchor is None:
                return menu.addSeparator()
            return menu.insertSeparator(self.anchor)
        if self.anchor is None:
            menu.addAction(action)
        else:
            menu.insertAction(self.anchor, action)
        return action


class MainWindow(QMainWindow):
    """The viewer window. See the module docstring for the hooks."""

    folderOpened = Signal(str)
    instancesAdded = Signal(object)  # list[Instance]
    indexFinished = Signal(object)  # IndexResult
    currentInstanceChanged = Signal(object)  # Instance
    imageShown = Signal(object)  # DecodedImage
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
        self._placement: list[str] = []  # files waiting for their viewports (side by side)
        self._panel_path: str | None = None  # the image whose tags and cine rate are shown
        self._loading_text = ""
        self._index_job: Job | None = None
        #: decoded frames for quick back-and-forth (bounded by count and bytes)
        self.frames: FrameCache[tuple[str, int], PreparedImage] = FrameCache(prepared_nbytes)
        self._closed = False
        self.tools_menu: QMenu | None = None
        self.setWindowTitle("PneumoView")
        self.setAcceptDrops(True)
        # the final size before any dock is added or tabified: Qt keeps tab bars laid out for
        # the size at tabify time (seen as stray tab bars in offscreen screenshots)
        self.resize(1400, 900)
        self._build_central()
        self._build_docks()
        self._build_status()
        self._build_actions()
        self._build_menus()
        self._connect()
        self._install_log_handler()
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
        self._build_help_menu()  # last: it lists every action, the controllers' included
        for dock in self.findChildren(QDockWidget):
            dock.visibilityChanged.connect(self._tidy_tab_bars_later)
        self._add_panel_actions()
        self._restore_geometry()

    # -- construction ------------------------------------------------------------------------
    def _build_central(self) -> None:
        self.stack = QStackedWidget()
        self.welcome = QWidget()
        wl = QVBoxLayout(self.welcome)
        text = QLabel(WELCOME)
        text.setObjectName("welcome")
        text.setTextFormat(Qt.TextFormat.RichText)  # our own text only, never data
        text.setWordWrap(True)
        text.setMaximumWidth(560)
        self.welcome_text = text
        self.demo_button = QPushButton("Open the demo")
        self.open_button = QPushButton("Open Folder...")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.demo_button)
        buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        # centred by stretches, not by an alignment flag: an aligned word-wrapped label gets
        # the height of its unwrapped size hint and loses its last lines
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(text, 10)
        row.addStretch(1)
        wl.addStretch(1)
        wl.addLayout(row)
        wl.addLayout(buttons)
        wl.addStretch(2)

        self.viewer_page = QWidget()
        vl = QVBoxLayout(self.viewer_page)
        vl.setContentsMargins(0, 0, 0, 0)
        vl.setSpacing(0)
        self.viewports = ViewportGrid(self._make_viewport)
        self.sync = ViewSync(self.viewports, self)
        vl.addWidget(self.viewports, 1)
        self.frame_bar = QWidget()
        fl = QHBoxLayout(self.frame_bar)
        fl.setContentsMargins(6, 2, 6, 2)
        self.frame_slider = QSlider(Qt.Orientation.Horizontal)
        self.frame_slider.setMinimum(0)
        self.frame_label = make_plain(QLabel())
        # cine: play/pause and the rate; the timer waits for each frame to be shown
        self.cine = CineControl(self.frame_slider, lambda: self.view.decoded.frame
                                if self.view.decoded is not None else None, self)
        self.play_button = QToolButton()
        self.play_button.setText("Play")
        self.play_button.setCheckable(True)
        self.play_button.clicked.connect(lambda _on: self.cine.toggle())
        self.cine.playingChanged.connect(self._on_cine_playing)
        fl.addWidget(self.play_button)
        fl.addWidget(make_plain(QLabel("Frame")))
        fl.addWidget(self.frame_slider, 1)
        fl.addWidget(self.frame_label)
        fl.addWidget(self.cine.fps_box)
        self.frame_bar.hide()
        vl.addWidget(self.frame_bar)
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.viewer_page)
        self.setCentralWidget(self.stack)

    def _build_docks(self) -> None:
        # tabs of tabified docks (Log/Batch, Details/AI) above their panels
        self.setTabPosition(Qt.DockWidgetArea.AllDockWidgetAreas, QTabWidget.TabPosition.North)
        self.tree = StudyTree()
        self.tree_dock = self.add_dock(STUDIES_DOCK, "Studies", self.tree, DockArea.LEFT)
        self.tags = TagBrowser()
        self.details = QTabWidget()
        self.details.addTab(self.tags, "Tags")
        self.details_dock = self.add_dock(DETAILS_DOCK, "Details", self.details, DockArea.RIGHT)
        self.log_panel = LogPanel()
        self.log_dock = self.add_dock(LOG_DOCK, "Log", self.log_panel, DockArea.BOTTOM)


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
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.setRange(0, 0)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.busy_label = make_plain(QLabel())
        self.statusBar().addPermanentWidget(self.busy_label)
        self.statusBar().addPermanentWidget(self.progress)

    def _action(self, text: str, slot, shortcut=None, checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            keys = shortcut if isinstance(shortcut, list) else [shortcut]
            action.setShortcuts([QKeySequence(k) for k in keys])
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work wherever the focus is in the window
        return action

    def _build_actions(self) -> None:
        a = self._action
        self.act_open_folder = a("Open &Folder...", self.choose_folder,
                                 QKeySequence.StandardKey.Open)
        self.act_open_file = a("Open F&ile...", self.choose_files, "Ctrl+Shift+O")
        self.act_demo = a("Open &Demo", self.open_demo)
        self.act_clear_cache = a("Clear Index &Cache", self.clear_index_cache)
        self.act_clear_cache.setStatusTip("Delete the cache of folder contents (it holds patient "
                                          "names and IDs); folders are read again next time")
        self.act_quit = a("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.act_fit = a("&Fit to Window", lambda: self._zoom_action(RadiographView.fit), "F")
        self.act_one = a("&1:1 (Actual Pixels)",
                         lambda: self._zoom_action(RadiographView.one_to_one), "Ctrl+0")
        self.act_invert = a("&Invert", lambda: self.view.toggle_invert(), "I", checkable=True)
        self.act_reset = a("&Reset", lambda: self._zoom_action(RadiographView.reset), "R")
        self.act_patient = a("Show &Patient Text", self.set_patient_text, "P", checkable=True)
        self.act_overlays = a("Show File &Overlays", lambda on: self._each_view(
            lambda v: v.set_show_overlays(graphics=on)), "O", checkable=True)
        self.act_overlays.setChecked(self.view.show_graphics_overlays)
        self.act_roi_overlays = a("Show File &ROI Overlays", lambda on: self._each_view(
            lambda v: v.set_show_overlays(roi=on)), checkable=True)
        self.act_roi_overlays.setChecked(self.view.show_roi_overlays)
        self.act_patient.setChecked(self.settings.show_patient_overlay)
        self.act_next = a("&Next Image", lambda: self.tree.step_instance(1), ["Down", "Right"])
        self.act_prev = a("&Previous Image", lambda: self.tree.step_instance(-1), ["Up", "Left"])
        self.act_next_series = a("Next &Series", lambda: self.tree.step_series(1), "PgDown")
        self.act_prev_series = a("Previous S&eries", lambda: self.tree.step_series(-1), "PgUp")
        self.act_play = a("&Play / Pause Frames", lambda: self.cine.toggle(), "Space")
        self.act_next_frame = a("Next &Frame", lambda: self.cine.step(1), ".")
        self.act_prev_frame = a("Previous Fra&me", lambda: self.cine.step(-1), ",")
        self.preset_actions = [a(f"Preset {i}", lambda _=False, i=i: self.apply_preset(i - 1),
                                 str(i)) for i in range(1, 10)]
        self._build_viewport_actions()
        self.act_reset_layout = a("Reset Window &Layout", self.reset_layout)
        self.act_reset_layout.setToolTip("Show every panel again where it started")
        key = Qt.Key
        self.nav_keys = NavigationKeys(self, {
            key.Key_Down: self.act_next, key.Key_Right: self.act_next,
            key.Key_Up: self.act_prev, key.Key_Left: self.act_prev,
            key.Key_PageDown: self.act_next_series, key.Key_PageUp: self.act_prev_series,
        }, active=lambda: self.stack.currentWidget() is self.viewer_page)
        QApplication.instance().installEventFilter(self.nav_keys)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.act_open_folder)
        file_menu.addAction(self.act_open_file)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        file_menu.addAction(self.act_demo)
        file_menu.addSeparator()
        file_menu.addAction(self.act_clear_cache)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        self.file_menu = file_menu
        view_menu = bar.addMenu("&View")
        for act in (self.act_fit, self.act_one, self.act_invert, self.act_reset):
            view_menu.addAction(act)
        self.preset_menu = view_menu.addMenu("&Window Presets")
        view_menu.addSeparator()
        layout_menu = view_menu.addMenu("&Layout")
        for act in self.layout_actions.values():
            layout_menu.addAction(act)
        view_menu.addAction(self.act_compare_prior)
        view_menu.addAction(self.act_sync_zoom)
        view_menu.addAction(self.act_sync_window)
        view_menu.addSeparator()
        view_menu.addAction(self.act_patient)
        view_menu.addAction(self.act_overlays)
        view_menu.addAction(self.act_roi_overlays)
        view_menu.addSeparator()
        view_menu.addAction(self.act_reset_layout)  # the panels go above it (_add_panel_actions)
        self.view_menu = view_menu
        go_menu = bar.addMenu("&Go")
        for act in (self.act_next, self.act_prev, self.act_next_series, self.act_prev_series):
            go_menu.addAction(act)
        go_menu.addSeparator()
        for act in (self.act_play, self.act_next_frame, self.act_prev_frame):
            go_menu.addAction(act)
        self.go_menu = go_menu
        self._slots = {
            MenuSlot.FILE_OPEN: _Slot(lambda: file_menu, self.act_open_file),
            MenuSlot.FILE_MODEL: _Slot(lambda: file_menu, self.act_quit, trailing=True),
            MenuSlot.VIEW_OVERLAYS: _Slot(lambda: view_menu, None, leading=True),
            MenuSlot.GO_RESULTS: _Slot(lambda: go_menu, None, leading=True),
            MenuSlot.TOOLS: _Slot(lambda: self._tools_menu(), None),
        }
        self._rebuild_recent_menu()
        self._rebuild_preset_menu()

    def _connect(self) -> None:
        self.demo_button.clicked.connect(self.open_demo)
        self.open_button.clicked.connect(self.choose_folder)
        self.tree.instanceSelected.connect(self.show_instance)
        self.frame_slider.valueChanged.connect(self._on_frame_changed)
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
            self.view_menu.insertAction(self.act_reset_layout, action)

    def reset_layout(self) -> None:
        """Every dock back where it started, shown (the Batch dock while a batch runs)."""
        self.restoreState(self._initial_state)
        self._default_layout()
        ai_dock = getattr(self.ai, "dock", None)
        if ai_dock is not None:
            ai_dock.raise_()
        if self.batch.running:
            self.batch.dock.show()
            self.batch.dock.raise_()
        self._tidy_tab_bars_later()
        self.report("Window layout reset")

    def _default_layout(self) -> None:
        """Dock sizes for the window's width, applied after every panel (AI, batch) has been
        added and again when the window is first shown at its real size (a saved layout
        wins): the tree and the tag browser get room for their text on a wide screen too."""
        width = self.width()
        tree = int(min(max(width * 0.25, 300), 520))
        details = int(min(max(width * 0.32, 400), 600))
        self.resizeDocks([self.tree_dock, self.details_dock], [tree, details],
                         Qt.Orientation.Horizontal)
        self.resizeDocks([self.log_dock], [110], Qt.Orientation.Vertical)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            if not self._layout_restored:
                self._default_layout()

    def hide_stray_tab_bars(self) -> int:
        """Hide dock tab bars Qt left behind; returns how many.

        Qt (6.12) leaves a tabified group's old tab bar on screen, at its old place, when the
        group is laid out again: after one of its docks is hidden (the Batch dock, tabified with
        the Log and hidden at start) or shown (a batch starting), a second Log/Batch bar then
        covers the bottom of the study tree. A bar is stray when its tabs are not all visible
        docks, or when another bar for the same docks sits right above one of them (tabs are
        North) and it does not: the only bar of a group is never hidden.
        """
        docks = [d for d in self.findChildren(QDockWidget) if d.isVisible()]
        titles = {d.windowTitle() for d in docks}
        bars = [b for b in self.findChildren(QTabBar,
                                             options=Qt.FindChildOption.FindDirectChildrenOnly)
                if b.isVisible()]

        def tabs(bar: QTabBar) -> frozenset[str]:
            return frozenset(bar.tabText(i) for i in range(bar.count()))

        def attached(bar: QTabBar) -> bool:
            g = bar.geometry()
            return any(d.windowTitle() in tabs(bar) and abs(d.geometry().top() - g.bottom() - 1)
                       <= 2 and d.geometry().left() < g.right() and g.left() < d.geometry().right()
                       for d in docks)

        hidden = 0
        for bar in bars:
            texts = tabs(bar)
            twin_attached = any(o is not bar and tabs(o) == texts and attached(o) for o in bars)
            if len(texts) < 2 or not texts <= titles or (twin_attached and not attached(bar)):
                bar.hide()
                hidden += 1
        return hidden

    def _tidy_tab_bars_later(self, *_: object) -> None:
        """After a dock is shown or hidden, once Qt has laid the docks out again."""
        QTimer.singleShot(0, self, self.hide_stray_tab_bars)

    def _restore_geometry(self) -> None:
        self.resize(1400, 900)
        self._default_layout()
        self._initial_state = self.saveState()  # what View > Reset Window Layout goes back to
        self._shown_once = False
        self._layout_restored = False
        if self.options.screenshot_mode:
            return  # screenshots use the default layout, whatever the user last arranged
        try:
            if self.settings.window_geometry:
                self.restoreGeometry(QByteArray(base64.b64decode(self.settings.window_geometry)))
            if self.settings.window_state:
                self._layout_restored = self.restoreState(
                    QByteArray(base64.b64decode(self.settings.window_state)))
        except (ValueError, TypeError):
            log.warning("saved window layout is unreadable; using the default layout")

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

    def clear_index_cache(self) -> None:
        """File > Clear Index Cache: delete the per-user cache of indexed headers."""
        from pneumoview.core.indexcache import clear_cache

        try:
            entries = clear_cache()
        except OSError as exc:
            self.report_error(f"cannot clear the index cache: {exc.strerror or exc}")
            return
        self.report("the index cache was empty" if entries is None
                    else f"index cache cleared ({entries} files forgotten)")

    def _on_busy_changed(self, pending: int) -> None:
        self.busy_label.setText("working..." if pending else "")

    # -- opening -----------------------------------------------------------------------------
    def choose_folder(self) -> None:
        start = self.settings.recent_folders[0] if self.settings.recent_folders else ""
        path = QFileDialog.getExistingDirectory(self, "Open Folder", start)
        if path:
            self.open_folder(path)

    def choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open DICOM File(s)", "",
                                                "DICOM (*.dcm *.dicom *.DCM);;All files (*)")
        if paths:
            self.open_files(paths)

    def open_demo(self) -> None:
        from pneumoview.core.demo import prepare_demo

        try:
            path = prepare_demo()
        except PneumoViewError as exc:
            self.report_error(str(exc))
            return
        self.open_folder(str(path))

    def open_path(self, path: str) -> None:
        """A folder or a file, from the command line or a drop."""
        if os.path.isdir(path):
            self.open_folder(path)
        elif os.path.exists(path):
            self.open_files([path])
        else:
            self.report_error(f"{path}: not found (moved, deleted or a network folder "
                              "that is not connected?)")

    def _start_index(self, root: str, job: Job) -> None:
        self.runner.cancel_lane("index")
        self.runner.cancel_lane("decode")
        self._index_job = job
        self.current_root = root
        for vp in self.viewports.viewports:
            vp.forget()
        self.tree.clear_all()
        self.view.clear("Reading the folder...")
        self._panel_path = None
        self.tags.set_dataset(None)
        self.frame_bar.hide()
        self.stack.setCurrentWidget(self.viewer_page)
        job.bind(progress=job.signals.progress.emit, cancel=job.is_cancelled,
                 on_instances=job.signals.partial.emit)
        job.signals.partial.connect(lambda batch, j=job: self._on_index_batch(j, batch))
        job.signals.progress.connect(lambda p, j=job: self._on_index_progress(j, p))
        job.signals.result.connect(lambda r, j=job: self._on_index_result(j, r))
        job.signals.error.connect(lambda e, j=job: self._on_index_error(j, e))
        self.progress.show()
        self.runner.submit(job, lane="index")

    def open_folder(self, path: str) -> None:
        """Index ``path`` in the background; the tree fills as files are found."""
        root = os.path.abspath(path)
        self.settings.add_recent(root)
        save_settings(self.settings)
        self._rebuild_recent_menu()
        self.setWindowTitle(f"PneumoView - {display_path(root)}")
        self.statusBar().showMessage(f"Reading {display_path(root)} ...")
        self._start_index(root, Job(index_folder, root, name="index"))
        self.folderOpened.emit(root)

    def open_side_by_side(self, paths: list[str]) -> bool:
        """``pneumoview view A B [C D]``: the files in a 1 x 2 (2 x 2) layout, in that order,
        the first one active; False (and a message) when they are not 2 to 4 files."""
        missing = [p for p in paths if not os.path.isfile(p)]
        if not 2 <= len(paths) <= Layout.TWO_BY_TWO.count or missing:
            self.report_error(f"{missing[0]}: not a file; side by side needs 2 to 4 files"
                              if missing else "side by side needs 2 to 4 files")
            return False
        self.set_layout(Layout.ONE_BY_TWO if len(paths) == 2 else Layout.TWO_BY_TWO)
        self.open_files(paths)
        self._placement = [os.path.abspath(p) for p in paths]
        return True

    def _place_opened(self) -> bool:
        """After indexing for :meth:`open_side_by_side`: each file into its viewport."""
        placement, self._placement = self._placement, []
        shown = self.viewports.visible()
        for vp, path in zip(shown, placement, strict=False):
            item = self.tree.instance_item(path)
            if item is not None:
                self.load_into(vp, item.data(0, INSTANCE_ROLE))
        self.viewports.set_active(shown[0])
        return bool(placement)

    def open_files(self, paths: list[str]) -> None:
        paths = [os.path.abspath(p) for p in paths]
        self.setWindowTitle(f"PneumoView - {display_path(paths[0])}" if len(paths) == 1
                            else "PneumoView")
        job = Job(index_files, paths, name="open-files")
        self._start_index(os.path.dirname(paths[0]), job)

    def _on_index_batch(self, job: Job, batch: list[Instance]) -> None:
        if job is not self._index_job:
            return  # a folder opened before this one
        if self.tree.add_instances(batch):
            self.instancesAdded.emit(batch)
        if any(is_codec_syntax(inst.transfer_syntax) for inst in batch):
            self.decoder.prewarm()  # its imports overlap indexing, not the first decode
        if self.current_instance is None and not self.options.screenshot_mode \
                and not self._placement:
            first = self.tree.first_instance()
            if first is not None:
                self.tree.select_instance(first.path)

    def _on_index_progress(self, job: Job, progress: IndexProgress) -> None:
        if job is self._index_job:
            self.statusBar().showMessage(
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
        n = self.tree.instance_count()
        parts = [f"{n} image(s)"]
        if result.non_dicom:
            parts.append(f"{len(result.non_dicom)} non-DICOM file(s) skipped")
        if result.errors:
            parts.append(f"{len(result.errors)} unreadable (see the log)")
        if result.cancelled:
            parts.append("stopped")
        summary = f"{result.root}: " + ", ".join(parts)
        if result.errors:
            self.report_error(summary)
        else:
            self.report(summary)
        if n == 0:
            self.view.clear(f"No DICOM images found in\n{result.root}")
        elif self._placement:
            self._place_opened()
        elif self.current_instance is None or self.options.screenshot_mode:
            first = self.tree.first_instance()
            if first is not None and (self.current_instance is None
                                      or first.path != self.current_instance.path):
                self.tree.select_instance(first.path)
        self.indexFinished.emit(result)

    def _on_index_error(self, job: Job, exc: Exception) -> None:
        if job is not self._index_job:
            return
        self._index_job = None
        self.progress.hide()
        self.view.clear(f"Cannot read this folder:\n{exc}")
        self.report_error(str(exc))

    # -- viewports -----------------------------------------------------------------------------
    def _make_viewport(self, index: int) -> Viewport:
        vp = Viewport(index, self.frames, self.runner, lambda: self.decoder,
                      lambda: self.settings.max_image_bytes)
        vp.view.set_show_patient_text(self.settings.show_patient_overlay)
        if index:  # the file-overlay toggles hold for every viewport
            vp.view.set_show_overlays(graphics=self.act_overlays.isChecked(),
                                      roi=self.act_roi_overlays.isChecked())
        vp.loading.connect(self._on_viewport_loading)
        vp.shown.connect(self._on_viewport_shown)
        vp.failed.connect(self._on_viewport_failed)
        vp.instanceDropped.connect(self._on_instance_dropped)
        vp.view.windowChanged.connect(
            lambda _w, v=vp: v is self.active_viewport and self._sync_preset_menu())
        vp.view.invertChanged.connect(
            lambda on, v=vp: v is self.active_viewport and self.act_invert.setChecked(on))
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

    def _each_view(self, fn: Callable[[RadiographView], object]) -> None:
        for vp in self.viewports.viewports:
            fn(vp.view)

    def _zoom_action(self, fn: Callable[[RadiographView], object]) -> None:
        """Fit, 1:1, Reset on the active view; the others follow when zoom is synchronised."""
        fn(self.view)
        self.sync.follow_range(self.active_viewport)

    def _build_viewport_actions(self) -> None:
        group = QActionGroup(self)
        self.layout_actions: dict[Layout, QAction] = {}
        for layout, text, key in LAYOUTS:
            act = self._action(f"Layout {text}", lambda _=False, k=layout: self.set_layout(k),
                               key, checkable=True)
            act.setText(text)
            act.setToolTip(f"Show {layout.label} viewports; click one to make it active")
            group.addAction(act)
            self.layout_actions[layout] = act
        self.layout_actions[Layout.ONE].setChecked(True)
        self.act_compare_prior = self._action("&Compare with Prior", self.compare_with_prior,
                                              "Ctrl+P")
        self.act_compare_prior.setToolTip("Show this patient's most recent earlier study "
                                          "beside the current one (1 x 2)")
        self.act_sync_zoom = self._action("S&ynchronise Zoom/Pan", self._set_sync_zoom,
                                          checkable=True)
        self.act_sync_zoom.setChecked(self.sync.zoom_pan)
        self.act_sync_window = self._action("Synchronise &Window/Level", self._set_sync_window,
                                            checkable=True)
        self.act_sync_window.setChecked(self.sync.window)

    def _set_sync_zoom(self, on: bool) -> None:
        self.sync.zoom_pan = bool(on)
        if on:
            self.sync.follow_range(self.active_viewport)

    def _set_sync_window(self, on: bool) -> None:
        self.sync.window = bool(on)

    def set_layout(self, layout: Layout) -> None:
        """Show ``layout``'s viewports (View > Layout); an empty new one shows the next image."""
        self.viewports.set_layout(layout)
        self.layout_actions[layout].setChecked(True)
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
            self._sync_frame_bar(inst, vp.decoded.frame if vp.decoded is not None else 0)
        self.act_invert.setChecked(vp.view.user_invert)
        self.cine.stop()
        decoded = vp.decoded
        self._panel_path = decoded.path if decoded is not None else None
        self.tags.set_dataset(decoded.header if decoded is not None else None)
        if decoded is not None:
            self.cine.set_image(decoded.header)
        self._rebuild_preset_menu()
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
            self.cine.stop()
        self._sync_frame_bar(inst, 0)
        vp.request_frame(inst.path, 0)

    def _sync_frame_bar(self, inst: Instance, frame: int) -> None:
        self.frame_slider.blockSignals(True)
        self.frame_slider.setMaximum(max(0, inst.n_frames - 1))
        self.frame_slider.setValue(frame)
        self.frame_slider.blockSignals(False)
        self.frame_bar.setVisible(inst.n_frames > 1)
        self.frame_label.setText(f"{frame + 1} / {inst.n_frames}")

    def request_frame(self, path: str, frame: int) -> None:
        """Show ``frame`` of ``path`` in the active viewport."""
        self.active_viewport.request_frame(path, frame)

    def cache_bytes(self) -> int:
        """Bytes held by the decoded-frame cache (bounded by ``frames.max_bytes``)."""
        return self.frames.nbytes()

    def _on_viewport_shown(self, vp: Viewport, prepared: PreparedImage) -> None:
        if vp is not self.active_viewport:
            return  # on screen; the panels follow it once it is made active
        if self.statusBar().currentMessage() == self._loading_text:
            self.statusBar().clearMessage()  # not a message that came after it
        decoded = prepared.decoded
        if self._panel_path != decoded.path:
            self._panel_path = decoded.path
            self.tags.set_dataset(decoded.header)
            self.cine.set_image(decoded.header)
        self._rebuild_preset_menu()
        self.frame_label.setText(f"{decoded.frame + 1} / {decoded.n_frames}")
        self.imageShown.emit(decoded)

    def _on_viewport_failed(self, vp: Viewport, path: str, message: str) -> None:
        if vp is self.active_viewport:
            self._panel_path = None
            self.tags.set_dataset(None)
        self.report_error(message)
        if vp is self.active_viewport:
            self.imageFailed.emit(path, message)

    def _on_cine_playing(self, playing: bool) -> None:
        self.play_button.setChecked(playing)
        self.play_button.setText("Pause" if playing else "Play")

    def _build_help_menu(self) -> None:
        from pneumoview.qt.helpdialogs import AboutDialog, ShortcutsDialog

        help_menu = self.menuBar().addMenu("&Help")
        self.act_shortcuts = self._action("&Keyboard Shortcuts",
                                          lambda: ShortcutsDialog(self).exec(), "F1")
        self.act_about = self._action("&About PneumoView",
                                      lambda: AboutDialog(self, self._model_lines).exec())
        help_menu.addAction(self.act_shortcuts)
        help_menu.addAction(self.act_about)
        self.help_menu = help_menu

    def _model_lines(self) -> list[str]:
        info = self.ai.info
        if info is None:
            return [f"none loaded ({self.ai.error})" if self.ai.error else "not loaded yet"]
        return [str(getattr(info, "label", "")), f"model_id {getattr(info, 'model_id', '?')}"]

    def _on_frame_changed(self, frame: int) -> None:
        if self.current_instance is not None:
            self.frame_label.setText(f"{frame + 1} / {self.current_instance.n_frames}")
            self.request_frame(self.current_instance.path, frame)

    # -- presets and toggles -------------------------------------------------------------------
    def apply_preset(self, index: int) -> None:
        if not self.view.apply_preset(index):
            self.statusBar().showMessage(f"No preset {index + 1} for this image", 3000)

    def _rebuild_preset_menu(self) -> None:
        self.preset_menu.clear()
        self._preset_group = QActionGroup(self)
        for i, win in enumerate(self.view.presets):
            text = f"{win.name}  (W {win.width:.0f} / L {win.center:.0f})"
            if i < 9:
                text += f"\t{i + 1}"  # shown only: the window-wide "Preset N" actions take keys
            act = self.preset_menu.addAction(text)
            act.setCheckable(True)
            act.triggered.connect(lambda _=False, i=i: self.apply_preset(i))
            self._preset_group.addAction(act)
        self.preset_menu.setEnabled(bool(self.view.presets))
        self._sync_preset_menu()

    def _sync_preset_menu(self) -> None:
        current = self.view.window
        for act, win in zip(self.preset_menu.actions(), self.view.presets, strict=False):
            act.setChecked(win == current)

    def set_patient_text(self, on: bool) -> None:
        self.settings.show_patient_overlay = bool(on)
        self._each_view(lambda v: v.set_show_patient_text(on))
        save_settings(self.settings)

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent_folders[:MAX_RECENT]:
            act = self.recent_menu.addAction(menu_text(path))
            act.triggered.connect(lambda _=False, p=path: self.open_path(p))
        self.recent_menu.setEnabled(bool(self.settings.recent_folders))

    # -- drag and drop -------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        self.open_dropped(paths)

    def open_dropped(self, paths: list[str]) -> None:
        folders = [p for p in paths if os.path.isdir(p)]
        if folders:
            self.open_folder(folders[0])
        else:
            self.open_files(paths)

    # -- closing -------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop background work, save the layout; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.settings.window_geometry = base64.b64encode(bytes(self.saveGeometry())).decode()
        self.settings.window_state = base64.b64encode(bytes(self.saveState())).decode()
        self.ai.shutdown()
        self.batch.shutdown()  # cancels a running batch; the runner below joins its thread
        self.pacs.shutdown()  # cancels a query or retrieval; the runner joins its thread
        save_settings(self.settings)
        self.decoder.close()  # first: a decode in flight then ends at once
        self.runner.shutdown(timeout=10.0)
        logging.getLogger("pneumoview").removeHandler(self._log_handler)
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self.nav_keys)

