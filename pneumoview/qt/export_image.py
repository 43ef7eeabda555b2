"""File -> Export Image: a PNG of the image at its own pixel grid (or a chosen size), with
what is shown over it (the CAM and its colour bar, the file's overlays, measurements and
annotations, rotation and flips) and a caption.

The picture is rendered from the image, not grabbed from the screen
(:mod:`pneumoview.qt.tools.export`): a 3000 x 2500 radiograph exports as 3000 x 2500 pixels
whatever the window size. The caption is burned into the pixels below the picture, so the
result travels with its context: probability, threshold, state, model version and "Not for
diagnostic use". Patient data (the view's top-left corner text) is left out unless the user
asks for it: the dialog's box is unchecked by default, because exported pictures end up in
slides and e-mails.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from pneumoview.qt.tools.export import NOTICE, render_scene, snapshot

NOT_FOR_DIAGNOSTIC_USE = NOTICE
#: Qt's PNG "quality" (zlib effort): 80 writes a 3000 x 3000 export 2.6x faster than the
#: default for files about a quarter larger (bench/bench_reading.py).
PNG_QUALITY = 80


def caption_lines(prediction: Any, threshold: float | None, model_label: str,
                  cam_shown: bool = False, status: str = "") -> list[str]:
    """The caption text: result, threshold, model and the notice (never patient data)."""
    lines: list[str] = []
    if prediction is None:
        lines.append(f"AI: {status or 'no result'}")
    elif prediction.scored:
        shown = prediction if threshold is None else prediction.with_threshold(threshold)
        lines.append(f"Probability of pneumonia: {shown.probability * 100:.1f} %   "
                     f"Threshold: {shown.threshold * 100:.1f} %   {shown.state_text}")
        if prediction.reason:
            lines.append(prediction.reason)
    else:
        lines.append(prediction.state_text)
    if cam_shown:
        lines.append("Overlay: class-activation map (where the model looked, not disease)")
    lines.append(f"Model: {model_label or 'none'}")
    lines.append(NOT_FOR_DIAGNOSTIC_USE)
    return lines


def compose(picture: QImage, lines: list[str]) -> QImage:
    """``picture`` with a caption strip of ``lines`` below it (white on near-black)."""
    font = QFont()
    font.setPointSize(11)
    metrics = QFontMetrics(font)
    pad = 8
    line_h = metrics.height()
    width = max(picture.width(), max((metrics.horizontalAdvance(t) for t in lines), default=0)
                + 2 * pad)
    height = picture.height() + pad * 2 + line_h * len(lines)
    out = QImage(width, height, QImage.Format.Format_RGB32)
    out.fill(QColor(20, 20, 20))
    p = QPainter(out)
    p.drawImage(0, 0, picture)
    p.setFont(font)
    y = picture.height() + pad
    for i, text in enumerate(lines):
        is_notice = text == NOT_FOR_DIAGNOSTIC_USE
        p.setPen(QColor(255, 200, 60) if is_notice else QColor(235, 235, 235))
        p.drawText(QRect(pad, y + i * line_h, width - 2 * pad, line_h),
                   int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
    p.end()
    return out


def grab_view(view: Any, include_patient: bool) -> QImage:
    """Render the image view (its overlays included) with or without the patient corner text."""
    had_text = bool(getattr(view, "show_patient_text", True))
    setter = getattr(view, "set_show_patient_text", None)
    try:
        if setter is not None and had_text != include_patient:
            setter(include_patient)
        return view.grab().toImage()
    finally:
        if setter is not None and had_text != include_patient:
            setter(had_text)


def patient_lines(view: Any) -> list[str]:
    """The view's patient/study corner text (name, ID, dates), whatever its toggle says."""
    had = bool(getattr(view, "show_patient_text", True))
    try:
        view.show_patient_text = True
        return [t for t in view.corner_text().get("tl", "").split("\n") if t]
    finally:
        view.show_patient_text = had


