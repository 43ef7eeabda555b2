"""Tools > Calibrate from Reviews: plots, a threshold picker, and Save Profile.

The dialog gets labelled cases (reviews matched to their report rows: labels and raw logits),
fits the recalibration at once (cheap: two small Newton fits) and shows three plots: the ROC
with the chosen operating point, the reliability curve before and after, and the probability
histograms by label. The threshold picker shows sensitivity, specificity, PPV and NPV at the
prevalence the reader sets (default: the reviewed cases' own). Save Profile runs the full
:class:`~pneumoview.core.sitefit.SiteFit` (2000 bootstrap replicates) on a worker thread and
writes the profile; the dialog never blocks while it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLineEdit,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from pneumoview.core import calibration as cal
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.sitefit import Cases, SiteFit
from pneumoview.qt.advice import advice
from pneumoview.qt.plaintext import plain_label
from pneumoview.qt.theme import FLAGGED_COLOUR

SLIDER_STEPS = 1000


class CalibrationDialog(QDialog):
    """See the module docstring. ``save(path, profile_dict)`` is the caller's writer."""

    saved = Signal(object)  # the SiteProfile written

    def __init__(self, cases: Cases, *, model_id: str, model_sha256: str, model_label: str,
                 model_temperature: float, submit: Callable[[Callable[[], Any],
                                                             Callable[[Any], None],
                                                             Callable[[Exception], None]],
                                                            None] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Calibrate from Reviews")
        self.cases = cases
        self.model = {"model_id": model_id, "model_sha256": model_sha256,
                      "model_label": model_label}
        self.model_temperature = model_temperature
        self._submit = submit
        y, z = cases.y, cases.z
        self.problem = ""
        try:
            SiteFit(metric=cal.SENSITIVITY, target=0.9, name="").check(cases, model_id,
                                                                       model_label)
            self.calibration, _ = cal.choose_calibration(y, z)
        except PneumoViewError as exc:
            self.problem = f"{exc.reason}{advice(exc)}"
            self.calibration = cal.Calibration(cal.TEMPERATURE, 1.0 / model_temperature)
        self.p = self.calibration.probabilities(z)
        self._build()
        start = cal.threshold_for(y, self.p, cal.SENSITIVITY, 0.9) if len(y) and \
            0 < y.sum() < len(y) else 0.5
        self.set_threshold(start)

    # ---- layout
    def _build(self) -> None:
        y = self.cases.y
        n_pos = int(y.sum())
        head = plain_label(
            f"{len(y)} reviewed cases ({n_pos} pneumonia, {len(y) - n_pos} none) for "
            f"{self.model['model_label']}. {self.calibration.why or ''}")
        head.setWordWrap(True)
        self.warning = plain_label(self.problem)
        self.warning.setStyleSheet(f"color: {FLAGGED_COLOUR}")
        self.warning.setWordWrap(True)
        self.warning.setVisible(bool(self.problem))
        self.roc = pg.PlotWidget(title="ROC")
        self.rel = pg.PlotWidget(title="Reliability")
        self.hist = pg.PlotWidget(title="Probability by label")
        for w, (xl, yl) in ((self.roc, ("1 - specificity", "sensitivity")),
                            (self.rel, ("predicted", "observed")),
                            (self.hist, ("probability", "cases"))):
            w.setBackground("w")
            w.setLabel("bottom", xl)
            w.setLabel("left", yl)
            w.setMinimumSize(260, 220)
        self._plot_static()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.valueChanged.connect(lambda v: self.set_threshold(v / SLIDER_STEPS,
                                                                      from_slider=True))
        self.prevalence = QDoubleSpinBox()
        self.prevalence.setRange(0.001, 0.999)
        self.prevalence.setDecimals(3)
        self.prevalence.setSingleStep(0.01)
        self.prevalence.setValue(float(y.mean()) if len(y) else 0.5)
        self.prevalence.valueChanged.connect(lambda _v: self._update_figures())
        self.readout = plain_label("")
        self.name = QLineEdit("site profile")
        form = QFormLayout()
        form.addRow("Threshold", self.slider)
        form.addRow("Site prevalence", self.prevalence)
        form.addRow("At this threshold", self.readout)
        form.addRow("Profile name", self.name)
        grid = QGridLayout()
        grid.addWidget(self.roc, 0, 0)
        grid.addWidget(self.rel, 0, 1)
        grid.addWidget(self.hist, 0, 2)
        self.buttons = QDialogButtonBox()
        self.save_button = self.buttons.addButton("Save Profile...",
                                                  QDialogButtonBox.ButtonRole.AcceptRole)
        self.save_button.setEnabled(not self.problem)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.buttons.rejected.connect(self.reject)
        self.save_button.clicked.connect(self._save_clicked)
        self.status = plain_label("")
        layout = QVBoxLayout(self)
        layout.addWidget(head)
        layout.addWidget(self.warning)
        layout.addLayout(grid)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.status, 1)
        row.addWidget(self.buttons)
        layout.addLayout(row)

    def _plot_static(self) -> None:
        y, p = self.cases.y, self.p
        if len(y) and 0 < y.sum() < len(y):
            fpr, tpr, _ = cal.roc_points(y, p)
            self.roc.plot(fpr, tpr, pen=pg.mkPen("#1565c0", width=2))
            self.roc.setTitle(f"ROC (AUROC {cal.auroc(y, p):.3f})")
        self.roc.plot([0, 1], [0, 1], pen=pg.mkPen("#9e9e9e", style=Qt.PenStyle.DashLine))
        self.point = pg.ScatterPlotItem(size=12, brush=pg.mkBrush("#c62828"))
        self.roc.addItem(self.point)
        self.rel.plot([0, 1], [0, 1], pen=pg.mkPen("#9e9e9e", style=Qt.PenStyle.DashLine))
        self.rel.addLegend(offset=(10, 10))
        before = cal.sigmoid(self.cases.z / self.model_temperature)
        for probs, colour, name in ((before, "#9e9e9e", "model"), (p, "#1565c0", "site")):
            bins = [b for b in cal.reliability(y, probs) if b["n"]]
            self.rel.plot([b["mean_p"] for b in bins], [b["frac_pos"] for b in bins],
                          pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=6,
                          symbolBrush=colour, name=f"{name} calibration")
        edges = np.linspace(0, 1, 21)
        for label, colour in ((0, (46, 125, 50, 140)), (1, (198, 40, 40, 140))):
            counts, _ = np.histogram(p[y == label], bins=edges)
            self.hist.addItem(pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=counts,
                                              brush=pg.mkBrush(colour), pen=None))
        self.hist_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#000", width=2))
        self.hist.addItem(self.hist_line)

    # ---- the picker
    @property
    def threshold(self) -> float:
        return self._threshold

    def set_threshold(self, t: float, from_slider: bool = False) -> None:
        self._threshold = float(min(max(t, 0.0), 1.0))
        if not from_slider:
            self.slider.blockSignals(True)
            self.slider.setValue(round(self._threshold * SLIDER_STEPS))
            self.slider.blockSignals(False)
        self._update_figures()

    def figures(self) -> dict[str, float]:
        r = cal.rates(self.cases.y, self.p, self._threshold)
        ppv, npv = cal.predictive_values(r["sensitivity"], r["specificity"],
                                         self.prevalence.value())
        return {"sensitivity": r["sensitivity"], "specificity": r["specificity"],
                "ppv": ppv, "npv": npv}

    def _update_figures(self) -> None:
        f = self.figures()
        self.readout.setText(
            f"threshold {self._threshold:.3f}: sensitivity {f['sensitivity']:.3f}, "
            f"specificity {f['specificity']:.3f}, PPV {f['ppv']:.3f}, NPV {f['npv']:.3f} "
            f"(at prevalence {self.prevalence.value():.3f})")
        if np.isfinite(f["specificity"]) and np.isfinite(f["sensitivity"]):
            self.point.setData([1 - f["specificity"]], [f["sensitivity"]])
        self.hist_line.setValue(self._threshold)

    # ---- saving
    def target(self) -> tuple[str, float]:
        """The picked point as a sensitivity target (the profile's rule: the highest threshold
        whose sensitivity reaches it gives back this threshold's sensitivity)."""
        sens = self.figures()["sensitivity"]
        return cal.SENSITIVITY, float(min(max(sens, 0.01), 0.99))

    def fit_profile(self) -> dict[str, Any]:
        """The profile content for the picked point (run on a worker thread by Save)."""
        metric, target = self.target()
        fit = SiteFit(metric=metric, target=target, name=self.name.text().strip() or
                      "site profile")
        return fit.fit(self.cases, model_temperature=self.model_temperature, **self.model,
                       sources={"from": "reviews"})

    def _save_clicked(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self, "Save Site Profile", "site-profile.json",
                                              "Site profiles (*.json)")
        if path:
            self.save_to(path)

    def save_to(self, path: str) -> None:
        from pneumoview.core.siteprofile import save_profile

        self.save_button.setEnabled(False)
        self.status.setText("Fitting (bootstrap)...")

        def done(data: Any) -> None:
            try:
                profile = save_profile(path, data)
            except PneumoViewError as exc:
                failed(exc)
                return
            self.status.setText(f"Saved {profile.name!r}: {profile.summary()}")
            self.save_button.setEnabled(True)
            self.saved.emit(profile)

        def failed(exc: Exception) -> None:
            self.status.setText(f"Not saved: {getattr(exc, 'reason', exc)}")
            self.save_button.setEnabled(True)

        if self._submit is None:
            try:
                done(self.fit_profile())
            except PneumoViewError as exc:
                failed(exc)
        else:
            self._submit(self.fit_profile, done, failed)
