"""The AI panel: probability, threshold state, the threshold control, model facts and CAM controls.

A passive view: it shows what it is given and emits what the user asks for; the controller
(:mod:`pneumoview.qt.ai.controller`) owns the worker and decides. The threshold relabels a shown
prediction through :meth:`Prediction.with_threshold`, never by running the model again.
"Not for diagnostic use" is permanent: it is part of the panel's layout, not a message.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from pneumoview.core.modelmetrics import (
    finite_number,
    format_metric,
    per_source_text,
    split_metrics,
)
from pneumoview.core.paths import display_path
from pneumoview.qt.ai.cam import CamColourBar
from pneumoview.qt.plaintext import make_plain, tip
from pneumoview.qt.theme import FLAGGED_COLOUR, MUTED_COLOUR, NOT_FLAGGED_COLOUR

#: Shown in place of the threshold until a model says what it is (never a made-up 50 %).
THRESHOLD_LOADING = "loading..."
THRESHOLD_NONE = "n/a"
CAM_NOTE = ("The map shows where the model looked, not disease. It is scaled per image, so a "
            "low-probability image glows as brightly as a high one.")
SLIDER_STEPS = 1000


class ProbabilityBar(QWidget):
    """A horizontal bar filled to the probability, with a marker at the threshold."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.probability: float | None = None
        self.threshold: float | None = None  # no marker until a model gives one
        self.colour = QColor(MUTED_COLOUR)
        self.setMinimumHeight(22)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_values(self, probability: float | None, threshold: float | None,
                   colour: str) -> None:
        self.probability, self.threshold, self.colour = probability, threshold, QColor(colour)
        self.setToolTip("" if probability is None or threshold is None else
                        f"probability {probability:.1%}; threshold {threshold:.1%} (marker)")
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        bar = QRectF(1, 4, self.width() - 2, self.height() - 8)
        p.fillRect(bar, QColor(60, 60, 60, 60))
        if self.probability is not None:
            filled = QRectF(bar.left(), bar.top(), bar.width() * self.probability, bar.height())
            p.fillRect(filled, self.colour)
        if self.threshold is not None:
            x = bar.left() + bar.width() * self.threshold
            p.setPen(QPen(self.palette().windowText().color(), 2))
            p.drawLine(int(x), 0, int(x), self.height())
        p.end()


