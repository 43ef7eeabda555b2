"""What a feature controller may ask of the window that hosts it.

A controller (the AI, the batch, later the worklist, reading tools, PACS) gets a :class:`Host`
in its ``attach(host)`` and uses only what is declared here: it adds its actions to a
:class:`MenuSlot` (a place in a menu, never found by its label text), its panels as docks, its
text to the status bar, and sends every message through the one sink (:meth:`Host.report` /
:meth:`Host.report_error`: status bar and Log panel, no dialogs). :class:`~pneumoview.qt.
mainwindow.MainWindow` is the host; a test may supply any object with these members.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import Qt

if TYPE_CHECKING:
    from PySide6.QtCore import SignalInstance
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QDockWidget, QWidget

    from pneumoview.qt.radiographview import RadiographView
    from pneumoview.qt.studytree import StudyTree
    from pneumoview.qt.workers import WorkRunner


class MenuSlot(Enum):
    """Places in the menus where controllers add actions, in the order they add them."""

    #: File, right after Open Folder...: other ways to take in a folder (Batch Flag Folder...,
    #: Resume Batch Report...).
    FILE_OPEN = "file-open"
    #: File, in its own group before Quit: the model and what leaves the viewer (Load Model...,
    #: Export Image...; a PACS send belongs here).
    FILE_MODEL = "file-model"
    #: View, in its own group at the end: overlays a feature draws on the image (CAM).
    VIEW_OVERLAYS = "view-overlays"
    #: Go, in its own group at the end: moving between results (Next Flagged).
    GO_RESULTS = "go-results"
    #: A Tools menu after Go, made when the first action arrives: reading tools.
    TOOLS = "tools"


class DockArea(Enum):
    LEFT = Qt.DockWidgetArea.LeftDockWidgetArea
    RIGHT = Qt.DockWidgetArea.RightDockWidgetArea
    BOTTOM = Qt.DockWidgetArea.BottomDockWidgetArea


#: Object names of the window's own docks, for ``add_dock(tab_with=...)``.
STUDIES_DOCK = "dock-studies"
DETAILS_DOCK = "dock-details"
LOG_DOCK = "dock-log"


class Host(Protocol):
    """The window's side of the contract (see the module docstring)."""

    # what is on screen
    view: RadiographView
    tree: StudyTree
    runner: WorkRunner  # background jobs; pending work here is what --screenshot waits for
    current_root: str | None  # the folder open in the viewer, if any

    folderOpened: SignalInstance  # (str) a folder starts being read
    currentInstanceChanged: SignalInstance  # (Instance) the reader chose another image
    imageShown: SignalInstance  # (DecodedImage) an image or frame is on screen
    imageArriving: SignalInstance  # (DecodedImage) decoded for the screen, shown a moment later
    imageFailed: SignalInstance  # (str path, str message)

    def add_menu_action(self, slot: MenuSlot, action: QAction) -> None:
        """Put ``action`` in ``slot`` (after what is there) and make its shortcut window-wide."""

    def add_dock(self, name: str, title: str, widget: QWidget, area: DockArea, *,
                 tab_with: str | None = None, raised: bool = False,
                 hidden: bool = False) -> QDockWidget:
        """A dock named ``name`` (kept in saved layouts), listed in View's panel entries."""

    def show_dock(self, dock: QDockWidget, fraction: float | None = None) -> None:
        """Show and raise ``dock`` (with ``fraction``: at least that share of the height)."""

    def add_status_widget(self, widget: QWidget) -> None:
        """A permanent widget on the right of the status bar."""

    def report(self, message: str) -> None:
        """Information for the user: the status bar and the Log panel."""

    def report_error(self, message: str) -> None:
        """The one error sink: the status bar and the Log panel (never a dialog)."""

    def open_in_viewer(self, path: str) -> None:
        """Show the file ``path`` (selecting it in the study tree when it is there)."""

    def open_folder(self, path: str) -> None:
        """Read the folder ``path`` into the study tree (studies retrieved from a PACS)."""

    def installEventFilter(self, obj: Any) -> None:
        """Qt's: a controller may watch the window's events (its first show)."""
