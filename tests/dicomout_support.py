"""Helpers for tests of the DICOM AI result objects: dciodvfy, and reading an SR back."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def dciodvfy_errors(path: Path) -> list[str]:
    """dicom3tools' dciodvfy ``Error`` lines for ``path`` (skips when it is not installed)."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120,
                          check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [line for line in lines if line.startswith(("Error", "Abort"))]


def sr_measurements(path: Path) -> dict[str, tuple[float, str]]:
    """The SR's TID 1501 NUM items by concept name: (value, unit code), read by highdicom."""
    import highdicom as hd

    sr = hd.sr.srread(path)
    groups = sr.content.get_image_measurement_groups()
    assert len(groups) == 1, f"{path}: {len(groups)} measurement groups"
    return {m.name.meaning: (float(m.value), m.unit.value) for m in groups[0].get_measurements()}


def sr_evaluations(path: Path) -> dict[str, str]:
    import highdicom as hd

    group = hd.sr.srread(path).content.get_image_measurement_groups()[0]
    return {q.name.meaning: q.value.meaning for q in group.get_qualitative_evaluations()}


def evidence_uids(ds) -> list[str]:  # a pydicom Dataset
    """The SOP Instance UIDs in CurrentRequestedProcedureEvidenceSequence."""
    return [sop.ReferencedSOPInstanceUID
            for study in ds.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence
            for sop in series.ReferencedSOPSequence]


def sr_texts(ds) -> list[str]:  # a pydicom Dataset
    """Every TEXT item's value and every coded meaning in the SR's content tree."""
    out: list[str] = []
    stack = list(ds.ContentSequence)
    while stack:
        item = stack.pop()
        if "TextValue" in item:
            out.append(str(item.TextValue))
        if "ConceptCodeSequence" in item:
            out.append(str(item.ConceptCodeSequence[0].CodeMeaning))
        stack.extend(item.get("ContentSequence", []))
    return out
