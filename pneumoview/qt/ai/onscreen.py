"""The image on screen and its result: follow the active view, show a cached result or ask the
worker, and show only answers for the image still on screen.

Results are cached per (path, frame, forced) in ``AIState.results``, so going back to an image,
or moving the threshold, never runs the model again; an answer for an image the reader has left
is cached but not shown. A newer request replaces any queued one (:attr:`inflight` holds the
latest).

The request goes out when the image is decoded (:meth:`on_image_arriving`), not when it is on
screen: the model runs while the viewer prepares and draws the image, and its answers wait in
the cache until the image is shown (:meth:`on_image_shown`), so a probability or a map never
shows over the previous image.
"""

from __future__ import annotations

from typing import Any

from pneumoview.core.aistate import AIState
from pneumoview.qt.ai.camtoggle import CamToggle
from pneumoview.qt.ai.panel import AIPanel
from pneumoview.qt.ai.treecolumn import AITreeColumn
from pneumoview.qt.ai.worker import AIResult, CamResult, InferenceWorker

ImageKey = tuple[str, int]


class OnScreenFollower:
    """Follows :attr:`view` and the image it shows (:attr:`current`, :attr:`current_decoded`)
    and keeps the panel, the CAM and the tree column showing that image's result."""

    def __init__(self, state: AIState, worker: InferenceWorker, panel: AIPanel, cam: CamToggle,
                 column: AITreeColumn) -> None:
        self.state = state
        self.results = state.results
        self.worker = worker
        self.panel = panel
        self.cam = cam
        self.column = column
        self.view: Any = None
        self.current: ImageKey | None = None
        self.current_decoded: Any = None
        self.inflight: set[tuple[str, int, bool]] = set()
        self.cam_pending: set[tuple[str, int]] = set()  # scored; the map is on its way

    # -- what is on screen -----------------------------------------------------------------
    def attach_view(self, view: Any) -> None:
        """The window's view, with the map's layer on it."""
        self.view = view
        self.cam.move_layer(None, view)

    def follow_view(self, view: Any) -> None:
        """The map moves to the active viewport's view; the window then announces that
        viewport's image, whose cached result and map are shown (or computed)."""
        if view is self.view:
            return
        self.cam.move_layer(self.view, view)
        self.view = view
        self._no_image()

    def on_instance_changed(self, _instance: Any) -> None:
        """The reader moved on: hide the old image's result and map at once."""
        self.current = None
        self.current_decoded = None
        self.cam.overlay.set_visible(False)
        self.panel.show_pending("Loading image...")

    def on_image_failed(self, _path: str, _message: str) -> None:
        self._no_image()

    def _no_image(self) -> None:
        self.current = None
        self.current_decoded = None
        self.cam.overlay.clear()
        self.panel.clear("No image")

    def current_path(self) -> str | None:
        return None if self.current is None else self.current[0]

    def current_prediction(self) -> Any:
        if self.current is None:
            return None
        return self.state.shown(self.results.for_image(self.current))

    # -- asking for a result ---------------------------------------------------------------
    def on_image_arriving(self, decoded: Any) -> None:
        """An image is decoded and about to be shown: ask the worker now unless its result is
        cached or asked for (what shows is decided when it is on screen)."""
        key = (decoded.path, decoded.frame)
        if key == self.current:
            return
        rkey = self.results.key(key)
        if rkey in self.results.predictions or rkey in self.inflight:
            return
        if self.state.info is None and self.state.error:
            return  # not scored: the panel says why once the image is shown
        self.state.note_header(decoded.path, decoded.header)
        self._ask(decoded, rkey[2])

    def on_image_shown(self, decoded: Any) -> None:
        """A new image (or frame) is on screen: show its cached result or ask the worker."""
        key = (decoded.path, decoded.frame)
        if key == self.current:
            self.current_decoded = decoded
            return
        self.current = key
        self.current_decoded = decoded
        self.state.note_header(decoded.path, decoded.header)
        self.cam.new_image(key)
        rkey = self.results.key(key)
        cached = self.results.predictions.get(rkey)
        if cached is not None:
            self.show_result(cached, self.results.elapsed.get(rkey))
            cam = self.results.cams.get(key)
            if cam is not None:
                self.cam.show_map(key, cam)
            elif cached.scored and key not in self.cam_pending:
                self._submit(decoded, rkey[2])  # the map was evicted: compute it again
            return
        if rkey in self.inflight:  # asked for when it was decoded
            self._show_pending()
            return
        self._submit(decoded, rkey[2])

    def _submit(self, decoded: Any, force: bool) -> None:
        error = self.state.error
        if self.state.info is None and error and self.worker.started \
                and not self.worker.pending():
            self.panel.show_error(f"Not scored: AI unavailable ({error})")
            return
        self._show_pending()
        self._ask(decoded, force)

    def _show_pending(self) -> None:
        self.panel.show_pending("Loading model..." if self.state.info is None else "Scoring...")

    def _ask(self, decoded: Any, force: bool) -> None:
        self.inflight = {(decoded.path, decoded.frame, force)}  # older queued ones are dropped
        self.worker.submit(decoded.path, decoded.frame, decoded, force=force)

    def request_current(self) -> None:
        """Ask again for the image on screen (another model, or the gate overridden)."""
        if self.current_decoded is not None:
            decoded = self.current_decoded
            self.current = None
            self.on_image_shown(decoded)

    def score_anyway(self) -> None:
        if self.current is None or self.current_decoded is None:
            return
        self.results.forced.add(self.current)
        self.request_current()

    def model_ready(self, replaced: bool) -> None:
        """A model has loaded: another model's results leave the screen; the first model
        answers an image that was refused while none was loaded."""
        if replaced:
            self.clear_results()
            self.request_current()
        elif self.current is not None:
            rkey = self.results.key(self.current)
            if rkey not in self.results.predictions and rkey not in self.inflight:
                self.request_current()

    def model_unavailable(self, message: str) -> None:
        if self.current is not None:
            self.panel.show_error(f"Not scored: AI unavailable ({message})")

    def clear_results(self) -> None:
        self.inflight.clear()
        self.cam_pending.clear()
        self.results.clear()
        self.cam.overlay.clear()
        self.column.refresh()

    # -- answers ---------------------------------------------------------------------------
    def on_predicted(self, result: AIResult) -> None:
        pred = result.prediction
        rkey = (result.path, result.frame, result.force)
        self.inflight.discard(rkey)
        if result.cam_follows:
            self.cam_pending.add(result.key)
        if pred is not None:
            if not self.state.keep_prediction(rkey, pred, result.elapsed_ms):
                return  # made by a model that has since been replaced
            self.column.update_path(result.path)
        if self.current is None or rkey != self.results.key(self.current):
            return  # stale: the reader has moved on
        if pred is None:
            self.panel.show_error(f"Not scored: {result.error}")
            return
        self.show_result(pred, result.elapsed_ms)

    def show_result(self, pred: Any, elapsed_ms: float | None) -> None:
        from pneumoview.core.oppoints import OVERRIDE_POINT, point_text

        shown = self.state.shown(pred)
        if shown.scored:  # the image's own operating point (population, profile, by hand)
            self.panel.set_threshold(shown.threshold)
        self.panel.show_operating_point(point_text(shown.operating_point)
                                        if shown.scored and shown.operating_point else "",
                                        by_hand=shown.operating_point == OVERRIDE_POINT)
        self.panel.show_prediction(shown, elapsed_ms)
        self.cam.sync_checks()

    def reshow_current(self) -> None:
        """The image on screen read again (its operating point may have changed)."""
        if self.current is not None:
            cached = self.results.for_image(self.current)
            if cached is not None:
                self.show_result(cached, self.results.elapsed.get(self.results.key(
                    self.current)))

    def on_cam(self, result: CamResult) -> None:
        self.cam_pending.discard(result.key)
        self.results.cams.put(result.key, result.cam)
        if result.key == self.current:
            self.cam.show_map(result.key, result.cam)
            self.panel.cam_status.setText(f"map computed in {result.cam_ms:.0f} ms")
