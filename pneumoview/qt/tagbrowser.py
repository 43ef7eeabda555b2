"""A searchable DICOM tag browser for the right-hand panel (header only, never pixel data)."""

from __future__ import annotations

from pydicom.dataset import Dataset
from PySide6.QtCore import QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QLineEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from pneumoview.qt.columns import ColumnFitter
from pneumoview.qt.plaintext import tip

MAX_VALUE_CHARS = 200
TAG, NAME, VR, VALUE = range(4)
#: Below this width (px) the Tag and VR columns give their room to Name and Value: a side
#: panel is too narrow for all four (the tag and VR stay in the Name tooltip and the search).
WIDE_PX = 560
#: A table on screen is filled this long after the last dataset it was given: the new film's
#: first paint and the AI's answer (about 30 ms after a click) come first, and stepping
#: through films with the arrow keys fills it once, for the film the reader stops at.
FILL_DELAY_MS = 120


def _value_text(elem) -> str:
    if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") or elem.tag == 0x7FE00010:
        length = len(elem.value) if elem.value is not None else 0
        return f"<{length} bytes>"
    try:
        text = str(elem.value)
    except Exception:  # a malformed value must not break the browser
        return "<unreadable>"
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "..."


class TagBrowser(QWidget):
    """Tag / name / VR / value of the shown file; the search box filters on any column."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search tags (name, keyword, tag or value)")
        self.search.setClearButtonEnabled(True)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(4)
        self.tree.setHeaderLabels(["Tag", "Name", "VR", "Value"])
        self.tree.setUniformRowHeights(True)
        # columns as wide as their text (the view scrolls sideways), the Value column also
        # taking the room left; a cell's tooltip holds its whole text
        self.columns = ColumnFitter(self.tree, fill_last=True, before_fit=self._show_columns)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.search)
        layout.addWidget(self.tree)
        self.search.textChanged.connect(self.apply_filter)
        self._dataset: Dataset | None = None
        self._stale = False
        self._fill_timer = QTimer(self)
        self._fill_timer.setSingleShot(True)
        self._fill_timer.setInterval(FILL_DELAY_MS)
        self._fill_timer.timeout.connect(self.refresh)

    def set_dataset(self, ds: Dataset | None) -> None:
        """Show ``ds``'s tags: soon (:data:`FILL_DELAY_MS`) when the browser is on screen,
        else when it is shown.

        Filling the table costs 4-10 ms of the GUI thread for a typical header, and Qt holds
        Python's lock meanwhile; done at once it would delay what the reader waits for (the
        image, the AI's answer). The old file's rows go at once: the table never shows one
        file's tags under another's image.
        """
        self.tree.clear()
        self._dataset, self._stale = ds, ds is not None
        if not self._stale:
            self._fill_timer.stop()
        elif self.isVisible():
            self._fill_timer.start()

    def fill_pending(self) -> bool:
        """Whether a fill is scheduled (screenshots wait for it)."""
        return self._fill_timer.isActive()

    def refresh(self) -> None:
        """Fill the table from the last dataset given, if it is not filled yet."""
        if not self._stale:
            return
        self._stale = False
        ds = self._dataset
        self.tree.clear()
        if ds is not None:
            meta = getattr(ds, "file_meta", None)
            if meta is not None:
                self._add(self.tree.invisibleRootItem(), meta)
            self._add(self.tree.invisibleRootItem(), ds)
        self.apply_filter(self.search.text())
        self.columns.fit()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._fill_timer.stop()
        self.refresh()

    def _add(self, parent: QTreeWidgetItem, ds: Dataset) -> None:
        for elem in ds:
            tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
            name = elem.name if elem.keyword else (elem.name or "Private tag")
            if elem.VR == "SQ":
                item = QTreeWidgetItem(parent, [tag, name, "SQ", f"{len(elem.value)} item(s)"])
                for i, child in enumerate(elem.value):
                    sub = QTreeWidgetItem(item, ["", f"Item {i + 1}", "", ""])
                    self._add(sub, child)
            else:
                item = QTreeWidgetItem(parent, [tag, name, str(elem.VR), _value_text(elem)])
            keyword = f" - {elem.keyword}" if elem.keyword else ""
            item.setToolTip(NAME, tip(f"{tag} {item.text(VR)}  {name}{keyword}"))
            item.setToolTip(VALUE, tip(item.text(VALUE)))

    def _show_columns(self, width: int) -> None:
        narrow = width < WIDE_PX
        for column in (TAG, VR):
            self.tree.setColumnHidden(column, narrow)

    def apply_filter(self, text: str) -> int:
        """Show rows matching ``text`` (and their parents); returns how many rows match."""
        needle = text.strip().lower()
        root = self.tree.invisibleRootItem()
        return self._filter(root, needle)

    def _filter(self, item: QTreeWidgetItem, needle: str) -> int:
        matches = 0
        for i in range(item.childCount()):
            child = item.child(i)
            own = not needle or any(needle in child.text(c).lower() for c in range(4))
            below = self._filter(child, "" if own and needle else needle)
            visible = own or below > 0
            child.setHidden(not visible)
            if needle and below and not own:
                child.setExpanded(True)
            matches += int(own and bool(needle)) + below
        return matches