def _png(path: str | Path) -> Path:
    out = Path(path)
    return out if out.suffix.lower() == ".png" else out.with_suffix(".png")


def _save(image: QImage, out: Path) -> Path:
    if not image.save(str(out), "PNG", PNG_QUALITY):
        raise OSError(f"{out}: cannot write the PNG (folder missing or read-only?)")
    return out


def export_job(view: Any, path: str | Path, lines: list[str], include_patient: bool = False,
               long_side: int | None = None) -> Callable[[], Path]:
    """Take what ``view`` shows now (GUI thread) and return the work that renders and saves
    it, to run in a worker thread (a 3000 x 3000 export takes seconds). A widget that is not
    an image view is grabbed at once (its screen pixels with the caption)."""
    out = _png(path)
    if getattr(view, "decoded", None) is None or not hasattr(view, "image_space"):
        image = compose(grab_view(view, include_patient), lines)
        return lambda: _save(image, out)
    scene = snapshot(view)
    patient = patient_lines(view) if include_patient else None
    return lambda: _save(render_scene(scene, lines, long_side, patient), out)


def export_view(view: Any, path: str | Path, lines: list[str],
                include_patient: bool = False, long_side: int | None = None) -> Path:
    """Save the captioned PNG now (``long_side``: the image's longer side in pixels, None for
    its own grid); raises OSError when it cannot be written."""
    return export_job(view, path, lines, include_patient, long_side)()


#: Long-side choices of the Export dialog besides the image's own grid.
EXPORT_SIZES = (4096, 2048, 1024, 512)


class ExportDialog(QDialog):
    """Asks for the size and whether to include patient data (off by default)."""

    def __init__(self, parent: QWidget | None = None,
                 shape: tuple[int, int] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export Image")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("The PNG shows the image at full resolution with the overlay, "
                                "measurements and annotations as shown, and a caption with "
                                "the AI result and model version."))
        self.size = QComboBox()
        own = f"The image's own pixels ({shape[1]} x {shape[0]})" if shape else "Own pixels"
        self.size.addItem(own, None)
        for side in EXPORT_SIZES:
            self.size.addItem(f"Longer side {side} pixels", side)
        layout.addWidget(self.size)
        self.include_patient = QCheckBox("Include patient data (name, ID, dates)")
        self.include_patient.setChecked(False)
        layout.addWidget(self.include_patient)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


def ask_and_export(parent: QWidget, view: Any, lines: list[str],
                   suggested: str = "pneumoview.png") -> Path | None:
    """The File -> Export Image flow: options, file name, save. None when cancelled."""
    choice = ask_export_options(parent, view, suggested)
    if choice is None:
        return None
    out, include_patient, long_side = choice
    return export_view(view, out, lines, include_patient, long_side)


def ask_export_options(parent: QWidget, view: Any, suggested: str = "pneumoview.png",
                       ) -> tuple[Path, bool, int | None] | None:
    """Size, patient data and file name (overwriting confirmed): ``(path, include_patient,
    long_side)``, or None when cancelled."""
    decoded = getattr(view, "decoded", None)
    transform = getattr(view, "view_transform", None)
    shape = None
    if decoded is not None:
        shape = transform.display_shape(decoded.shape) if transform else decoded.shape
    dialog = ExportDialog(parent, shape)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    path, _ = QFileDialog.getSaveFileName(parent, "Export Image", suggested, "PNG image (*.png)")
    if not path:
        return None
    out = Path(path) if Path(path).suffix.lower() == ".png" else Path(path).with_suffix(".png")
    if out != Path(path) and out.exists():
        # the dialog confirmed overwriting the name it returned, not the one with '.png' added
        answer = QMessageBox.question(
            parent, "Export Image", f"{out.name} already exists. Replace it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return None
    return out, dialog.include_patient.isChecked(), dialog.size.currentData()
