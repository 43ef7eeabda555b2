"""Where the bundled resources (model, icons) live, for a checkout, a wheel and a frozen build.

The wheel and the PyInstaller build carry the top-level ``resources/`` folder as
``pneumoview/resources``; a source checkout (or an editable install) has it beside the package.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def resources_dir() -> Path:
    """The folder holding ``model/`` and ``icons/``."""
    packaged = Path(str(importlib.resources.files("pneumoview"))) / "resources"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "resources"


def bundled_model_dir() -> Path:
    return resources_dir() / "model"
