"""User preferences as a typed dataclass, saved as JSON under :func:`paths.config_dir`.

A missing, unreadable or corrupt settings file never stops the program: it falls back to the
defaults and logs a warning. Unknown keys written by a newer version are kept in ``extra`` so an
older version does not throw them away, and later features can add fields here without breaking
files written before them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pneumoview.core.paths import config_dir

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
MAX_RECENT = 10


@dataclass
class Settings:
    """Everything the viewer remembers between runs."""

    recent_folders: list[str] = field(default_factory=list)
    window_geometry: str = ""  # base64 of QWidget.saveGeometry()
    window_state: str = ""  # base64 of QMainWindow.saveState()
    show_patient_overlay: bool = True
    max_image_mib: int = 1024  # size guard: refuse to decode images needing more than this
    # AI: the user's threshold per model (weights sha256 -> threshold; absent = model default),
    # device preference ("auto", "cpu", "cuda[:N]", "mps"), model folder ("" = bundled), CAM
    # overlay opacity in percent
    ai_thresholds: dict[str, Any] = field(default_factory=dict)
    ai_device: str = "auto"
    ai_model_dir: str = ""
    cam_opacity: int = 60
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept for newer versions

    @property
    def max_image_bytes(self) -> int:
        return max(1, int(self.max_image_mib)) * 2**20

    def add_recent(self, path: str) -> None:
        """Put ``path`` first in the recent list (no duplicates, at most MAX_RECENT)."""
        path = os.path.abspath(path)
        self.recent_folders = [path] + [p for p in self.recent_folders if p != path]
        del self.recent_folders[MAX_RECENT:]


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def _coerce(default: Any, value: Any) -> Any:
    """Accept ``value`` only when it has the type of the default (bool is not an int here)."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else default
    if isinstance(default, int):
        return value if isinstance(value, int) and not isinstance(value, bool) else default
    if isinstance(default, str):
        return value if isinstance(value, str) else default
    if isinstance(default, list):
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else default
    if isinstance(default, dict):
        return value if isinstance(value, dict) else default
    return value


def load_settings(path: Path | None = None) -> Settings:
    """Read the settings; any problem gives the defaults plus a warning, never an exception."""
    path = settings_path() if path is None else path
    defaults = Settings()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return defaults
    except (OSError, ValueError) as exc:
        log.warning("settings file %s is unreadable (%s); using the defaults", path, exc)
        return defaults
    if not isinstance(raw, dict):
        log.warning("settings file %s does not hold an object; using the defaults", path)
        return defaults
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    for name in known - {"extra"}:
        if name in raw:
            values[name] = _coerce(getattr(defaults, name), raw[name])
    extra = {k: v for k, v in raw.items() if k not in known}
    return Settings(**values, extra=extra)


def save_settings(settings: Settings, path: Path | None = None) -> bool:
    """Write atomically (temp file + rename); returns False (and logs) when it cannot."""
    path = settings_path() if path is None else path
    data = asdict(settings)
    extra = data.pop("extra")
    payload = {**extra, **data}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
        os.replace(tmp, path)
        return True
    except OSError as exc:
        log.warning("cannot save settings to %s (%s)", path, exc)
        return False
