"""The Measurements panel: every measurement and annotation of the image, with its value.

Selecting a row selects the item on the image (and the other way round); Delete (the key or
the button) removes the selected one. The first line says which spacing the millimetres come
from, or that the values are in pixels.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from pneumoview.qt.plaintext import make_plain
from pneumoview.qt.tools.layer import AnnotationLayer

_ID = Qt.ItemDataRole.UserRole


class MeasurementsPanel(QWidget):
    def __init__(self, layer: AnnotationLayer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layer = layer
        self.scale_label = make_plain(QLabel())
        self.scale_label.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Tool", "Frame", "Value"])
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setColumnWidth(0, 90)
        self.tree.setColumnWidth(1, 48)
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Remove the selected measurement (Delete)")
        self.delete_button.clicked.connect(self.layer.delete_selected)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.scale_label)
        layout.addWidget(self.tree, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.delete_button)
        layout.addLayout(row)
        self.tree.itemSelectionChanged.connect(self._on_row_selected)
        layer.changed.connect(self.refresh)
        layer.selectionChanged.connect(self._show_selection)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the rows from the layer (values recomputed on the frame on screen)."""
        layer = self.layer
        self.scale_label.setText(layer.scale.description if layer.decoded is not None
                                 else "No image")
        self.tree.blockSignals(True)
        self.tree.clear()
        for a in sorted(layer.annotations, key=lambda a: a.frame):
            shown = layer.decoded is not None and a.frame == layer.decoded.frame
            value = "; ".join(layer.lines(a)) if shown else "(on another frame)"
            row = QTreeWidgetItem([a.kind.label, str(a.frame + 1), value])
            row.setData(0, _ID, a.id)
            row.setToolTip(2, value)
            self.tree.addTopLevelItem(row)
            if a.id == layer.selected:
                row.setSelected(True)
        self.tree.blockSignals(False)
        self.delete_button.setEnabled(layer.selected is not None)

    def rows(self) -> list[tuple[str, str, str]]:
        return [tuple(self.tree.topLevelItem(i).text(c) for c in range(3))  # type: ignore
                for i in range(self.tree.topLevelItemCount())]

    def _on_row_selected(self) -> None:
        items = self.tree.selectedItems()
        self.layer.select(items[0].data(0, _ID) if items else None)

    def _show_selection(self, annotation_id: object) -> None:
        self.tree.blockSignals(True)
        for i in range(self.tree.topLevelItemCount()):
            row = self.tree.topLevelItem(i)
            row.setSelected(row.data(0, _ID) == annotation_id)
        self.tree.blockSignals(False)
        self.delete_button.setEnabled(annotation_id is not None)

    def keyPressEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt's name
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.layer.delete_selected()
            return
        super().keyPressEvent(event)
