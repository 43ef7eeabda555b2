"""User preferences as a typed dataclass, saved as JSON under :func:`paths.config_dir`.

A missing, unreadable or corrupt settings file never stops the program: it falls back to the
defaults and logs a warning. That includes hostile files: only a regular file of at most
:data:`MAX_SETTINGS_BYTES` is read (:func:`paths.read_small_file`: a FIFO or a link to
``/dev/zero`` is refused at once), JSON nested deeper than :data:`MAX_DEPTH` is refused (so
neither loading nor saving can raise ``RecursionError``), and every list, map and string is cut
to its bound (:data:`MAX_RECENT` folders, :data:`MAX_MAP_ENTRIES` map entries, :data:`MAX_TEXT`
characters), so a file with 100,000 entries costs start-up no more than a normal one. Unknown
keys written by a newer version are kept in ``extra`` so an older version does not throw them
away (within the same bounds), and later features can add fields here without breaking files
written before them. The file is written private to the user (0600 in a 0700 folder).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pneumoview.core import defaults
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.paths import config_dir, read_small_file, write_private_file

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
MAX_RECENT = 10
#: Bounds on what a settings file may hold (a real one is a few KiB, three levels deep).
MAX_SETTINGS_BYTES = 4 * 2**20
MAX_DEPTH = 16
MAX_MAP_ENTRIES = 256
MAX_TEXT = 64 * 1024
MAX_EXTRA_KEYS = 256


@dataclass
class Settings:
    """Everything the viewer remembers between runs."""

    recent_folders: list[str] = field(default_factory=list)
    window_geometry: str = ""  # base64 of QWidget.saveGeometry()
    window_state: str = ""  # base64 of QMainWindow.saveState()
    show_patient_overlay: bool = True
    max_image_mib: int = defaults.MAX_IMAGE_MIB  # size guard: refuse images needing more
    # AI: the user's threshold per model (model_id -> threshold; absent = model default),
    # device preference ("auto", "cpu", "cuda[:N]", "mps"), model folder ("" = bundled), CAM
    # overlay opacity in percent
    ai_thresholds: dict[str, Any] = field(default_factory=dict)
    ai_device: str = defaults.DEVICE
    ai_engine: str = defaults.ENGINE  # auto, torch, openvino
    ai_precision: str = defaults.PRECISION  # auto, bf16, f32, int8
    ai_model_dir: str = ""
    cam_opacity: int = defaults.CAM_OPACITY_PERCENT
    # reviews and site calibration: the reader's name for reviews ("" = the OS user), the
    # active site profile per model (model_id -> profile path)
    reviewer: str = ""
    site_profiles: dict[str, Any] = field(default_factory=dict)
    # PACS: this node's calling AE title; the nodes the user keeps (dicom://AET@HOST:PORT,
    # dicom+tls://..., http(s)://HOST/PATH); the network time limit in seconds; the calling AE
    # titles `listen` accepts (empty: none but those given on its command line) and the address
    # it binds (loopback unless configured)
    pacs_calling_ae: str = defaults.CALLING_AE
    pacs_nodes: list[str] = field(default_factory=list)
    pacs_timeout_s: int = defaults.PACS_TIMEOUT_S
    listen_allowed_aes: list[str] = field(default_factory=list)
    listen_host: str = defaults.LISTEN_HOST
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept for newer versions

    @property
    def max_image_bytes(self) -> int:
        return max(1, int(self.max_image_mib)) * defaults.MIB

    def add_recent(self, path: str) -> None:
        """Put ``path`` first in the recent list (no duplicates, at most MAX_RECENT)."""
        path = os.path.abspath(path)
        self.recent_folders = [path] + [p for p in self.recent_folders if p != path]
        del self.recent_folders[MAX_RECENT:]


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def _coerce(default: Any, value: Any) -> Any:
    """Accept ``value`` only when it has the type of the default (bool is not an int here),
    cut to the bounds: lists to MAX_RECENT strings, maps to MAX_MAP_ENTRIES, text to MAX_TEXT."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else default
    if isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53
        return value if ok else default
    if isinstance(default, str):
        return value if isinstance(value, str) and len(value) <= MAX_TEXT else default
    if isinstance(default, list):
        if not isinstance(value, list):
            return default
        return [v for v in value[:MAX_RECENT * 4]
                if isinstance(v, str) and len(v) <= MAX_TEXT][:MAX_RECENT]
    if isinstance(default, dict):
        if not isinstance(value, dict):
            return default
        return dict(list(value.items())[:MAX_MAP_ENTRIES])
    return value


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, counted without recursion; stops once past ``limit``."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            stack.extend((c, level + 1) for c in (item.values() if isinstance(item, dict)
                                                   else item))
    return deepest


def _parse(path: Path) -> Any:
    """The JSON value of the settings file; raises what :func:`load_settings` turns into a
    warning (a missing file raises FileNotFoundError)."""
    text = read_small_file(path, MAX_SETTINGS_BYTES).decode("utf-8")
    raw = json.loads(text)  # RecursionError when nested deeper than the interpreter allows
    if _depth(raw, MAX_DEPTH) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return raw


def load_settings(path: Path | None = None) -> Settings:
    """Read the settings; any problem gives the defaults plus a warning, never an exception."""
    path = settings_path() if path is None else path
    defaults = Settings()
    try:
        raw = _parse(path)
    except FileNotFoundError:
        return defaults
    except PneumoViewError as exc:
        log.warning("settings file %s %s; using the defaults", path, exc.reason)
        return defaults
    except RecursionError:
        log.warning("settings file %s is nested too deeply; using the defaults", path)
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
    extra = [(k, v) for k, v in list(raw.items())[:MAX_EXTRA_KEYS + len(known)]
             if k not in known]
    return Settings(**values, extra=dict(extra[:MAX_EXTRA_KEYS]))


def save_settings(settings: Settings, path: Path | None = None) -> bool:
    """Write atomically and privately (0600); returns False (and logs) when it cannot."""
    path = settings_path() if path is None else path
    data = asdict(settings)
    extra = data.pop("extra")
    payload = {**extra, **data}
    try:
        write_private_file(path, json.dumps(payload, indent=2))
        return True
    except (OSError, ValueError, RecursionError) as exc:
        log.warning("cannot save settings to %s (%s)", path, exc)
        return False
