"""The validity gate refuses only on positive evidence, with a reason naming the tag."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from pneumoview.core.gate import looks_grey, not_scorable_reason
from tests.ai_support import chest_dicoms, pydicom_testdata

# lower-case CS values are deliberate: real files have them and the gate must cope
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR CS")


def _ds(**tags: object) -> Dataset:
    ds = Dataset()
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def test_empty_header_is_scorable() -> None:
    assert not_scorable_reason(Dataset()) is None
    assert not_scorable_reason(None) is None


def test_frontal_chest_is_scorable() -> None:
    ds = _ds(Modality="DX", BodyPartExamined="chest", ViewPosition="PA",
             PresentationIntentType="FOR PRESENTATION", PhotometricInterpretation="MONOCHROME2",
             SamplesPerPixel=1)
    assert not_scorable_reason(ds) is None


@pytest.mark.parametrize("part", ["CHEST", "Chest", "thorax", " THORAX ", ""])
def test_chest_body_parts_pass(part: str) -> None:
    assert not_scorable_reason(_ds(BodyPartExamined=part)) is None


@pytest.mark.parametrize("part", ["EXTREMITY", "KNEE", "abdomen", "SKULL"])
def test_other_body_part_refused(part: str) -> None:
    reason = not_scorable_reason(_ds(BodyPartExamined=part))
    assert reason is not None and "BodyPartExamined" in reason and part.upper() in reason


@pytest.mark.parametrize("view", ["LAT", "LL", "RL", "LATERAL", "ll"])
def test_lateral_refused(view: str) -> None:
    reason = not_scorable_reason(_ds(ViewPosition=view))
    assert reason is not None and reason.startswith("lateral view")


@pytest.mark.parametrize("view", ["PA", "AP", ""])
def test_frontal_views_pass(view: str) -> None:
    assert not_scorable_reason(_ds(ViewPosition=view)) is None


def test_for_processing_refused() -> None:
    reason = not_scorable_reason(_ds(PresentationIntentType="FOR PROCESSING"))
    assert reason is not None and "FOR PROCESSING" in reason
    assert not_scorable_reason(_ds(PresentationIntentType="FOR PRESENTATION")) is None


@pytest.mark.parametrize("modality", ["CT", "MR", "US", "NM", "PT", "MG"])
def test_non_radiograph_modality_refused(modality: str) -> None:
    reason = not_scorable_reason(_ds(Modality=modality))
    assert reason is not None and f"Modality {modality}" in reason


@pytest.mark.parametrize("modality", ["CR", "DX", "DR", "RG", "SC", "OT", "cr", ""])
def test_radiograph_modalities_pass(modality: str) -> None:
    assert not_scorable_reason(_ds(Modality=modality)) is None


def test_multi_frame_refused() -> None:
    assert "multi-frame" in (not_scorable_reason(_ds(NumberOfFrames=3)) or "")
    assert "multi-frame" in (not_scorable_reason(Dataset(), n_frames=2) or "")
    assert not_scorable_reason(_ds(NumberOfFrames=1)) is None
    # the explicit frame count wins over the header
    assert not_scorable_reason(_ds(NumberOfFrames=4), n_frames=1) is None


def test_colour_refused_by_header_and_by_pixels() -> None:
    rgb = _ds(PhotometricInterpretation="RGB", SamplesPerPixel=3)
    assert "colour" in (not_scorable_reason(rgb) or "")
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 255, (8, 8, 3)).astype(np.float32)
    assert "colour" in (not_scorable_reason(rgb, values=colour) or "")
    # a grey film stored as RGB (three equal channels) is not true colour
    grey = np.repeat(rng.integers(0, 255, (8, 8, 1)), 3, axis=2).astype(np.float32)
    assert looks_grey(grey) and not looks_grey(colour)
    assert not_scorable_reason(rgb, values=grey) is None
    # independent codec noise of a few levels per channel is still grey
    noisy = grey + rng.integers(-3, 4, grey.shape)
    assert looks_grey(noisy) and not_scorable_reason(rgb, values=noisy) is None
    # a grey film under a colour-coded map over a third of it is colour
    film = np.repeat(np.linspace(0, 255, 90 * 90).reshape(90, 90, 1), 3, axis=2)
    film[:30, :, 0] = 255
    film[:30, :, 2] = 0
    assert not looks_grey(film)
    assert "colour" in (not_scorable_reason(rgb, values=film) or "")
    ybr = _ds(PhotometricInterpretation="YBR_FULL_422", SamplesPerPixel=3)
    assert "colour" in (not_scorable_reason(ybr) or "")
    palette = _ds(PhotometricInterpretation="PALETTE COLOR", SamplesPerPixel=1)
    assert "colour" in (not_scorable_reason(palette, values=np.zeros((4, 4))) or "")


def test_first_evidence_wins_and_is_one_reason() -> None:
    reason = not_scorable_reason(_ds(BodyPartExamined="KNEE", ViewPosition="LAT", Modality="CT"))
    assert reason == "not a chest image (BodyPartExamined KNEE)"


@pytest.mark.shared_data("dicom")
def test_shared_chest_files_pass_the_gate() -> None:
    from pneumoview.core.dicomio import read_header

    for path in chest_dicoms():
        assert not_scorable_reason(read_header(path)) is None, path.name


def test_rg3_extremity_is_refused() -> None:
    from pneumoview.core.dicomio import read_header

    reason = not_scorable_reason(read_header(pydicom_testdata("RG3_UNCI.dcm")))
    assert reason == "not a chest image (BodyPartExamined EXTREMITY)"
