"""Work around PySide6 6.12 on Python 3.11: void calls leak a reference to None/True/False.

The PySide6/shiboken6 6.12.0 wheels (abi3, built against Python >= 3.12 headers, where None,
True and False are immortal) return these singletons without taking a reference. On Python 3.12+
that is correct; on Python 3.10/3.11 every call of a void Qt method (``QLabel.setText``,
``QWidget.resize``, ``QTreeWidgetItem.setData``, ...) and every signal emission takes one
reference away, and after a few thousand calls (about a minute of window/level dragging) the
interpreter aborts with ``Fatal Python error: none_dealloc``.

:func:`protect_singletons` gives those objects what Python 3.12 gives them: a reference count
so large that the leak can never bring it to zero (2**40 references; at 10,000 leaked per second
that lasts three years). It does nothing on Python 3.12+. Importing :mod:`pneumoview.qt` calls
it, before any Qt call is made through the package.
"""

from __future__ import annotations

import ctypes
import sys

#: References added to each singleton (Python 3.12 uses a similar "immortal" count).
RESERVE = 1 << 40
_SINGLETONS = (None, True, False, Ellipsis, NotImplemented)
_done = False


def needed() -> bool:
    return sys.version_info < (3, 12) and sys.implementation.name == "cpython"


def protect_singletons() -> bool:
    """Raise the singletons' reference counts once (CPython < 3.12 only); True if it did."""
    global _done
    if _done or not needed():
        return False
    for obj in _SINGLETONS:
        # ob_refcnt is the first field of every CPython object (Py_ssize_t)
        ctypes.c_ssize_t.from_address(id(obj)).value += RESERVE
    _done = True
    return True
