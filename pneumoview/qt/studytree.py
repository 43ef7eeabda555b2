"""The study tree: patient / study / series / instance, filled batch by batch while indexing.

Items keep their order as files arrive (patients by name, studies by date, series and instances
by number), so the tree never jumps. Each instance item holds its :class:`Instance` under
``INSTANCE_ROLE``. Column ``AI_COLUMN`` is left empty for the classifier's per-image result;
:meth:`StudyTree.instance_item` finds the row of a file to write into it. Rows drag into a
viewport as :data:`INSTANCE_MIME` (the image's path; a series or study: its first image).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Any

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QTreeWidget, QTreeWidgetItem, QWidget

from pneumoview.core.indexer import Instance
from pneumoview.qt.columns import ColumnFitter
from pneumoview.qt.plaintext import tip

COLUMNS = ("Name", "ID", "Date", "Description", "Modality", "Count", "AI")
NAME, ID, DATE, DESCRIPTION, MODALITY, COUNT, AI_COLUMN = range(len(COLUMNS))
#: New rows are shown expanded while the tree holds at most this many images; beyond that they
#: arrive collapsed (an expanded tree of thousands of rows makes every insertion slow).
AUTO_EXPAND_LIMIT = 300
INSTANCE_ROLE = Qt.ItemDataRole.UserRole + 1
#: the drag format of a row: the path of its image, UTF-8
INSTANCE_MIME = "application/x-pneumoview-instance"
KIND_ROLE = Qt.ItemDataRole.UserRole + 2


def _date(value: str) -> str:
    v = (value or "").strip()
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 and v.isdigit() else v


def _num(value: int | None) -> tuple[int, int]:
    return (0, value) if value is not None else (1, 0)


def _cell(item: QTreeWidgetItem, column: int, text: str) -> None:
    """A cell's text, also as its tooltip (whole, should a narrow column cut it)."""
    item.setText(column, text)
    if text:
        item.setToolTip(column, tip(text))


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
        # the description right after the name: a series row reads "Series 2 | Chest PA"
        # without scrolling sideways
        self.header().moveSection(self.header().visualIndex(DESCRIPTION), 1)
        # columns as wide as their text, measured after each burst of rows or AI results
        self.columns = ColumnFitter(self)
        self.itemChanged.connect(lambda *_: self.columns.schedule())
        self._patients: dict[tuple[str, str], QTreeWidgetItem] = {}
        self._studies: dict[tuple[tuple[str, str], str], QTreeWidgetItem] = {}
        self._series: dict[tuple[str, str], QTreeWidgetItem] = {}
        self._instances: dict[str, QTreeWidgetItem] = {}
        # id(parent) (items we keep in the dicts above, so ids are stable) or "root" -> sorted
        # keys of its children
        self._child_keys: dict[int | str, list[tuple]] = {}
        self._new_patients: list[tuple[QTreeWidgetItem, tuple]] = []  # built in this batch
        self._to_expand: list[QTreeWidgetItem] = []
        self._deferred: dict[int | str, tuple[QTreeWidgetItem | None,
                                              list[tuple[tuple, QTreeWidgetItem]]]] = {}
        self.currentItemChanged.connect(self._on_current_changed)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)

    # -- filling -----------------------------------------------------------------------------
    def clear_all(self) -> None:
        self.clear()
        self._patients.clear()
        self._studies.clear()
        self._series.clear()
        self._instances.clear()
        self._child_keys.clear()

    def add_instances(self, instances: Iterable[Instance]) -> int:
        """Add newly indexed files (duplicates ignored); returns how many were new."""
        added = 0
        touched: dict[int, QTreeWidgetItem] = {}
        for inst in instances:
            if inst.path in self._instances:
                continue
            series = self._series_item(inst)
            touched[id(series)] = series
            item = QTreeWidgetItem()
            label = f"Image {inst.instance_number}" if inst.instance_number is not None \
                else "Image"
            item.setText(NAME, label)
            _cell(item, DESCRIPTION, f"{inst.columns} x {inst.rows}"
                  + (f", {inst.view_position}" if inst.view_position else ""))
            item.setText(MODALITY, inst.modality)
            item.setText(COUNT, f"{inst.n_frames} fr" if inst.n_frames > 1 else "")
            item.setToolTip(NAME, tip(inst.path))  # the name as the OS has it, escaped
            item.setData(NAME, INSTANCE_ROLE, inst)
            item.setData(NAME, KIND_ROLE, "instance")
            self._insert_sorted(series, item, (_num(inst.instance_number), inst.path))
            self._instances[inst.path] = item
            added += 1
        # New patients join the tree last, whole: inserting into an attached item costs a model
        # update each time, into a detached one almost nothing.
        for item, key in self._new_patients:
            self._insert_sorted(None, item, key)
        self._flush()
        if len(self._instances) <= AUTO_EXPAND_LIMIT:
            for item in self._to_expand:
                item.setExpanded(True)
        self._new_patients.clear()
        self._to_expand.clear()
        if added:
            self._update_counts(list(touched.values()))
            self.columns.schedule()
        return added

    def _patient_item(self, inst: Instance) -> QTreeWidgetItem:
        key = (inst.patient_id, inst.patient_name)
        item = self._patients.get(key)
        if item is None:
            item = QTreeWidgetItem()
            name = inst.patient_name.replace("^", " ").strip() or "(no name)"
            _cell(item, NAME, name)
            _cell(item, ID, inst.patient_id)
            _cell(item, DATE, _date(inst.patient_birth_date))
            _cell(item, DESCRIPTION, inst.patient_sex)
            item.setData(NAME, KIND_ROLE, "patient")
            self._new_patients.append((item, (name.lower(), inst.patient_id)))
            self._to_expand.append(item)
            self._patients[key] = item
        return item

    def _study_item(self, inst: Instance) -> QTreeWidgetItem:
        pkey = (inst.patient_id, inst.patient_name)
        key = (pkey, inst.study_instance_uid)
        item = self._studies.get(key)
        if item is None:
            patient = self._patient_item(inst)
            item = QTreeWidgetItem()
            _cell(item, NAME, inst.study_description or "Study")
            _cell(item, ID, inst.accession_number)
            _cell(item, DATE, _date(inst.study_date))
            _cell(item, DESCRIPTION, inst.study_description)
            item.setData(NAME, KIND_ROLE, "study")
            self._insert_sorted(patient, item, (inst.study_date, inst.study_time,
                                           inst.study_instance_uid))
            self._to_expand.append(item)
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
            _cell(item, NAME, number)
            _cell(item, DESCRIPTION, inst.series_description)
            if inst.series_description:  # what the row is, also from the Name column
                item.setToolTip(NAME, tip(f"{number}: {inst.series_description}"))
            item.setText(MODALITY, inst.modality)
            item.setData(NAME, KIND_ROLE, "series")
            self._insert_sorted(study, item, (_num(inst.series_number), inst.series_instance_uid))
            self._to_expand.append(item)
            self._series[key] = item
        return item

    def _update_counts(self, series_items: list[QTreeWidgetItem]) -> None:
        """Counts of the series that changed and of their study and patient rows."""
        studies: dict[int, QTreeWidgetItem] = {}
        for item in series_items:
            item.setText(COUNT, f"{item.childCount()} im")
            study = item.parent()
            studies[id(study)] = study
        patients: dict[int, QTreeWidgetItem] = {}
        for study in studies.values():
            n = study.childCount()
            mods = sorted({study.child(i).text(MODALITY) for i in range(n)} - {""})
            study.setText(MODALITY, "/".join(mods))
            study.setText(COUNT, f"{n} se")
            patients[id(study.parent())] = study.parent()
        for patient in patients.values():
            patient.setText(COUNT, f"{patient.childCount()} st")

    def _insert_sorted(self, parent: QTreeWidgetItem | None, item: QTreeWidgetItem,
                       key: tuple) -> None:
        """Insert under ``parent`` (None: top level) keeping children ordered by ``key``.

        Into a detached parent (built in this batch) at once; into one already in the tree at
        the end of the batch (:meth:`_flush`), as few model insertions as possible: each one
        makes the view shift all its rows below.
        """
        if parent is not None and parent.treeWidget() is None:
            keys = self._child_keys.setdefault(id(parent), [])
            index = bisect.bisect_right(keys, key)
            keys.insert(index, key)
            parent.insertChild(index, item)
            return
        slot = "root" if parent is None else id(parent)
        self._deferred.setdefault(slot, (parent, []))[1].append((key, item))

    def _flush(self) -> None:
        """Insert the deferred rows: one insertChildren per run of rows that land together."""
        for slot, (parent, new) in self._deferred.items():
            keys = self._child_keys.setdefault(slot, [])
            new.sort(key=lambda pair: pair[0])
            groups: dict[int, list[QTreeWidgetItem]] = {}
            for key, item in new:
                groups.setdefault(bisect.bisect_right(keys, key), []).append(item)
            for index in sorted(groups, reverse=True):  # from the end: indices stay valid
                if parent is None:
                    self.insertTopLevelItems(index, groups[index])
                else:
                    parent.insertChildren(index, groups[index])
            for key, _item in new:
                bisect.insort_right(keys, key)
        self._deferred.clear()

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

    def mimeTypes(self) -> list[str]:  # noqa: N802 - Qt's name
        return [INSTANCE_MIME]

    def mimeData(self, items: list[QTreeWidgetItem]) -> QMimeData:  # noqa: N802 - Qt's name
        """The first image under the first dragged row."""
        mime = QMimeData()
        inst = _first_instance(items[0]) if items else None
        if inst is not None:
            mime.setData(INSTANCE_MIME, inst.path.encode("utf-8"))
        return mime

    def _on_current_changed(self, current: QTreeWidgetItem | None, _previous: Any) -> None:
        inst = _first_instance(current) if current is not None else None
        if inst is not None:
            self.instanceSelected.emit(inst)


def _first_instance(item: QTreeWidgetItem | None) -> Instance | None:
    """``item``'s image, or its first child's first image (a patient, study or series row)."""
    while item is not None and item.data(NAME, KIND_ROLE) != "instance":
        item = item.child(0) if item.childCount() else None
    return item.data(NAME, INSTANCE_ROLE) if item is not None else None


