"""The page shown before anything is open: what PneumoView is, Open the demo, Open Folder."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

WELCOME = """<h2>PneumoView</h2>
<p>Open a folder of DICOM studies (<b>File &gt; Open Folder</b>, Ctrl+O), drop a folder or
file onto this window, or look at the demo: a real chest radiograph from pydicom-data in three
series (uncompressed, JPEG 2000 and an inverted MONOCHROME2 copy).</p>
<p><i>Not for diagnostic use.</i></p>"""


class WelcomePage(QWidget):
    def __init__(self) -> None:
        super().__init__()
        wl = QVBoxLayout(self)
        text = QLabel(WELCOME)
        text.setObjectName("welcome")
        text.setTextFormat(Qt.TextFormat.RichText)  # our own text only, never data
        text.setWordWrap(True)
        text.setMaximumWidth(560)
        self.text = text
        self.demo_button = QPushButton("Open the demo")
        self.open_button = QPushButton("Open Folder...")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.demo_button)
        buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        # centred by stretches, not by an alignment flag: an aligned word-wrapped label gets
        # the height of its unwrapped size hint and loses its last lines
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(text, 10)
        row.addStretch(1)
        wl.addStretch(1)
        wl.addLayout(row)
        wl.addLayout(buttons)
        wl.addStretch(2)
