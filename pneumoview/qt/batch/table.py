"""The Batch dock's results table: report rows per image or per study, sortable, filterable."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
)

from pneumoview.core.paths import display_path
from pneumoview.core.studyrows import study_rows
from pneumoview.qt.plaintext import tip
from pneumoview.qt.theme import state_brush

COLUMNS = ("Patient", "Study date", "File", "Probability", "State", "Status", "Message")
COL_PROB = COLUMNS.index("Probability")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ROW_ROLE = Qt.ItemDataRole.UserRole + 2

def _date(value: str) -> str:
    v = (value or "").strip()
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 and v.isdigit() else v


def _state(row: dict[str, Any]) -> str:
    if row.get("status") != "scored":
        return ""
    return "Flagged" if row.get("flagged") else "Not flagged"

class BatchResultsModel(QAbstractTableModel):
    """Rows of the running batch (typed report rows), per image or per study."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict[str, Any]] = []
        self.study_level = False
        self._shown: list[dict[str, Any]] = []
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(self._rebuild)

    # -- data in -----------------------------------------------------------------------------
    def clear(self) -> None:
        self.beginResetModel()
        self.rows, self._shown = [], []
        self.endResetModel()

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self.rows.extend(rows)
        if self.study_level:  # regrouping is cheap but not per row: coalesce
            if not self._timer.isActive():
                self._timer.start()
            return
        first = len(self._shown)
        self.beginInsertRows(QModelIndex(), first, first + len(rows) - 1)
        self._shown.extend(rows)
        self.endInsertRows()

    def set_study_level(self, on: bool) -> None:
        self.study_level = bool(on)
        self._rebuild()

    def _rebuild(self) -> None:
        self.beginResetModel()
        self._shown = study_rows(self.rows) if self.study_level else list(self.rows)
        self.endResetModel()

    # -- Qt model ----------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._shown)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            if section == COLUMNS.index("File") and self.study_level:
                return "Images"
            return COLUMNS[section]
        return None

    def row_at(self, row: int) -> dict[str, Any]:
        return self._shown[row]

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._shown[index.row()]
        col = index.column()
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(row, col)
        if role == SORT_ROLE:
            if col == COL_PROB:
                p = row.get("probability")
                return -1.0 if p is None else float(p)
            return self._text(row, col).lower()
        if role == Qt.ItemDataRole.ForegroundRole and col in (COL_PROB, COLUMNS.index("State")):
            return state_brush(bool(row.get("flagged")) if row.get("status") == "scored"
                               else None)
        if role == Qt.ItemDataRole.ToolTipRole:
            return tip(str(row.get("path", "")))
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_PROB:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _text(row: dict[str, Any], col: int) -> str:
        name = COLUMNS[col]
        if name == "Patient":
            return str(row.get("patient_id") or "")
        if name == "Study date":
            return _date(str(row.get("study_date") or ""))
        if name == "File":
            return display_path(str(row.get("relpath") or ""))
        if name == "Probability":
            p = row.get("probability")
            return "" if p is None else f"{float(p):.3f}"
        if name == "State":
            return _state(row)
        if name == "Status":
            return str(row.get("status") or "").replace("_", " ")
        return display_path(str(row.get("message") or ""))


class FlaggedFilter(QSortFilterProxyModel):
    """Sorting by the numeric sort role; optionally only flagged rows."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.flagged_only = False
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def set_flagged_only(self, on: bool) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9 (invalidateFilter is deprecated)
            self.beginFilterChange()
            self.flagged_only = bool(on)
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.flagged_only = bool(on)
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int,
                         source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        if not self.flagged_only:
            return True
        model = self.sourceModel()
        return bool(model.row_at(source_row).get("flagged"))  # type: ignore[attr-defined]
