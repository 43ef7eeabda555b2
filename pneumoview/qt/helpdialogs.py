"""Help > Keyboard Shortcuts (generated from the window's own actions) and Help > About.

The shortcut list is read from the actions themselves, menu by menu, so it cannot drift from
what the keys do; :func:`shortcut_conflicts` finds two actions on one key (a test keeps the
window free of them). About shows the versions, the model and the licences, all as plain text.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from importlib import metadata

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMenu,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

import pneumoview
from pneumoview.qt.plaintext import make_plain

#: The distributions About names (the app's runtime dependencies), with their licences.
COMPONENTS = ("PySide6-Essentials", "pyqtgraph", "pydicom", "numpy", "torch", "torchvision",
              "grad-cam", "platformdirs", "safetensors", "Pillow", "pydicom-data", "highdicom")


def _plain(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")


def _keys(action: QAction) -> str:
    return ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText)
                     for k in action.shortcuts() if not k.isEmpty())


def shortcut_rows(window: QMainWindow) -> list[tuple[str, str, str]]:
    """``(menu, command, keys)`` for every action of the window that has a shortcut: those in
    the menus under their menu's name, the others (keys without a menu entry) under 'Other'."""
    rows: list[tuple[str, str, str]] = []
    seen: set[int] = set()

    def walk(menu: QMenu, path: str) -> None:
        for action in menu.actions():
            sub = action.menu()
            if isinstance(sub, QMenu):
                walk(sub, f"{path} > {_plain(sub.title())}")
            elif not action.isSeparator():
                seen.add(id(action))
                if _keys(action):
                    rows.append((path, _plain(action.text()), _keys(action)))

    for top in window.menuBar().actions():
        if isinstance(top.menu(), QMenu):
            walk(top.menu(), _plain(top.menu().title()))
    for action in window.findChildren(QAction):
        if id(action) not in seen and _keys(action) and action.text():
            seen.add(id(action))
            rows.append(("Other", _plain(action.text()), _keys(action)))
    return rows


def shortcut_conflicts(window: QWidget) -> dict[str, list[str]]:
    """Keys bound to more than one enabled action of the window: {key: [commands]}."""
    owners: dict[str, list[str]] = {}
    for action in {id(a): a for a in window.findChildren(QAction)}.values():
        for key in action.shortcuts():
            if not key.isEmpty():
                owners.setdefault(key.toString(), []).append(_plain(action.text()))
    return {k: v for k, v in owners.items() if len(v) > 1}


class ShortcutsDialog(QDialog):
    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        self.setWindowTitle("Keyboard Shortcuts")
        rows = shortcut_rows(window)
        self.table = QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(["Menu", "Command", "Keys"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.resizeColumnToContents(0)
        self.table.resizeColumnToContents(2)
        mouse = make_plain(QLabel("Mouse: left-drag pans (or draws with a measuring tool), "
                                  "right-drag sets window/level, the wheel zooms; drag a "
                                  "handle to edit a measurement."))
        mouse.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(mouse)
        layout.addWidget(buttons)
        self.resize(560, 520)


def component_lines() -> list[str]:
    """``name version (licence)`` of each installed component (read from package metadata,
    nothing imported)."""
    lines = [f"Python {platform.python_version()} (PSF-2.0)"]
    for name in COMPONENTS:
        try:
            meta = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            continue
        licence = meta.get("License-Expression") or ""
        if not licence:
            classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                           if c.startswith("License ::")]
            short = (meta.get("License") or "").strip()
            licence = ", ".join(classifiers) or (short if len(short) < 60 else "see package")
        lines.append(f"{name} {meta.get('Version', '?')} ({licence or 'unstated'})")
    return lines


def about_text(model_lines: list[str] | None = None) -> str:
    parts = [f"PneumoView {pneumoview.__version__} (BSD-3-Clause)",
             "A chest X-ray DICOM viewer with a calibrated pneumonia classifier.",
             "NOT FOR DIAGNOSTIC USE: a research and triage aid.", "",
             "Model:", *(model_lines or ["none loaded"]), "",
             "Components:", *component_lines()]
    return "\n".join(parts)


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None,
                 model_lines: Callable[[], list[str]] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About PneumoView")
        self.text = QPlainTextEdit()  # plain text: names come from files and metadata
        self.text.setReadOnly(True)
        self.text.setPlainText(about_text(model_lines() if model_lines else None))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(560, 460)
