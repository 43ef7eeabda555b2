"""The study tree: patient / study / series / instance, filled batch by batch while indexing.

Items keep their order as files arrive (patients by name, studies by date, series and instances
by number), so the tree never jumps. Each instance item holds its :class:`Instance` under
``INSTANCE_ROLE``. Column ``AI_COLUMN`` is left empty for the classifier's per-image result;
:meth:`StudyTree.instance_item` finds the row of a file to write into it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QTreeWidget, QTreeWidgetItem, QWidget

from pneumoview.core.indexer import Instance

COLUMNS = ("Name", "ID", "Date", "Description", "Modality", "Count", "AI")
NAME, ID, DATE, DESCRIPTION, MODALITY, COUNT, AI_COLUMN = range(len(COLUMNS))
INSTANCE_ROLE = Qt.ItemDataRole.UserRole + 1
KIND_ROLE = Qt.ItemDataRole.UserRole + 2


def _date(value: str) -> str:
    v = (value or "").strip()
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 and v.isdigit() else v


def _num(value: int | None) -> tuple[int, int]:
    return (0, value) if value is not None else (1, 0)


class StudyTree(QTreeWidget):
    """Tree of the opened folder; emits ``instanceSelected`` for the chosen image."""

    instanceSelected = Signal(object)  # Instance

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setColumnCount(len(COLUMNS))
        self.setHeaderLabels(list(COLUMNS))
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        for column, width in ((NAME, 175), (ID, 75), (DATE, 82), (DESCRIPTION, 150),
                              (MODALITY, 45), (COUNT, 48), (AI_COLUMN, 70)):
            self.setColumnWidth(column, width)
        self._patients: dict[tuple[str, str], QTreeWidgetItem] = {}
        self._studies: dict[tuple[tuple[str, str], str], QTreeWidgetItem] = {}
        self._series: dict[tuple[str, str], QTreeWidgetItem] = {}
        self._instances: dict[str, QTreeWidgetItem] = {}
        self._keys: dict[int, tuple] = {}
        self.currentItemChanged.connect(self._on_current_changed)

    # -- filling -----------------------------------------------------------------------------
    def clear_all(self) -> None:
        self.clear()
        self._patients.clear()
        self._studies.clear()
        self._series.clear()
        self._instances.clear()
        self._keys.clear()

    def add_instances(self, instances: Iterable[Instance]) -> int:
        """Add newly indexed files (duplicates ignored); returns how many were new."""
        added = 0
        for inst in instances:
            if inst.path in self._instances:
                continue
            series = self._series_item(inst)
            item = QTreeWidgetItem()
            label = f"Image {inst.instance_number}" if inst.instance_number is not None \
                else "Image"
            item.setText(NAME, label)
            item.setText(DESCRIPTION, f"{inst.columns} x {inst.rows}"
                         + (f", {inst.view_position}" if inst.view_position else ""))
            item.setText(MODALITY, inst.modality)
            item.setText(COUNT, f"{inst.n_frames} fr" if inst.n_frames > 1 else "")
            item.setToolTip(NAME, inst.path)
            item.setData(NAME, INSTANCE_ROLE, inst)
            item.setData(NAME, KIND_ROLE, "instance")
            self._insert_sorted(series, item, (_num(inst.instance_number), inst.path))
            self._instances[inst.path] = item
            added += 1
        if added:
            self._update_counts()
        return added

    def _patient_item(self, inst: Instance) -> QTreeWidgetItem:
        key = (inst.patient_id, inst.patient_name)
        item = self._patients.get(key)
        if item is None:
            item = QTreeWidgetItem()
            name = inst.patient_name.replace("^", " ").strip() or "(no name)"
            item.setText(NAME, name)
            item.setText(ID, inst.patient_id)
            item.setText(DATE, _date(inst.patient_birth_date))
            item.setText(DESCRIPTION, inst.patient_sex)
            item.setData(NAME, KIND_ROLE, "patient")
            self._insert_sorted(self.invisibleRootItem(), item, (name.lower(), inst.patient_id))
            item.setExpanded(True)
            self._patients[key] = item
        return item

    def _study_item(self, inst: Instance) -> QTreeWidgetItem:
        pkey = (inst.patient_id, inst.patient_name)
        key = (pkey, inst.study_instance_uid)
        item = self._studies.get(key)
        if item is None:
            patient = self._patient_item(inst)
            item = QTreeWidgetItem()
            item.setText(NAME, inst.study_description or "Study")
            item.setText(ID, inst.accession_number)
            item.setText(DATE, _date(inst.study_date))
            item.setText(DESCRIPTION, inst.study_description)
            item.setData(NAME, KIND_ROLE, "study")
            self._insert_sorted(patient, item, (inst.study_date, inst.study_time,
                                           inst.study_instance_uid))
            item.setExpanded(True)
            self._studies[key] = item
        return item

    def _series_item(self, inst: Instance) -> QTreeWidgetItem:
        key = (inst.study_instance_uid, inst.series_instance_uid)
        item = self._series.get(key)
        if item is None:
            study = self._study_item(inst)
            item = QTreeWidgetItem()
            number = f"Series {inst.series_number}" if inst.series_number is not None \
                else "Series"
            item.setText(NAME, number)
            item.setText(DESCRIPTION, inst.series_description)
            item.setText(MODALITY, inst.modality)
            item.setData(NAME, KIND_ROLE, "series")
            self._insert_sorted(study, item, (_num(inst.series_number), inst.series_instance_uid))
            item.setExpanded(True)
            self._series[key] = item
        return item

    def _update_counts(self) -> None:
        for item in self._series.values():
            n = item.childCount()
            item.setText(COUNT, f"{n} im")
        for item in self._studies.values():
            n = item.childCount()
            mods = sorted({item.child(i).text(MODALITY) for i in range(n)} - {""})
            item.setText(MODALITY, "/".join(mods))
            item.setText(COUNT, f"{n} se")
        for item in self._patients.values():
            item.setText(COUNT, f"{item.childCount()} st")

    def _insert_sorted(self, parent: QTreeWidgetItem, item: QTreeWidgetItem, key: tuple) -> None:
        """Insert keeping children ordered by ``key`` (kept here; Qt would convert tuples)."""
        self._keys[id(item)] = key
        keys = [self._keys[id(parent.child(i))] for i in range(parent.childCount())]
        parent.insertChild(bisect.bisect_right(keys, key), item)

    # -- navigation ----------------------------------------------------------------------------
    def instance_count(self) -> int:
        return len(self._instances)

    def instance_item(self, path: str) -> QTreeWidgetItem | None:
        """The row of ``path`` (e.g. to set the ``AI_COLUMN`` text), or None."""
        return self._instances.get(path)

    def iter_instance_items(self) -> Iterator[QTreeWidgetItem]:
        """Instance rows in display order."""
        for p in range(self.topLevelItemCount()):
            patient = self.topLevelItem(p)
            for s in range(patient.childCount()):
                study = patient.child(s)
                for r in range(study.childCount()):
                    series = study.child(r)
                    for i in range(series.childCount()):
                        yield series.child(i)

    def instances(self) -> list[Instance]:
        return [item.data(NAME, INSTANCE_ROLE) for item in self.iter_instance_items()]

    def first_instance(self) -> Instance | None:
        return next((it.data(NAME, INSTANCE_ROLE) for it in self.iter_instance_items()), None)

    def current_instance(self) -> Instance | None:
        item = self.currentItem()
        if item is None or item.data(NAME, KIND_ROLE) != "instance":
            return None
        return item.data(NAME, INSTANCE_ROLE)

    def select_instance(self, path: str) -> bool:
        item = self._instances.get(path)
        if item is None:
            return False
        if self.currentItem() is item:
            # Qt may have made it current on its own (focus, first row) without anyone
            # showing it: selecting must still show it.
            self.instanceSelected.emit(item.data(NAME, INSTANCE_ROLE))
        else:
            self.setCurrentItem(item)
        self.scrollToItem(item)
        return True

    def step_instance(self, step: int) -> bool:
        """Select the next (+1) or previous (-1) image across series; False at the ends."""
        items = list(self.iter_instance_items())
        if not items:
            return False
        cur = self.currentItem()
        if cur is None or cur.data(NAME, KIND_ROLE) != "instance":
            target = items[0] if step > 0 else items[-1]
        else:
            idx = items.index(cur) + step
            if not 0 <= idx < len(items):
                return False
            target = items[idx]
        self.setCurrentItem(target)
        self.scrollToItem(target)
        return True

    def step_series(self, step: int) -> bool:
        """Select the first image of the next (+1) or previous (-1) series; False at the ends."""
        series = [it.parent() for it in self.iter_instance_items()]
        unique: list[QTreeWidgetItem] = []
        for s in series:
            if not unique or unique[-1] is not s:
                unique.append(s)
        if not unique:
            return False
        cur = self.currentItem()
        cur_series = cur.parent() if cur is not None and \
            cur.data(NAME, KIND_ROLE) == "instance" else None
        if cur_series is None:
            idx = 0 if step > 0 else len(unique) - 1
        else:
            idx = next(i for i, s in enumerate(unique) if s is cur_series) + step
            if not 0 <= idx < len(unique):
                return False
        target = unique[idx].child(0)
        self.setCurrentItem(target)
        self.scrollToItem(target)
        return True

    def _on_current_changed(self, current: QTreeWidgetItem | None, _previous: Any) -> None:
        if current is None:
            return
        item = current
        while item is not None and item.data(NAME, KIND_ROLE) != "instance":
            item = item.child(0) if item.childCount() else None
        if item is not None:
            self.instanceSelected.emit(item.data(NAME, INSTANCE_ROLE))


