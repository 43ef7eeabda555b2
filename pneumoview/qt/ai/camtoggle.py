"""Whether the CAM overlay shows, and how strongly: the panel's check box, View > Show CAM
Overlay and the opacity slider, kept in step.

Flagged images show the map by default, others only when the user asks
(:func:`pneumoview.core.aistate.cam_shown`); the user's choice holds for the image on screen
until another image is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QAction

from pneumoview.core.aistate import cam_shown
from pneumoview.qt.ai.cam import CamOverlay
from pneumoview.qt.ai.panel import AIPanel
from pneumoview.qt.ai.saving import DeferredSave
from pneumoview.qt.radiographview import AI_LAYER_Z

ImageKey = tuple[str, int]


class CamToggle:
    """The overlay's visibility and opacity. ``on_screen()`` is the (path, frame) on screen,
    ``prediction()`` its result as shown (or None)."""

    def __init__(self, overlay: CamOverlay, panel: AIPanel, settings: Any, saver: DeferredSave,
                 on_screen: Callable[[], ImageKey | None],
                 prediction: Callable[[], Any]) -> None:
        self.overlay = overlay
        self.panel = panel
        self.settings = settings
        self.saver = saver
        self.on_screen = on_screen
        self.prediction = prediction
        self.wanted: bool | None = None  # the user's choice for the current image
        self.action: QAction | None = None

    def make_action(self, parent: Any) -> QAction:
        """View > Show CAM Overlay (C), checked whenever the map is on."""
        self.action = QAction("Show &CAM Overlay", parent)
        self.action.setShortcut("C")
        self.action.setCheckable(True)
        self.action.triggered.connect(lambda on: self.set_visible(bool(on)))
        return self.action

    def move_layer(self, old_view: Any, new_view: Any) -> None:
        """The overlay leaves ``old_view`` (if any) for ``new_view``."""
        if old_view is not None:
            old_view.remove_layer(self.overlay.item)
        new_view.add_layer(self.overlay.item, z=AI_LAYER_Z)

    def new_image(self, key: ImageKey) -> None:
        """Another image is on screen: back to the default, its map hidden until it comes."""
        self.wanted = None
        if self.overlay.key != key:
            self.overlay.set_visible(False)

    def should_show(self) -> bool:
        return cam_shown(self.wanted, self.prediction())

    def show_map(self, key: ImageKey, cam: Any) -> None:
        """The map of the image on screen has arrived (or was cached)."""
        self.overlay.set_cam(key, cam)
        self.overlay.set_visible(self.should_show())
        self.sync_checks()

    def sync_checks(self) -> None:
        """The panel's check box and the menu action say whether the map is on."""
        self.panel.set_cam_checked(self.should_show())
        self.sync_action()

    def set_visible(self, on: bool) -> None:
        self.wanted = bool(on)
        self.overlay.set_visible(on and self.overlay.key == self.on_screen())
        self.panel.set_cam_checked(on)
        self.sync_action()

    def toggle(self) -> None:
        self.set_visible(not self.should_show())

    def sync_action(self) -> None:
        if self.action is not None:
            self.action.blockSignals(True)
            self.action.setChecked(self.should_show())
            self.action.blockSignals(False)

    def set_opacity(self, value: float) -> None:
        """The opacity slider moved: the overlay follows, the setting is saved shortly."""
        self.overlay.set_opacity(value)
        if self.settings is not None and hasattr(self.settings, "cam_opacity"):
            self.settings.cam_opacity = int(round(value * 100))
            self.saver.later()
