"""Shared helpers for the AI tests (engine, gate, CAM, GUI): paths, models, twin files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.shared_data import chest_dicoms, require, shared_path

__all__ = ["chest_dicoms", "chest_folder", "kermany_pneumonia_dirs", "shared_dicom"]


def shared_dicom(name: str) -> Path:
    """A real chest DICOM of ../shared/data/dicom, or skip with the reason."""
    return require("dicom", name)


def kermany_pneumonia_dirs() -> list[Path]:
    """The Kermany PNEUMONIA folders (val, then train) that are present."""
    found = (shared_path("kermany", split, "PNEUMONIA") for split in ("val", "train"))
    return [p for p in found if p is not None]


def chest_folder(dest: Path, minimum: int) -> Path:
    """A folder of at least ``minimum`` real chest radiographs: ../shared/data/dicom when it is
    here, else pydicom-data's RG1 chest CR prepared in ``dest`` as the demo's three series
    (uncompressed MONOCHROME1, JPEG 2000, inverted MONOCHROME2), so a fresh machine runs the
    same tests on real pixels."""
    files = chest_dicoms()
    if len(files) >= minimum:
        return files[0].parent
    from pneumoview.core.demo import prepare_demo
    from pneumoview.core.errors import PneumoViewError

    try:
        folder = prepare_demo(dest)
    except PneumoViewError as exc:
        pytest.skip(f"neither ../shared/data/dicom nor pydicom-data's RG1 chest: {exc}")
    if len(list(folder.glob("*.dcm"))) < minimum:
        pytest.skip(f"needs {minimum} chest files; the pydicom-data fallback has fewer")
    return folder


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
