"""Strings from files and models reach the screen as plain text, never as markup.

Qt guesses: a ``QLabel``, a tooltip or a message box whose text looks like HTML
(``Qt.mightBeRichText``) is rendered as rich text, so a PatientName of
``<img src="/dev/zero">`` made the viewer read ``/dev/zero`` into memory, and a model name could
paint "ALL CLEAR" in the AI panel. Every label that shows data goes through :func:`plain_label`
(``Qt.PlainText``); every tooltip through :func:`tip` (escaped, so even a rich tooltip shows the
characters); menu entries through :func:`menu_text` (a ``&`` is not a shortcut marker). Names
are passed through :func:`~pneumoview.core.paths.display_path` first: Qt silently drops the
surrogate escapes of a file name that is not valid UTF-8 (``bad\\xff.dcm`` would show as
``bad.dcm``, another file's name), so they are shown as ``\\xNN``.
"""

from __future__ import annotations

from PySide6.QtGui import Qt  # QtGui's Qt namespace also has convertFromPlainText
from PySide6.QtWidgets import QLabel, QWidget

from pneumoview.core.paths import display_path


def plain_label(text: str = "", parent: QWidget | None = None) -> QLabel:
    """A QLabel that shows ``text`` literally, whatever it contains."""
    label = QLabel(parent)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setText(display_path(text))
    return label


def make_plain(label: QLabel) -> QLabel:
    """Switch an existing label to plain text (returns it, for chaining)."""
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


def tip(text: str) -> str:
    """A tooltip string that shows ``text`` literally (Qt renders tooltips as rich text when
    they look like HTML: this one is escaped rich text, so markup shows as characters)."""
    if not text:
        return ""
    return Qt.convertFromPlainText(display_path(text), Qt.WhiteSpaceMode.WhiteSpacePre)


def menu_text(text: str) -> str:
    """A menu or button caption that shows ``text`` literally (``&`` doubled)."""
    return display_path(text).replace("&", "&&")