class AIPanel(QWidget):
    """The AI dock's contents. Signals carry user intent; the controller acts on them."""

    thresholdChanged = Signal(float)
    thresholdReset = Signal()
    scoreAnywayRequested = Signal()
    camToggled = Signal(bool)
    camOpacityChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # None until a model is loaded: the panel shows "loading...", not a placeholder
        self.default_threshold: float | None = None
        self.threshold: float | None = None
        self.prediction: Any = None  # the Prediction shown (already at self.threshold)
        self._chosen_point = False  # the shown threshold is a population's or a profile's
        layout = QVBoxLayout(self)
        self._build_result(layout)
        layout.addWidget(self._build_threshold_box())
        layout.addWidget(self._build_cam_box())
        self._build_model_facts(layout)
        layout.addStretch(1)
        for label in self.findChildren(QLabel):  # model metadata and header text: never markup
            make_plain(label)
        self._set_threshold_widgets(self.threshold)

    def _build_result(self, layout: QVBoxLayout) -> None:
        """The notice, the probability, its bar, the state line and "Score anyway"."""
        self.notice = QLabel("Not for diagnostic use")
        self.notice.setObjectName("notForDiagnosticUse")
        self.notice.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.notice.setStyleSheet("QLabel { background: #fff3cd; color: #664d03; "
                                  "font-weight: bold; padding: 4px; border-radius: 3px; }")
        self.notice.setToolTip("Research software: the model's output must not be used to "
                               "diagnose or treat anyone.")
        layout.addWidget(self.notice)

        self.percent = QLabel("-")
        big = QFont(self.percent.font())
        big.setPointSizeF(big.pointSizeF() * 2.2)
        big.setBold(True)
        self.percent.setFont(big)
        self.percent.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.percent.setToolTip("Calibrated probability of pneumonia given by the model")
        layout.addWidget(self.percent)
        self.bar = ProbabilityBar()
        layout.addWidget(self.bar)
        self.state = QLabel("No image")
        self.state.setObjectName("aiState")
        self.state.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.state.setWordWrap(True)
        layout.addWidget(self.state)
        self.score_anyway = QPushButton("Score anyway")
        self.score_anyway.setToolTip("Run the model although the file's tags or the input gate "
                                     "say this is not an upright frontal chest radiograph; the "
                                     "number may mean nothing")
        self.score_anyway.clicked.connect(self.scoreAnywayRequested)
        self.score_anyway.setVisible(False)
        layout.addWidget(self.score_anyway)

    def _build_threshold_box(self) -> QGroupBox:
        thr_box = QGroupBox("Threshold")
        thr_layout = QVBoxLayout(thr_box)
        row = QHBoxLayout()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setToolTip("Images with a probability at or above the threshold are flagged")
        self.spin = QDoubleSpinBox()
        self.spin.setRange(0.0, 100.0)
        self.spin.setDecimals(1)
        self.spin.setSingleStep(0.5)
        self.spin.setSuffix(" %")
        self.spin.setKeyboardTracking(False)
        row.addWidget(self.slider, 1)
        row.addWidget(self.spin)
        thr_layout.addLayout(row)
        self.reset_button = QPushButton("Reset to model default")
        thr_layout.addWidget(self.reset_button)
        # which operating point the shown image is read at (population, profile, by hand)
        self.operating_point = QLabel("")
        self.operating_point.setObjectName("aiOperatingPoint")
        self.operating_point.setWordWrap(True)
        self.operating_point.setVisible(False)
        thr_layout.addWidget(self.operating_point)
        form = QFormLayout()
        self.sensitivity = QLabel("n/a")
        self.specificity = QLabel("n/a")
        self.metrics_note = QLabel("")
        self.metrics_note.setWordWrap(True)
        form.addRow("Sensitivity (test):", self.sensitivity)
        form.addRow("Specificity (test):", self.specificity)
        thr_layout.addLayout(form)
        self.per_source = QLabel("")
        self.per_source.setWordWrap(True)
        self.per_source.setVisible(False)
        thr_layout.addWidget(self.per_source)
        thr_layout.addWidget(self.metrics_note)
        self.slider.valueChanged.connect(self._on_slider)
        self.spin.valueChanged.connect(self._on_spin)
        self.reset_button.clicked.connect(self.thresholdReset)
        return thr_box

    def _build_cam_box(self) -> QGroupBox:
        cam_box = QGroupBox("Class-activation map")
        cam_layout = QVBoxLayout(cam_box)
        self.cam_check = QCheckBox("Show map (C)")
        self.cam_check.toggled.connect(self._on_cam_toggled)
        cam_layout.addWidget(self.cam_check)
        orow = QHBoxLayout()
        orow.addWidget(QLabel("Opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.valueChanged.connect(lambda v: self.camOpacityChanged.emit(v / 100.0))
        orow.addWidget(self.opacity, 1)
        cam_layout.addLayout(orow)
        self.colour_bar = CamColourBar()
        cam_layout.addWidget(self.colour_bar)
        self.cam_note = QLabel(CAM_NOTE)
        self.cam_note.setWordWrap(True)
        self.cam_note.setStyleSheet("QLabel { color: #8a6d3b; }")
        self.cam_note.setVisible(False)
        cam_layout.addWidget(self.cam_note)
        self.cam_status = QLabel("")
        cam_layout.addWidget(self.cam_status)
        return cam_box

    def _build_model_facts(self, layout: QVBoxLayout) -> None:
        """Why the last model was refused, then the model, device and inference time."""
        facts = QFormLayout()
        # why the model chosen last was refused (the one in use, if any, stays): it stays on
        # screen until a model loads, unlike the status bar message
        self.model_error = QLabel("")
        self.model_error.setObjectName("aiModelError")
        self.model_error.setTextFormat(Qt.TextFormat.PlainText)
        self.model_error.setWordWrap(True)
        self.model_error.setStyleSheet(f"QLabel {{ color: {FLAGGED_COLOUR}; }}")
        self.model_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model_error.setVisible(False)
        layout.addWidget(self.model_error)
        self.model_label = QLabel("loading...")
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.device_label = QLabel("-")
        self.time_label = QLabel("-")
        facts.addRow("Model:", self.model_label)
        facts.addRow("Engine:", self.device_label)  # engine, precision and device
        facts.addRow("Inference:", self.time_label)
        layout.addLayout(facts)

    # -- model and threshold ---------------------------------------------------------------
    def set_model(self, info: Any, device: str = "", error: str = "") -> None:
        """Show the loaded model (``info`` = ModelInfo) or why there is none."""
        self._profile = None
        if info is None:
            self.model_label.setText(error or "no model")
            self.model_label.setStyleSheet(f"QLabel {{ color: {FLAGGED_COLOUR}; }}"
                                           if error else "")
            self.model_label.setToolTip(tip(error))
            self.device_label.setText("-")
            self.default_threshold = self.threshold = None
            self._set_threshold_widgets(None, THRESHOLD_NONE)
            self._set_metrics(None)
            return
        self.model_label.setText(info.label)
        self.model_label.setStyleSheet("")
        self.model_label.setToolTip(tip(str(info.directory)))
        self.device_label.setText(device or "-")
        self.default_threshold = float(info.threshold)
        self._set_metrics(info.metrics)

    def show_profile(self, profile: Any) -> None:
        """A site profile is active: its name, n and sensitivity/specificity with CIs replace
        the model card's figures, and its threshold is the default."""
        m = profile.metrics

        def fmt(key: str) -> str:
            e = m.get(key) or {}
            v, ci = e.get("value"), e.get("ci95") or [None, None]
            if not isinstance(v, int | float):
                return "-"
            if None in ci:
                return f"{v:.1%}"
            return f"{v:.1%} ({ci[0]:.1%}-{ci[1]:.1%})"

        self.model_label.setText(f"{self.model_label.text()} + site profile {profile.name!r}")
        self.sensitivity.setText(fmt("sensitivity"))
        self.specificity.setText(fmt("specificity"))
        self.per_source.setText(f"Site profile {profile.name!r}: n={profile.n}, prevalence "
                                f"{profile.prevalence:.2f}, {profile.created}")
        self.per_source.setVisible(True)
        self.default_threshold = float(profile.threshold)
        self._profile = profile
        self._update_metrics_note()

    def show_model_error(self, message: str) -> None:
        """Keep ``message`` (a refused model) on screen; an empty one clears it."""
        self.model_error.setText(display_path(message))
        self.model_error.setToolTip(tip(message))
        self.model_error.setVisible(bool(message))

    def show_model_loading(self) -> None:
        self.model_label.setText("loading...")
        self.model_label.setStyleSheet("")
        if self.threshold is None:
            self._set_threshold_widgets(None, THRESHOLD_LOADING)

    def _set_metrics(self, metrics: dict | None) -> None:
        m = split_metrics(metrics)
        self.sensitivity.setText(format_metric(m["sensitivity"]))
        self.specificity.setText(format_metric(m["specificity"]))
        self.per_source.setText(per_source_text(metrics))
        self.per_source.setVisible(bool(self.per_source.text()))
        self._update_metrics_note()

    def _update_metrics_note(self) -> None:
        whose = "the site profile's" if getattr(self, "_profile", None) else "the model's"
        if self.default_threshold is None or self.threshold is None:
            self.metrics_note.setText("")
        elif abs(self.threshold - self.default_threshold) > 1e-9:
            mine = "this operating point" if self._chosen_point else "yours"
            self.metrics_note.setText(f"Measured at {whose} threshold "
                                      f"{self.default_threshold:.1%}, not at {mine}.")
        else:
            self.metrics_note.setText(f"At {whose} threshold {self.default_threshold:.1%}.")

    def set_threshold(self, value: float) -> None:
        """Set the shown threshold (no signal) and relabel the shown prediction."""
        self.threshold = float(min(1.0, max(0.0, value)))
        self._set_threshold_widgets(self.threshold)
        self._update_metrics_note()
        if self.prediction is not None:
            self.show_prediction(self.prediction.with_threshold(self.threshold))

    def show_operating_point(self, text: str, by_hand: bool = True) -> None:
        """The operating point in words (empty: hidden); ``by_hand``: the user's threshold,
        else one the model or a profile chose for this image."""
        self.operating_point.setText(f"Operating point: {text}" if text else "")
        self.operating_point.setVisible(bool(text))
        self._chosen_point = bool(text) and not by_hand
        self._update_metrics_note()

    def _set_threshold_widgets(self, value: float | None,
                               placeholder: str = THRESHOLD_LOADING) -> None:
        """The slider and box at ``value``; None: disabled, the box reads ``placeholder``."""
        known = value is not None
        self.slider.blockSignals(True)
        self.spin.blockSignals(True)
        # the special text shows at the minimum only: cleared once a real value (maybe 0) is
        self.spin.setSpecialValueText("" if known else placeholder)
        self.slider.setValue(round(value * SLIDER_STEPS) if known else 0)
        self.spin.setValue(round(value * 100.0, 1) if known else self.spin.minimum())
        self.slider.blockSignals(False)
        self.spin.blockSignals(False)
        for widget in (self.slider, self.spin, self.reset_button):
            widget.setEnabled(known)
        self.spin.setToolTip("" if known else "The model's threshold, once it has loaded")

    def _on_slider(self, v: int) -> None:
        self.set_threshold(v / SLIDER_STEPS)
        self.thresholdChanged.emit(self.threshold)

    def _on_spin(self, v: float) -> None:
        self.set_threshold(v / 100.0)
        self.thresholdChanged.emit(self.threshold)

    # -- results ---------------------------------------------------------------------------
    def _set_state(self, text: str, colour: str) -> None:
        self.state.setText(text)
        self.state.setStyleSheet(f"QLabel {{ color: white; background: {colour}; "
                                 "font-weight: bold; padding: 4px; border-radius: 3px; }")

    def clear(self, message: str = "No image") -> None:
        self.prediction = None
        self.show_operating_point("")
        self.percent.setText("-")
        self.bar.set_values(None, self.threshold, MUTED_COLOUR)
        self.state.setText(message)
        self.state.setStyleSheet("")
        self.score_anyway.setVisible(False)
        self.time_label.setText("-")
        self.cam_status.setText("")

    def show_pending(self, message: str = "Scoring...") -> None:
        self.clear(message)

    def show_error(self, message: str) -> None:
        self.clear()
        self._set_state(message, MUTED_COLOUR)

    def show_prediction(self, prediction: Any, elapsed_ms: float | None = None) -> None:
        """Show a Prediction (re-labelled at the panel's threshold)."""
        if prediction.scored and self.threshold is not None \
                and abs(prediction.threshold - self.threshold) > 1e-12:
            prediction = prediction.with_threshold(self.threshold)
        if prediction.scored and finite_number(prediction.probability) is None:
            self.show_error("Not scored: the model gave no valid probability (NaN or "
                            "infinity); the model may be damaged")
            return
        self.prediction = prediction
        if prediction.scored:
            colour = FLAGGED_COLOUR if prediction.flagged else NOT_FLAGGED_COLOUR
            self.percent.setText(f"{prediction.probability * 100:.1f} %")
            self.bar.set_values(prediction.probability, prediction.threshold, colour)
            text = prediction.state_text
            if prediction.reason:
                text += f"\n({prediction.reason})"
            self._set_state(text, colour)
            self.score_anyway.setVisible(False)
        else:
            self.percent.setText("-")
            self.bar.set_values(None, self.threshold, MUTED_COLOUR)
            self._set_state(prediction.state_text, MUTED_COLOUR)
            self.score_anyway.setVisible(True)
        total = prediction.timings.get("total_ms")
        fwd = prediction.timings.get("forward_ms")
        if total is not None and prediction.scored:
            # the engine's own time (prepare + model); queueing behind a model load is not it
            self.time_label.setText(f"{total:.0f} ms" + (f" (model {fwd:.0f} ms)"
                                                         if fwd is not None else ""))
            self.time_label.setToolTip("" if elapsed_ms is None else
                                       f"{elapsed_ms:.0f} ms from request to result")
        else:
            self.time_label.setText("-")

    # -- CAM -------------------------------------------------------------------------------
    def set_cam_checked(self, on: bool) -> None:
        self.cam_check.blockSignals(True)
        self.cam_check.setChecked(on)
        self.cam_check.blockSignals(False)
        self._update_cam_note()

    def _on_cam_toggled(self, on: bool) -> None:
        self._update_cam_note()
        self.camToggled.emit(on)

    def _update_cam_note(self) -> None:
        flagged = self.prediction is not None and bool(self.prediction.flagged)
        self.cam_note.setVisible(self.cam_check.isChecked() and not flagged)
