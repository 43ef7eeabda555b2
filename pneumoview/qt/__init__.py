"""The PySide6 + pyqtgraph viewer. Importing this package imports Qt; core never does."""

from pneumoview.qt._refcount_guard import protect_singletons

protect_singletons()  # PySide6 6.12 on Python < 3.12: see pneumoview.qt._refcount_guard
