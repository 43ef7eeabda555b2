"""The window's own actions (File, View, Go, Help), built in one place: ``window.acts``.

Each is a :class:`QAction` child of the window, added to it so that its shortcut works
wherever the focus is (Help > Keyboard Shortcuts lists them from there). The menus that show
them are put together by ``MainWindow._build_menus``; the feature controllers add their own
actions through the host protocol (:class:`~pneumoview.qt.host.MenuSlot`), not here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QApplication

from pneumoview.core.settings import save_settings
from pneumoview.qt.navkeys import NavigationKeys
from pneumoview.qt.radiographview import RadiographView
from pneumoview.qt.viewportgrid import Layout

if TYPE_CHECKING:
    from pneumoview.qt.mainwindow import MainWindow

#: View > Layout: (layout, menu text, shortcut)
LAYOUTS = ((Layout.ONE, "&1 x 1", "Alt+1"), (Layout.ONE_BY_TWO, "1 x &2", "Alt+2"),
           (Layout.TWO_BY_TWO, "2 x 2 (&4)", "Alt+4"))

Shortcut = str | QKeySequence.StandardKey | list[str] | None


class WindowActions:
    """File / View / Go / Help actions of ``window`` and the arrow-key filter that drives
    Go's image and series steps from anywhere in the viewer page."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        w = window
        a = self._action
        opener = w.opener
        self.open_folder = a("Open &Folder...", opener.choose_folder,
                             QKeySequence.StandardKey.Open)
        self.open_file = a("Open F&ile...", opener.choose_files, "Ctrl+Shift+O")
        self.demo = a("Open &Demo", opener.open_demo)
        self.clear_cache = a("Clear Index &Cache", opener.clear_index_cache)
        self.clear_cache.setStatusTip("Delete the cache of folder contents (it holds patient "
                                      "names and IDs); folders are read again next time")
        self.quit = a("&Quit", w.close, QKeySequence.StandardKey.Quit)
        self._build_view()
        self._build_go()
        self.presets = [a(f"Preset {i}", lambda _=False, i=i: w.preset_menu.apply(i - 1),
                          str(i)) for i in range(1, 10)]
        self._build_viewport_actions()
        self.reset_layout = a("Reset Window &Layout", w.reset_layout)
        self.reset_layout.setToolTip("Show every panel again where it started")
        key = Qt.Key
        self.nav_keys = NavigationKeys(w, {
            key.Key_Down: self.next, key.Key_Right: self.next,
            key.Key_Up: self.prev, key.Key_Left: self.prev,
            key.Key_PageDown: self.next_series, key.Key_PageUp: self.prev_series,
        }, active=lambda: w.stack.currentWidget() is w.viewer_page)
        QApplication.instance().installEventFilter(self.nav_keys)
        self.shortcuts: QAction | None = None  # Help's, made by build_help (after the features)
        self.about: QAction | None = None

    def _action(self, text: str, slot: Callable[..., object], shortcut: Shortcut = None,
                checkable: bool = False) -> QAction:
        action = QAction(text, self.window)
        if shortcut is not None:
            keys = shortcut if isinstance(shortcut, list) else [shortcut]
            action.setShortcuts([QKeySequence(k) for k in keys])
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.window.addAction(action)  # shortcuts work wherever the focus is in the window
        return action

    def _build_view(self) -> None:
        a, w = self._action, self.window
        self.fit = a("&Fit to Window", lambda: self._zoom(RadiographView.fit), "F")
        self.one = a("&1:1 (Actual Pixels)", lambda: self._zoom(RadiographView.one_to_one),
                     "Ctrl+0")
        self.invert = a("&Invert", lambda: w.view.toggle_invert(), "I", checkable=True)
        self.reset = a("&Reset", lambda: self._zoom(RadiographView.reset), "R")
        self.patient = a("Show &Patient Text", self.set_patient_text, "P", checkable=True)
        self.overlays = a("Show File &Overlays", lambda on: self._each_view(
            lambda v: v.set_show_overlays(graphics=on)), "O", checkable=True)
        self.overlays.setChecked(w.view.show_graphics_overlays)
        self.roi_overlays = a("Show File &ROI Overlays", lambda on: self._each_view(
            lambda v: v.set_show_overlays(roi=on)), checkable=True)
        self.roi_overlays.setChecked(w.view.show_roi_overlays)
        self.patient.setChecked(w.settings.show_patient_overlay)

    def _build_go(self) -> None:
        a, w = self._action, self.window
        self.next = a("&Next Image", lambda: w.tree.step_instance(1), ["Down", "Right"])
        self.prev = a("&Previous Image", lambda: w.tree.step_instance(-1), ["Up", "Left"])
        self.next_series = a("Next &Series", lambda: w.tree.step_series(1), "PgDown")
        self.prev_series = a("Previous S&eries", lambda: w.tree.step_series(-1), "PgUp")
        cine = w.frame_bar.cine
        self.play = a("&Play / Pause Frames", lambda: cine.toggle(), "Space")
        self.next_frame = a("Next &Frame", lambda: cine.step(1), ".")
        self.prev_frame = a("Previous Fra&me", lambda: cine.step(-1), ",")

    def _build_viewport_actions(self) -> None:
        w = self.window
        group = QActionGroup(w)
        self.layouts: dict[Layout, QAction] = {}
        for layout, text, key in LAYOUTS:
            act = self._action(f"Layout {text}", lambda _=False, k=layout: w.set_layout(k),
                               key, checkable=True)
            act.setText(text)
            act.setToolTip(f"Show {layout.label} viewports; click one to make it active")
            group.addAction(act)
            self.layouts[layout] = act
        self.layouts[Layout.ONE].setChecked(True)
        self.compare_prior = self._action("&Compare with Prior", w.compare_with_prior,
                                          "Ctrl+P")
        self.compare_prior.setToolTip("Show this patient's most recent earlier study "
                                      "beside the current one (1 x 2)")
        self.sync_zoom = self._action("S&ynchronise Zoom/Pan", self._set_sync_zoom,
                                      checkable=True)
        self.sync_zoom.setChecked(w.sync.zoom_pan)
        self.sync_window = self._action("Synchronise &Window/Level", self._set_sync_window,
                                        checkable=True)
        self.sync_window.setChecked(w.sync.window)

    def build_help(self, model_lines: Callable[[], list[str]]) -> tuple[QAction, QAction]:
        """Help's actions: made last, since the shortcut list reads every action."""
        from pneumoview.qt.helpdialogs import AboutDialog, ShortcutsDialog

        w = self.window
        self.shortcuts = self._action("&Keyboard Shortcuts",
                                      lambda: ShortcutsDialog(w).exec(), "F1")
        self.about = self._action("&About PneumoView",
                                  lambda: AboutDialog(w, model_lines).exec())
        return self.shortcuts, self.about

    # -- what they do --------------------------------------------------------------------------
    def _each_view(self, fn: Callable[[RadiographView], object]) -> None:
        for vp in self.window.viewports.viewports:
            fn(vp.view)

    def _zoom(self, fn: Callable[[RadiographView], object]) -> None:
        """Fit, 1:1, Reset on the active view; the others follow when zoom is synchronised."""
        w = self.window
        fn(w.view)
        w.sync.follow_range(w.active_viewport)

    def set_patient_text(self, on: bool) -> None:
        settings = self.window.settings
        settings.show_patient_overlay = bool(on)
        self._each_view(lambda v: v.set_show_patient_text(on))
        save_settings(settings)

    def _set_sync_zoom(self, on: bool) -> None:
        w = self.window
        w.sync.zoom_pan = bool(on)
        if on:
            w.sync.follow_range(w.active_viewport)

    def _set_sync_window(self, on: bool) -> None:
        self.window.sync.window = bool(on)
