"""The PACS feature of the window: File > Open from PACS... and File > Save AI Result as DICOM...

Attached to the window through the host protocol (:mod:`pneumoview.qt.host`): actions in menu
slots, messages through the one sink, background work on the window's runner. Saving reads
the AI controller's result on screen (its prediction and CAM), so the objects say exactly what
the panel says; the folder must not be the open folder or inside it.
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog

from pneumoview.core.errors import PneumoViewError
from pneumoview.qt.host import Host, MenuSlot


class PacsController(QObject):
    def __init__(self, settings: Any = None, ai: Any = None) -> None:
        super().__init__()
        self.settings = settings
        self.ai = ai
        self.host: Host | None = None
        self.decoded: Any = None  # the image on screen (for the objects' source header)
        self.dialog: Any = None

    def attach(self, host: Host) -> None:
        self.host = host
        self.act_open = QAction("Open from &PACS...", host)  # type: ignore[arg-type]
        self.act_open.setStatusTip("Query a PACS and retrieve studies into your private cache")
        self.act_open.triggered.connect(self.open_dialog)
        host.add_menu_action(MenuSlot.FILE_OPEN, self.act_open)
        self.act_save = QAction("Save AI Result as &DICOM...", host)  # type: ignore[arg-type]
        self.act_save.setStatusTip("Write the result on screen as a DICOM Structured Report "
                                   "and a Secondary Capture with the CAM")
        self.act_save.triggered.connect(self.save_result)
        host.add_menu_action(MenuSlot.FILE_MODEL, self.act_save)
        self.act_send = QAction("Send AI Result to PACS...", host)  # type: ignore[arg-type]
        self.act_send.setStatusTip("Send the result on screen (SR and Secondary Capture) to a "
                                   "PACS node")
        self.act_send.triggered.connect(lambda: self.send_result())
        host.add_menu_action(MenuSlot.FILE_MODEL, self.act_send)
        host.imageShown.connect(self._on_image)

    def _on_image(self, decoded: Any) -> None:
        self.decoded = decoded

    # -- Open from PACS --------------------------------------------------------------------
    def open_dialog(self) -> None:
        from pneumoview.qt.pacs.dialog import PacsDialog

        host = self.host
        assert host is not None
        if self.dialog is None:
            self.dialog = PacsDialog(self.settings, host.runner, host.report_error, host.report,
                                     parent=host)  # type: ignore[arg-type]
            self.dialog.studyRetrieved.connect(self._open_retrieved)
        self.dialog.show()
        self.dialog.raise_()

    def _open_retrieved(self, folder: str) -> None:
        assert self.host is not None
        self.host.open_folder(folder)

    # -- Save AI Result as DICOM -------------------------------------------------------------
    def result_on_screen(self) -> tuple[Any, Any, Any] | None:
        """(decoded image, scored prediction, CAM or None) of the image on screen, or None."""
        ai = self.ai
        if ai is None or self.decoded is None or ai.info is None:
            return None
        prediction = ai.current_prediction()
        if prediction is None or not prediction.scored or prediction.path != self.decoded.path:
            return None
        overlay = getattr(ai, "overlay", None)
        key = (prediction.path, prediction.frame)
        cam = overlay.cam if overlay is not None and overlay.key == key else None
        return self.decoded, prediction, cam

    def save_result(self, folder: str | None = None) -> None:
        host = self.host
        assert host is not None
        found = self.result_on_screen()
        if found is None:
            host.report_error("Save AI Result as DICOM: no scored result on screen")
            return
        if folder is None:
            folder = QFileDialog.getExistingDirectory(host, "Save AI Result as DICOM into")  # type: ignore[arg-type]
            if not folder:
                return
        from pneumoview.core.dicomout.export import write_prediction
        from pneumoview.qt.workers import Job

        decoded, prediction, cam = found
        scanned = [host.current_root] if host.current_root else []
        job = Job(write_prediction, decoded, prediction, cam, self.ai.info, folder, scanned,
                  name="dicom-result")
        job.signals.result.connect(
            lambda paths: host.report(f"AI result saved as DICOM: {len(paths)} objects in "
                                      f"{folder}"))
        job.signals.error.connect(
            lambda exc: host.report_error(f"Save AI Result as DICOM: {exc}"
                                          if isinstance(exc, PneumoViewError)
                                          else f"Save AI Result as DICOM failed: {exc!r}"))
        host.runner.submit(job, lane="dicomout")

    def send_result(self, node_text: str | None = None) -> None:
        """Send the result on screen to a node (asked for, from the kept nodes, when None)."""
        host = self.host
        assert host is not None
        found = self.result_on_screen()
        if found is None:
            host.report_error("Send AI Result to PACS: no scored result on screen")
            return
        if node_text is None:
            from PySide6.QtWidgets import QInputDialog

            nodes = list(getattr(self.settings, "pacs_nodes", []) or [])
            node_text, ok = QInputDialog.getItem(host, "Send AI Result to PACS",  # type: ignore[arg-type]
                                                 "PACS node", nodes, 0, True)
            if not ok or not node_text:
                return
        from pneumoview.core.pacs.nodes import parse_node
        from pneumoview.core.pacs.transfer import Connection
        from pneumoview.core.runoptions import resolve_network
        from pneumoview.qt.pacs import jobs
        from pneumoview.qt.workers import Job

        try:
            node = parse_node(node_text)
        except PneumoViewError as exc:
            host.report_error(f"Send AI Result to PACS: {exc}")
            return
        chosen = resolve_network(None, self.settings)
        conn = Connection(calling_ae=chosen.calling_ae, timeout_s=float(chosen.timeout_s))
        decoded, prediction, cam = found
        scanned = [host.current_root] if host.current_root else []
        job = Job(jobs.save_and_send, decoded, prediction, cam, self.ai.info, node, conn,
                  scanned, name="pacs-send")
        job.bind(cancel=job.is_cancelled, progress=job.signals.progress.emit)
        job.signals.result.connect(lambda outcome: self._sent(node, outcome))
        job.signals.error.connect(
            lambda exc: host.report_error(f"Send AI Result to PACS: {exc}"
                                          if isinstance(exc, PneumoViewError)
                                          else f"Send AI Result to PACS failed: {exc!r}"))
        host.report(f"Sending the AI result to {node.label}...")
        host.runner.submit(job, lane="pacs")

    def _sent(self, node: Any, outcome: Any) -> None:
        host = self.host
        assert host is not None
        for what, reason in outcome.failed:
            host.report_error(f"Send AI Result to PACS: {os.path.basename(what)}: {reason}")
        if not outcome.failed:
            host.report(f"AI result sent to {node.label}: {len(outcome.done)} objects")

    def shutdown(self) -> None:
        if self.dialog is not None:
            self.dialog.cancel()
            self.dialog.close()


