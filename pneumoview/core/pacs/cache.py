"""Where the GUI retrieves studies: the user's cache folder, private (0700/0600), one folder
per study, never a folder the user scans."""

from __future__ import annotations

from pathlib import Path

from pneumoview.core.dicomout.output import UID_PATTERN
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.paths import cache_dir, private_dir

RETRIEVED = "retrieved"


def retrieval_root() -> Path:
    return private_dir(cache_dir() / RETRIEVED)


def study_folder(study_uid: str) -> Path:
    """``<cache>/retrieved/<StudyInstanceUID>`` (created 0700)."""
    uid = str(study_uid).strip()
    if not UID_PATTERN.match(uid) or len(uid) > 64:
        raise PneumoViewError(f"the PACS gave a study UID that is not a UID ({uid[:80]!r})")
    return private_dir(retrieval_root() / uid)
