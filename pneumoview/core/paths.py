"""Where PneumoView keeps its per-user files: cache, configuration and data folders.

Each folder comes from :mod:`platformdirs` unless an environment variable redirects it, so tests
(and users with unusual setups, e.g. a portable install) can point every write at a folder of
their choosing: ``PNEUMOVIEW_CACHE_DIR``, ``PNEUMOVIEW_CONFIG_DIR``, ``PNEUMOVIEW_DATA_DIR``.
The functions only compute paths; callers create the folder when they first write to it.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "pneumoview"


def _from_env(var: str, default: str) -> Path:
    value = os.environ.get(var, "").strip()
    return Path(value).expanduser() if value else Path(default)


def cache_dir() -> Path:
    """Disposable files (the folder index cache): ``$PNEUMOVIEW_CACHE_DIR`` or the user cache."""
    return _from_env("PNEUMOVIEW_CACHE_DIR", platformdirs.user_cache_dir(APP_NAME))


def config_dir() -> Path:
    """Settings: ``$PNEUMOVIEW_CONFIG_DIR`` or the user configuration folder."""
    return _from_env("PNEUMOVIEW_CONFIG_DIR", platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    """Files worth keeping (installed models, reports): ``$PNEUMOVIEW_DATA_DIR`` or user data."""
    return _from_env("PNEUMOVIEW_DATA_DIR", platformdirs.user_data_dir(APP_NAME))
