"""Where the tests find the real data sets (``../shared/data``), and how to hide them.

The one home for that path: every test, helper and fuzz server asks :func:`shared_data_dir`.
``PNEUMOVIEW_TEST_DATA`` overrides it: a folder to use instead, or ``none`` to behave as on a
user's fresh machine, where the folder does not exist (``.ci/run`` runs the tests marked
``shared_data`` a second time that way). The variable passes to subprocesses (the fuzz
servers) with the rest of the environment.

Tests that look at the data carry the ``shared_data`` marker (see ``tests/conftest.py``):
``@pytest.mark.shared_data("dicom")`` skips the test with a reason when ``dicom`` is missing;
a bare ``@pytest.mark.shared_data`` says the test runs either way but behaves differently
(it falls back to pydicom-data or built files). The conftest fails a test that looks the data
up without the marker, so the second CI pass cannot miss one.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "PNEUMOVIEW_TEST_DATA"
DEFAULT = Path(__file__).resolve().parents[2].parent / "shared" / "data"
#: Set by the conftest while a test runs; a lookup then records itself here.
lookups: list[str] = []


def shared_data_dir() -> Path | None:
    """The real data folder, or None when it is absent or hidden (``PNEUMOVIEW_TEST_DATA``)."""
    value = os.environ.get(ENV_VAR, "").strip()
    lookups.append(value or str(DEFAULT))
    if value.lower() == "none":
        return None
    path = Path(value).expanduser() if value else DEFAULT
    return path if path.is_dir() else None


def shared_path(*parts: str) -> Path | None:
    """``shared_data_dir() / parts`` when that file or folder exists, else None."""
    root = shared_data_dir()
    if root is None:
        return None
    path = root.joinpath(*parts)
    return path if path.exists() else None


def absent_reason(*parts: str) -> str:
    """Why a test that needs ``parts`` of the shared data is skipped."""
    what = "/".join(parts) or "the folder"
    if os.environ.get(ENV_VAR, "").strip().lower() == "none":
        return f"shared data hidden ({ENV_VAR}=none): needs {what}"
    root = os.environ.get(ENV_VAR, "").strip() or str(DEFAULT)
    return (f"needs {what} of the real data folder {root} (absent: it sits beside the "
            f"repository on dev machines and CI, or set {ENV_VAR})")


def chest_dicoms() -> list[Path]:
    """The real chest radiographs in ``dicom/`` (empty when the data is absent)."""
    folder = shared_path("dicom")
    return sorted(folder.glob("*.dcm")) if folder is not None else []


def require(*parts: str) -> Path:
    """``shared_path(*parts)``, or skip the running test with the reason."""
    import pytest

    path = shared_path(*parts)
    if path is None:
        pytest.skip(absent_reason(*parts))
    return path
