"""The viewer reads each image at its population's operating point, as the batch does.

A model whose metadata carries ``operating_points`` (adult / paediatric): the AI panel
uses the shown film's population (PatientAge, else birth date against study date; unknown
age: the more sensitive point) and says which point it used; the slider overrides every
point, its reset returns to them; an active site profile's point replaces them. The panel and a
batch run over the same files agree on every threshold and operating point: one policy
(:class:`pneumoview.core.oppoints.ScoringPolicy`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.ai_controller import loaded_controller

pytestmark = [pytest.mark.gui]

#: thresholds no random model's probability can fall between: adult flags all, child none
POINTS = {"adult": {"threshold": 0.0}, "paediatric": {"threshold": 1.0}}
FILMS = {  # name: header ages -> the expected operating point
    "adult": ({"PatientAge": "045Y"}, "adult"),
    "child": ({"PatientAge": "009Y"}, "paediatric"),
    "born": ({"PatientBirthDate": "19800101", "StudyDate": "20200101"}, "adult"),
    "unknown": ({}, "age-unknown:adult"),
}


@pytest.fixture(scope="module")
def points_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.model_fixture import make_random_model_dir

    d = make_random_model_dir(tmp_path_factory.mktemp("model") / "m", seed=7)
    meta = json.loads((d / "metadata.json").read_text())
    meta["operating_points"] = POINTS  # the model_id is computed from it when loaded
    (d / "metadata.json").write_text(json.dumps(meta))
    return d


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.support.dicom_factory import make_dataset, save

    root = tmp_path_factory.mktemp("aged") / "films"
    root.mkdir()
    rng = np.random.default_rng(3)
    return {name: save(make_dataset(rng.integers(0, 255, (128, 112)).astype(np.uint8),
                                    ViewPosition="PA", **ages), root / f"{name}.dcm")
            for name, (ages, _) in FILMS.items()}


def _show(qtbot, ctl, path: Path):
    from pneumoview.core.dicomio import decode

    ctl.on_instance_changed(None)
    ctl.on_image_shown(decode(path))
    qtbot.waitUntil(lambda: ctl.pending() == 0 and ctl.panel.prediction is not None
                    and ctl.panel.prediction.path == str(path), timeout=60_000)
    return ctl.panel.prediction


def test_each_image_is_read_at_its_populations_point_like_the_batch(
        qtbot, points_model: Path, films: dict[str, Path], tmp_path: Path) -> None:
    from pneumoview.core import report as rep
    from pneumoview.core.batch import BatchOptions, run_batch

    with loaded_controller(qtbot, points_model) as ctl:
        shown = {}
        for name, (_, point) in FILMS.items():
            pred = _show(qtbot, ctl, films[name])
            shown[str(films[name])] = pred
            assert pred.operating_point == point, name
            assert pred.threshold == (0.0 if point.endswith("adult") else 1.0)
            assert pred.flagged == point.endswith("adult")
            assert ctl.panel.threshold == pred.threshold  # the slider shows the image's point
            text = ctl.panel.operating_point.text()
            assert ctl.panel.operating_point.isVisibleTo(ctl.panel) and text.startswith(
                "Operating point: ")
            assert ("age unknown" in text) == (point == "age-unknown:adult")
            assert ("paediatric" in text) == (point == "paediatric")
            assert "not at yours" not in ctl.panel.metrics_note.text()  # nothing set by hand
        # the tree column reads the same decision
        assert ctl._best_for_path(str(films["child"])).operating_point == "paediatric"
        # by hand: one threshold for every image; reset: the points again
        ctl.panel.spin.setValue(50.0)
        assert ctl.panel.prediction.operating_point == "override"
        assert "set by hand" in ctl.panel.operating_point.text()
        assert ctl.settings.ai_thresholds[ctl.info.model_id] == 0.5
        assert _show(qtbot, ctl, films["child"]).threshold == 0.5
        ctl.panel.reset_button.click()
        assert ctl.info.model_id not in ctl.settings.ai_thresholds
        assert ctl.panel.prediction.operating_point == "paediatric"
        assert ctl.panel.threshold == 1.0
    run_batch(BatchOptions(films["adult"].parent, tmp_path / "r.csv", model_dir=points_model,
                           device="cpu", workers=1))
    for row in rep.read_report(tmp_path / "r.csv"):
        pred = shown[row["path"]]
        assert row["operating_point"] == pred.operating_point
        assert float(row["threshold"]) == pred.threshold
        assert float(row["probability"]) == pytest.approx(pred.probability, abs=1e-6)


def test_an_active_site_profile_names_its_point(qtbot, points_model: Path,
                                                films: dict[str, Path], tmp_path: Path) -> None:
    from pneumoview.core.modelinfo import read_model_info
    from pneumoview.core.siteprofile import load_profile
    from tests.test_batch_oppoints import _profile

    path = _profile(tmp_path, points_model, "ward9", 1)
    profile = load_profile(path)
    model_id = read_model_info(points_model).model_id
    with loaded_controller(qtbot, points_model, site_profiles={model_id: str(path)}) as ctl:
        for name in ("adult", "child"):
            pred = _show(qtbot, ctl, films[name])
            assert pred.operating_point == "profile:ward9"
            assert pred.threshold == pytest.approx(profile.threshold)
            assert pred.probability == pytest.approx(
                profile.calibration.probability(pred.logit), abs=1e-9)
            assert "site profile 'ward9'" in ctl.panel.operating_point.text()


def test_the_bundled_model_reads_an_adult_and_a_child_at_their_points(
        qtbot, shared_data: Path | None, tmp_path: Path) -> None:
    """The bundled model's own points (``python -m training oppoints``) in the panel: a real
    adult film and a real child film, wrapped as DICOM with their ages, get different
    thresholds, each the metadata's (real films, so the input gate lets them through)."""
    if shared_data is None:
        pytest.skip("needs ../shared/data (real films: the input gate refuses synthetic ones)")
    from PIL import Image

    from pneumoview.core.resources import bundled_model_dir
    from tests.support.dicom_factory import make_dataset, save

    nih = sorted((shared_data / "nih" / "images").glob("*.png"))[0]
    kermany = sorted((shared_data / "kermany" / "train" / "NORMAL").glob("*.jpeg"))[0]
    paths = {}
    for name, src, age in (("adult", nih, "052Y"), ("child", kermany, "004Y")):
        arr = np.asarray(Image.open(src).convert("L"))
        paths[name] = save(make_dataset(arr, BodyPartExamined="CHEST",
                                        ViewPosition="PA", PatientAge=age),
                           tmp_path / f"{name}.dcm")
    points = json.loads((bundled_model_dir() / "metadata.json").read_text())["operating_points"]
    with loaded_controller(qtbot, bundled_model_dir()) as ctl:
        for name, point in (("adult", "adult"), ("child", "paediatric")):
            pred = _show(qtbot, ctl, paths[name])
            assert pred.operating_point == point, (name, pred)
            assert pred.threshold == pytest.approx(points[point]["threshold"])
            assert ctl.panel.threshold == pytest.approx(pred.threshold)
            assert point in ctl.panel.operating_point.text()
