"""The AI state without Qt: model choice precedence, threshold memory, result cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pneumoview.core.aistate import (
    LRU,
    AIState,
    ModelChoice,
    ResultCache,
    ThresholdMemory,
    cam_shown,
    resolve_choice,
    saved_threshold,
)
from pneumoview.core.settings import Settings


@dataclass
class _Info:
    """The ModelInfo fields the state reads (its ScoringPolicy included)."""

    model_id: str
    threshold: float = 0.5
    temperature: float = 1.0
    raw: dict[str, Any] = field(default_factory=dict)  # metadata: no operating_points
    directory: Path = Path("model")


def test_the_viewer_reads_each_image_at_its_populations_point() -> None:
    """Population points in the metadata: the image's age chooses its threshold; a hand-set
    threshold overrides them all and its reset returns to them."""
    import math

    from pneumoview.core.inference import SCORED, Prediction

    info = _Info("m1", raw={"operating_points": {"adult": 0.3, "paediatric": 0.8}})
    state = AIState(Settings())
    state.model_loaded(info)
    assert state.default_threshold == 0.3 and state.varies_by_image  # unknown age: adult's
    header = type("H", (), {"PatientAge": "007Y"})()
    state.note_header("/child.dcm", header)
    pred = Prediction("/child.dcm", 0, SCORED, 0.6, math.log(0.6 / 0.4), 0.3, True, "",
                      "m", "sha", "m1")
    assert state.threshold_for("/child.dcm") == 0.8
    shown = state.shown(pred)
    assert (shown.operating_point, shown.threshold, shown.flagged) == ("paediatric", 0.8, False)
    assert shown.probability == pytest.approx(0.6)
    assert state.shown(pred.__class__(**{**pred.__dict__, "path": "/x.dcm"})
                       ).operating_point == "age-unknown:adult"
    state.set_threshold(0.3)  # equal to a point, still the user's: it overrides every point
    assert state.shown(pred).operating_point == "override"
    assert state.thresholds.saved == {"m1": 0.3}
    state.reset_threshold()
    assert state.thresholds.saved == {} and state.shown(pred).operating_point == "paediatric"


def test_command_line_wins_over_settings_which_win_over_bundled() -> None:
    s = Settings(ai_model_dir="/saved", ai_device="cuda")
    assert resolve_choice("/cli", "cpu", s) == ModelChoice("/cli", "cpu")
    assert resolve_choice(None, None, s) == ModelChoice("/saved", "cuda")
    assert resolve_choice(None, None, Settings()) == ModelChoice(None, "auto")
    assert resolve_choice(None, None, None) == ModelChoice(None, "auto")


def test_a_loaded_model_becomes_the_choice_over_the_command_line() -> None:
    s = Settings()
    state = AIState(s, resolve_choice("/model-a", "cpu", s))
    state.model_loaded(_Info("a"))
    assert state.choice == ModelChoice("/model-a", "cpu")
    assert state.choose("/model-b") == ModelChoice("/model-b", "cpu")
    assert state.choice.model_dir == "/model-a"  # not before it has loaded
    assert state.model_loaded(_Info("b")) is True
    assert state.choice == ModelChoice("/model-b", "cpu")
    assert s.ai_model_dir == "/model-b"
    state.choose(None)
    state.model_loaded(_Info("bundled"))
    assert state.choice.model_dir is None and s.ai_model_dir == ""


def test_a_refused_model_changes_nothing() -> None:
    s = Settings()
    state = AIState(s, ModelChoice("/a", "cpu"))
    state.model_loaded(_Info("a"))
    state.choose("/broken")
    state.model_refused()
    assert state.choice.model_dir == "/a" and s.ai_model_dir == ""
    state.model_loaded(_Info("a"))  # the same model again: still /a
    assert state.choice.model_dir == "/a"


@pytest.mark.parametrize("saved, expected", [
    ({"m": 0.3}, 0.3), ({"m": "0.25"}, 0.25), ({"m": 1.5}, 0.5), ({"m": -0.1}, 0.5),
    ({"m": "x"}, 0.5), ({"m": None}, 0.5), ({}, 0.5), ([], 0.5), (None, 0.5)])
def test_saved_threshold_falls_back_to_the_model_default(saved: object, expected: float) -> None:
    assert saved_threshold(saved, "m", 0.5) == pytest.approx(expected)


def test_threshold_memory_lives_in_the_settings_and_drops_the_default() -> None:
    s = Settings()
    mem = ThresholdMemory(s)
    mem.set("m", 0.4, 0.5)
    assert s.ai_thresholds == {"m": 0.4}
    snap = mem.snapshot()
    mem.set("m", 0.5, 0.5)
    assert s.ai_thresholds == {} and snap == {"m": 0.4}
    state = AIState(s, ModelChoice())
    s.ai_thresholds["x"] = 0.2
    state.model_loaded(_Info("x"))
    assert state.threshold == pytest.approx(0.2)


def test_result_cache_evicts_oldest_and_their_timings() -> None:
    cache = ResultCache(predictions=LRU(2))
    cache.put(("a", 0, False), "pa", 1.0)
    cache.put(("b", 0, False), "pb", 2.0)
    cache.put(("c", 0, False), "pc", 3.0)
    assert cache.predictions.get(("a", 0, False)) is None
    assert ("a", 0, False) not in cache.elapsed
    cache.forced.add(("c", 0))
    assert cache.key(("c", 0)) == ("c", 0, True)
    cache.put(("c", 0, True), "pc-forced", None)
    assert cache.best_for_path("c") == "pc-forced"
    assert cache.for_image(("c", 0)) == "pc-forced"
    cache.clear()
    assert len(cache.predictions) == 0 and not cache.forced


def test_replacing_the_model_forgets_its_results() -> None:
    state = AIState(None, ModelChoice())
    state.model_loaded(_Info("a"))
    state.results.put(("p", 0, False), "old", None)
    assert state.model_loaded(_Info("a")) is False
    assert state.results.best_for_path("p") == "old"
    assert state.model_loaded(_Info("b")) is True
    assert state.results.best_for_path("p") is None


def _pred(path: str, model_id: str, probability: float = 0.6, threshold: float = 0.5) -> Any:
    from pneumoview.core.inference import SCORED, Prediction

    return Prediction(path, 0, SCORED, probability, None, threshold, probability >= threshold,
                      "", "m", "sha", model_id)


def test_a_refusal_is_remembered_until_a_model_loads() -> None:
    state = AIState(None, ModelChoice())
    assert state.error == ""
    state.model_refused("no such folder")
    assert state.error == "no such folder" and state.info is None
    state.model_loaded(_Info("a"))
    assert state.error == ""
    state.model_refused("broken weights")  # the loaded model stays; the refusal is said
    assert state.error == "broken weights" and state.info.model_id == "a"


def test_answers_of_a_replaced_model_are_not_kept() -> None:
    state = AIState(None, ModelChoice())
    state.model_loaded(_Info("b"))
    assert not state.keep_prediction(("/x.dcm", 0, False), _pred("/x.dcm", "a"), 5.0)
    assert state.results.for_image(("/x.dcm", 0)) is None
    assert state.keep_prediction(("/x.dcm", 0, False), _pred("/x.dcm", "b"), 5.0)
    assert state.results.for_image(("/x.dcm", 0)).model_id == "b"
    assert state.results.elapsed[("/x.dcm", 0, False)] == 5.0


def test_the_tree_shows_the_viewers_result_else_the_batchs_at_the_current_threshold() -> None:
    state = AIState(None, ModelChoice())
    state.model_loaded(_Info("a"))
    assert state.result_for_path("/x.dcm") is None
    state.add_batch_rows([{"path": "/x.dcm", "status": "scored", "probability": 0.6,
                           "threshold": 0.5, "flagged": True, "model_id": "a"}])
    assert state.result_for_path("/x.dcm").flagged
    state.set_threshold(0.7)  # read again at the user's threshold
    assert not state.result_for_path("/x.dcm").flagged
    state.results.put(("/x.dcm", 0, False), _pred("/x.dcm", "a", probability=0.9), None)
    assert state.result_for_path("/x.dcm").probability == 0.9  # the viewer's wins
    state.results.put(("/x.dcm", 0, True), _pred("/x.dcm", "a", probability=0.2), None)
    assert state.result_for_path("/x.dcm").probability == 0.2  # scored anyway wins


@pytest.mark.parametrize("wanted, flagged, expected", [
    (None, True, True), (None, False, False), (True, False, True), (False, True, False)])
def test_the_map_shows_for_flagged_images_unless_the_user_says_otherwise(
        wanted: bool | None, flagged: bool, expected: bool) -> None:
    pred = _pred("/x.dcm", "a", probability=0.9 if flagged else 0.1)
    assert cam_shown(wanted, pred) is expected
    assert cam_shown(wanted, None) is bool(wanted)
