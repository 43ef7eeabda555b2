"""The PySide6 + pyqtgraph viewer. Importing this package imports Qt; core never does."""
