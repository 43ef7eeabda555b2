"""The licence collector of the PyInstaller build (packaging/collect_licenses.py), run on a few
files of the development environment instead of a whole build."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packaging"))

import collect_licenses  # noqa: E402


def _origin(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, module
    return spec.origin


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("lic") / "licenses"
    sources = [_origin("pydicom"), _origin("PySide6.QtCore"), _origin("numpy")]
    rows = collect_licenses.collect(sources, out, ROOT / "packaging" / "licenses")
    return out, rows


def test_only_distributions_owning_a_bundled_file_are_listed(collected) -> None:
    _, rows = collected
    names = {r["name"].lower().replace("_", "-") for r in rows}
    assert {"pydicom", "pyside6-essentials", "numpy", "python"} <= names
    assert "pytest" not in names and "hypothesis" not in names


def test_licence_texts_are_copied(collected) -> None:
    out, rows = collected
    pydicom_row = next(r for r in rows if r["name"] == "pydicom")
    assert pydicom_row["files"], "pydicom ships a licence file in its dist-info"
    for row in rows:
        for f in row["files"]:
            assert (out / f).stat().st_size > 0


def test_qt_gets_the_lgpl_and_gpl_texts_and_a_source_note(collected) -> None:
    out, rows = collected
    qt = next(r for r in rows if r["name"].lower().startswith("pyside6"))
    folder = out / Path(qt["files"][0]).parts[0]
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in (folder / "LGPL-3.0.txt").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in (folder / "GPL-3.0.txt").read_text()
    assert "source code" in (folder / "README.txt").read_text()


def test_summary_files(collected) -> None:
    out, rows = collected
    readme = (out / "README.txt").read_text()
    for row in rows:
        assert row["name"] in readme
    assert json.loads((out / "components.json").read_text()) == rows


def test_summary_lines_are_one_line_each(collected) -> None:
    out, rows = collected
    for row in rows:
        assert "\n" not in row["license"] and len(row["license"]) <= 200, row
