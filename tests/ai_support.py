"""Shared helpers for the AI tests (engine, gate, CAM, GUI): paths, models, twin files."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DICOM_DIR = DATA / "dicom"
KERMANY_PNEUMONIA = (DATA / "kermany" / "val" / "PNEUMONIA", DATA / "kermany" / "train" /
                     "PNEUMONIA")


def shared_dicom(name: str) -> Path:
    path = DICOM_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared data folder ../shared/data is not here)")
    return path


def chest_dicoms() -> list[Path]:
    if not DICOM_DIR.is_dir():
        return []
    return sorted(DICOM_DIR.glob("*.dcm"))


def pydicom_testdata(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom-data file {name} is not installed")
    return Path(path)


def bundled_trained_model_dir() -> Path:
    """The bundled model folder, or skip when it is absent or only a random test model.

    ``PNEUMOVIEW_TEST_MODEL_DIR`` points the tests at another exported model folder instead.
    """
    import os

    from pneumoview.core.errors import PneumoViewError
    from pneumoview.core.model import read_model_info

    try:
        info = read_model_info(os.environ.get("PNEUMOVIEW_TEST_MODEL_DIR") or None)
    except PneumoViewError as exc:
        pytest.skip(f"needs the trained bundled model in resources/model ({exc.reason})")
    if "random" in info.name or "test" in info.version:
        pytest.skip("the bundled model is a random test model; this test needs a trained one")
    return info.directory
