"""PyInstaller runtime hook: settings the frozen application needs before any import.

grad-cam imports matplotlib (it never draws with it here); only matplotlib's Agg backend is
bundled, so say so before matplotlib looks for a GUI backend of its own.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
