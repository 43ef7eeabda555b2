"""The worklist dock's widget: studies in priority order, filters, search, review keys.

It shows :class:`pneumoview.core.worklist.Entry` values and says what the reader asks for by
signals (``openRequested``, ``reviewRequested``); the controller records reviews and opens
images. Keys on the list: Enter opens the study at its highest-scoring image; **A** agree,
**P** disagree: pneumonia, **N** disagree: no pneumonia, **X** not assessable, **U** uncertain;
each review moves to the next unreviewed study. While the list has the focus these keys win
over the window's one-letter shortcuts (P, N). Typing in the search or note field never
triggers a review (the keys belong to the list).
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from pneumoview.core import worklist as wl
from pneumoview.core.paths import display_path
from pneumoview.core.review.store import Decision, Truth
from pneumoview.qt.plaintext import plain_label, tip
from pneumoview.qt.theme import FLAGGED_COLOUR, MUTED_COLOUR, NOT_FLAGGED_COLOUR

COLUMNS = ("Patient", "Date", "Images", "Highest p", "AI", "Review")

#: key -> (button text, decision, truth)
REVIEW_KEYS: dict[int, tuple[str, Decision, Truth | None]] = {
    Qt.Key.Key_A: ("Agree (A)", Decision.AGREE, None),
    Qt.Key.Key_P: ("Disagree: pneumonia (P)", Decision.DISAGREE, Truth.PNEUMONIA),
    Qt.Key.Key_N: ("Disagree: no pneumonia (N)", Decision.DISAGREE, Truth.NO_PNEUMONIA),
    Qt.Key.Key_X: ("Not assessable (X)", Decision.DISAGREE, Truth.NOT_ASSESSABLE),
    Qt.Key.Key_U: ("Uncertain (U)", Decision.UNCERTAIN, None),
}

_STATE_COLOURS = {wl.AIState.FLAGGED: FLAGGED_COLOUR, wl.AIState.NOT_FLAGGED: NOT_FLAGGED_COLOUR,
                  wl.AIState.NOT_SCORED: MUTED_COLOUR, wl.AIState.ERROR: MUTED_COLOUR}


class WorklistPanel(QWidget):
    openRequested = Signal(object)  # Entry
    reviewRequested = Signal(object, object, object, str)  # Entry, Decision, Truth|None, note

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._entries: list[wl.Entry] = []
        self._shown: list[wl.Entry] = []
        self.filter_box = QComboBox()
        for f in wl.Filter:
            self.filter_box.addItem(f.value.capitalize())
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search patient, date, file...")
        self.search.setClearButtonEnabled(True)
        self.figures = plain_label("")
        self.source = plain_label("")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setSortingEnabled(False)  # the worklist's order is the triage priority
        self.table.installEventFilter(self)
        self.table.cellDoubleClicked.connect(lambda r, _c: self._open_row(r))
        self.note = QLineEdit()
        self.note.setPlaceholderText("Note (optional), then a review key or button")
        self.buttons: dict[int, QPushButton] = {}
        buttons = QHBoxLayout()
        for key, (text, decision, truth) in REVIEW_KEYS.items():
            b = QPushButton(text)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(lambda _=False, d=decision, t=truth: self.review_current(d, t))
            self.buttons[key] = b
            buttons.addWidget(b)
        top = QHBoxLayout()
        top.addWidget(self.filter_box)
        top.addWidget(self.search, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.source)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.figures)
        layout.addWidget(self.note)
        layout.addLayout(buttons)
        self.filter_box.currentIndexChanged.connect(lambda _i: self._refill())
        self.search.textChanged.connect(lambda _t: self._refill())

    # ---- content
    def set_entries(self, entries: Sequence[wl.Entry], *, keep_key: str | None = None) -> None:
        self._entries = list(entries)
        self._refill(keep_key)

    def entries(self) -> list[wl.Entry]:
        return list(self._shown)

    def set_filter(self, flt: wl.Filter) -> None:
        self.filter_box.setCurrentIndex(list(wl.Filter).index(flt))

    def current(self) -> wl.Entry | None:
        r = self.table.currentRow()
        return self._shown[r] if 0 <= r < len(self._shown) else None

    def select_index(self, i: int) -> None:
        if 0 <= i < len(self._shown):
            self.table.setCurrentCell(i, 0)

    def _refill(self, keep_key: str | None = None) -> None:
        keep = keep_key or (self.current().key if self.current() else None)
        flt = list(wl.Filter)[max(self.filter_box.currentIndex(), 0)]
        self._shown = wl.select(self._entries, flt, self.search.text())
        self.table.setRowCount(len(self._shown))
        for r, e in enumerate(self._shown):
            prob = "" if e.probability is None else f"{e.probability:.3f}"
            ai = e.state.value + (f" ({e.n_flagged}/{e.n_images})" if e.n_flagged else "")
            review = e.review.value + (f" - {e.reviewer}" if e.reviewer else "")
            cells = (e.patient_id, e.study_date, str(e.n_images), prob, ai, review)
            for c, text in enumerate(cells):
                item = QTableWidgetItem(display_path(text))
                if c == 4:
                    item.setForeground(QBrush(QColor(_STATE_COLOURS[e.state])))
                if e.message:
                    item.setToolTip(tip(e.message))
                self.table.setItem(r, c, item)
        index = next((i for i, e in enumerate(self._shown) if e.key == keep), 0)
        if self._shown:
            self.table.setCurrentCell(index, 0)

    # ---- actions
    def _open_row(self, r: int) -> None:
        if 0 <= r < len(self._shown):
            self.openRequested.emit(self._shown[r])

    def review_current(self, decision: Decision, truth: Truth | None) -> None:
        entry = self.current()
        if entry is None:
            return
        note = self.note.text().strip()
        self.note.clear()
        self.reviewRequested.emit(entry, decision, truth, note)

    def advance(self, after_key: str) -> None:
        """Select the next unreviewed study after ``after_key`` (the controller calls this once
        the review is stored and the entries are refreshed)."""
        at = next((i for i, e in enumerate(self._shown) if e.key == after_key), -1)
        nxt = wl.next_unreviewed(self._shown, at) if self._shown else None
        if nxt is not None:
            self.select_index(nxt)
            self.openRequested.emit(self._shown[nxt])

    def set_figures(self, text: str) -> None:
        self.figures.setText(text)

    def set_source(self, text: str) -> None:
        self.source.setText(display_path(text))

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if obj is self.table and event.type() == QEvent.Type.ShortcutOverride:
            # the review keys win over the window's one-letter shortcuts (P: patient text,
            # N: next flagged) while the list has the focus
            assert isinstance(event, QKeyEvent)
            if event.key() in REVIEW_KEYS and not event.modifiers() \
                    & ~Qt.KeyboardModifier.KeypadModifier:
                event.accept()
                return True
        if obj is self.table and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            key = event.key()
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self._open_row(self.table.currentRow())
                return True
            if key in REVIEW_KEYS and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
                _text, decision, truth = REVIEW_KEYS[key]
                self.review_current(decision, truth)
                return True
        return super().eventFilter(obj, event)
