"""The viewer's AI state, without Qt: which model, which threshold, which results are known.

One object is shared by everything in a window that uses the model, so that the AI panel, the
study tree's AI column and File > Batch Flag Folder agree on three policies:

* :class:`ModelChoice` — the model folder and device in use. The command line's ``--model`` /
  ``--device`` win over the saved settings, which win over the bundled model on ``auto``
  (:func:`resolve_choice`); once the user loads another model, *that* model is the choice for
  the viewer and the batch alike, and it is remembered in the settings.
* :class:`ThresholdMemory` — the operating threshold the user set per model (``model_id``);
  without one, the viewer reads each image as the batch does: the active site profile, else
  the model's population operating points (by the image's age), else the model's threshold
  (:meth:`AIState.policy`, a :class:`~pneumoview.core.oppoints.ScoringPolicy`).
* :class:`ResultCache` — predictions per (path, frame, forced) and CAMs per (path, frame), so
  that going back to an image or moving the threshold never runs the model again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Hashable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pneumoview.core import runoptions

#: Predictions kept (a few bytes each: a whole folder's worth).
RESULT_CACHE = 10000
#: CAMs kept (an image-sized float array each).
CAM_CACHE = 4

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
ResultKey = tuple[str, int, bool]  # path, frame, scored anyway (gate overridden)
ImageKey = tuple[str, int]  # path, frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    """A model folder (``None``: the bundled model) and a device preference (``auto``...)."""

    model_dir: str | None = None
    device: str = "auto"
    engine: str = "auto"  # auto, torch, openvino (pneumoview.core.engines)
    precision: str = "auto"  # auto, bf16, f32, int8


def resolve_choice(cli_model: str | None, cli_device: str | None,
                   settings: Any = None, cli_engine: str | None = None,
                   cli_precision: str | None = None) -> ModelChoice:
    """Command line, then the saved settings, then the bundled model on ``auto``
    (:func:`pneumoview.core.runoptions.resolve` is the one precedence rule)."""
    chosen = runoptions.resolve({"model_dir": cli_model or None, "device": cli_device or None,
                                 "engine": cli_engine or None,
                                 "precision": cli_precision or None}, settings)
    return ModelChoice(chosen.model_dir, chosen.device, chosen.engine, chosen.precision)


def saved_threshold(saved: Any, model_id: str, default: float) -> float:
    """The threshold remembered for ``model_id`` in ``saved`` (a mapping), else ``default``.

    Anything that is not a number in [0, 1] (a hand-edited settings file) counts as unset.
    """
    return runoptions.resolve_threshold(None, saved if isinstance(saved, dict) else None,
                                        model_id, default)


class ThresholdMemory:
    """Per-model thresholds, kept in ``settings.ai_thresholds`` when there are settings."""

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings
        self._own: dict[str, Any] = {}

    @property
    def saved(self) -> dict[str, Any]:
        """The live mapping ``model_id -> threshold`` (the settings' own dict when present)."""
        mapping = getattr(self.settings, "ai_thresholds", None)
        return mapping if isinstance(mapping, dict) else self._own

    def get(self, model_id: str, default: float) -> float:
        return saved_threshold(self.saved, model_id, default)

    def set(self, model_id: str, value: float, default: float | None) -> None:
        """Remember ``value``; the default threshold is stored as no entry at all
        (``default`` None: the threshold varies by image, so any value is the user's)."""
        if default is not None and abs(float(value) - float(default)) < 1e-12:
            self.saved.pop(model_id, None)
        else:
            self.saved[model_id] = float(value)

    def explicit(self, model_id: str) -> float | None:
        """The threshold the user set for ``model_id``, or None."""
        value = saved_threshold(self.saved, model_id, float("nan"))
        return None if value != value else value

    def forget(self, model_id: str) -> None:
        self.saved.pop(model_id, None)

    def snapshot(self) -> dict[str, Any]:
        """A copy for a background job (the user may move the threshold while it runs)."""
        return dict(self.saved)


class LRU(Generic[K, V]):
    """A mapping that forgets its least recently stored entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> list[K]:
        """Store ``value``; returns the keys evicted to stay within the limit."""
        self._items[key] = value
        self._items.move_to_end(key)
        evicted = []
        while len(self._items) > self.limit:
            old, _ = self._items.popitem(last=False)
            evicted.append(old)
        return evicted

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def clear(self) -> None:
        self._items.clear()


@dataclass
class ResultCache:
    """Predictions (with the time they took), CAMs and the images the user scored anyway."""

    predictions: LRU[ResultKey, Any] = field(default_factory=lambda: LRU(RESULT_CACHE))
    cams: LRU[ImageKey, Any] = field(default_factory=lambda: LRU(CAM_CACHE))
    elapsed: MutableMapping[ResultKey, float] = field(default_factory=dict)
    forced: set[ImageKey] = field(default_factory=set)

    def key(self, image: ImageKey) -> ResultKey:
        """The cache key of the result wanted for ``image`` now (forced or not)."""
        return (*image, image in self.forced)

    def put(self, key: ResultKey, prediction: Any, elapsed_ms: float | None) -> None:
        for old in self.predictions.put(key, prediction):
            self.elapsed.pop(old, None)
        if elapsed_ms is not None:
            self.elapsed[key] = float(elapsed_ms)

    def for_image(self, image: ImageKey) -> Any:
        return self.predictions.get(self.key(image))

    def best_for_path(self, path: str) -> Any:
        """The result that stands for a file: frame 0, a scored-anyway result preferred."""
        for force in (True, False):
            pred = self.predictions.get((path, 0, force))
            if pred is not None:
                return pred
        return None

    def clear(self) -> None:
        self.predictions.clear()
        self.elapsed.clear()
        self.cams.clear()
        self.forced.clear()


def _row_population(row: dict[str, Any]) -> str | None:
    """From the header facts a live run's rows have, else the population point a report's
    row was read at (a report has no age column)."""
    from pneumoview.core.oppoints import POPULATIONS, row_population

    population = row_population(row)
    point = str(row.get("operating_point") or "")
    return population if population is not None or point not in POPULATIONS else point


def prediction_from_row(row: dict[str, Any]) -> Any:
    """A report row (typed, as ``on_rows`` gives it) as a Prediction of its file's first
    frame, or None for an ``error``/``skipped`` row (nothing the model said)."""
    from pneumoview.core.inference import NOT_SCORED, SCORED, Prediction
    from pneumoview.core.reportrow import Status

    status = str(row.get("status", ""))
    path, threshold = str(row["path"]), float(row.get("threshold") or 0.0)
    model = (str(row.get("model_label") or ""), str(row.get("model_sha256") or ""))
    model_id = str(row.get("model_id") or "")
    if status == Status.NOT_SCORED:
        return Prediction(path, 0, NOT_SCORED, None, None, threshold, None,
                          str(row.get("message") or ""), *model, model_id=model_id)
    if status != Status.SCORED or row.get("probability") is None:
        return None
    logit = row.get("logit")
    return Prediction(path, 0, SCORED, float(row["probability"]),
                      None if logit is None else float(logit), threshold,
                      bool(row.get("flagged")), "", *model, model_id=model_id,
                      operating_point=str(row.get("operating_point") or ""))


class AIState:
    """The model choice, threshold memory and results of one viewer window.

    :meth:`choose` records the model the user asked for; :meth:`model_loaded` makes it the
    choice (and the remembered setting) once it has loaded, so a refused model changes nothing.
    """

    def __init__(self, settings: Any = None, choice: ModelChoice | None = None) -> None:
        self.settings = settings
        self.choice = choice or resolve_choice(None, None, settings)
        self.thresholds = ThresholdMemory(settings)
        self.results = ResultCache()
        self.info: Any = None  # the loaded model's ModelInfo
        self.error = ""  # why the model asked for last did not load ("" once one has loaded)
        self.threshold = 0.5
        self._pending: ModelChoice | None = None
        self.profile: Any = None  # the active SiteProfile for the loaded model
        self.override: float | None = None  # the threshold the user set for the model
        self.populations: dict[str, str | None] = {}  # path -> adult/paediatric/None
        self._policy: Any = None
        #: path -> Prediction from a GUI batch's report rows (the study tree shows them)
        self.batch_results: dict[str, Any] = {}
        self.batch_listeners: list[Any] = []  # called with the paths that got a result

    def choose(self, model_dir: str | None) -> ModelChoice:
        """The user asked for ``model_dir`` (``None``: bundled); returns what to load."""
        self._pending = dataclasses.replace(self.choice, model_dir=model_dir or None)
        return self._pending

    def model_loaded(self, info: Any) -> bool:
        """A model is ready; returns True when it replaced another (results are then stale)."""
        replaced = self.info is not None and self.info.model_id != info.model_id
        self.info = info
        self.error = ""
        if self._pending is not None:
            self.choice, self._pending = self._pending, None
            if hasattr(self.settings, "ai_model_dir"):
                self.settings.ai_model_dir = self.choice.model_dir or ""
        self.profile = self._active_profile(info)
        self.override = self.thresholds.explicit(info.model_id)
        self._policy = None
        self.threshold = self.override if self.override is not None \
            else self.default_threshold
        if replaced:
            self.results.clear()
        return replaced

    def _active_profile(self, info: Any) -> Any:
        """The site profile the settings make active for this model (File > Use Site
        Profile..., ``view --profile``), or None; a broken or foreign one is left out."""
        from pneumoview.core.errors import PneumoViewError
        from pneumoview.core.siteprofile import active_profile_path, profile_for

        try:
            return profile_for(info, active_profile_path(self.settings, info.model_id))
        except PneumoViewError as exc:
            log.warning("site profile not used: %s", exc)
            return None

    @property
    def default_threshold(self) -> float:
        """The threshold without the user's: the profile's, else the one for a film of
        unknown age (the more sensitive population point), else the model's."""
        if self.info is None:
            return 0.5
        return self.policy_without_override().default_threshold

    @property
    def policy(self) -> Any:
        """The :class:`~pneumoview.core.oppoints.ScoringPolicy` the viewer reads images by."""
        from pneumoview.core.oppoints import ScoringPolicy

        if self._policy is None or self._policy.info is not self.info \
                or self._policy.override != self.override:
            self._policy = ScoringPolicy(self.info, self.override, self.profile)
        return self._policy

    def policy_without_override(self) -> Any:
        from pneumoview.core.oppoints import ScoringPolicy

        return ScoringPolicy(self.info, None, self.profile)

    @property
    def varies_by_image(self) -> bool:
        """Whether the threshold depends on the image (population points, no override)."""
        return self.info is not None and self.policy.uses_points

    def note_header(self, path: str, header: Any) -> None:
        """Remember the population of ``path``'s film from its header (PatientAge, else
        PatientBirthDate against StudyDate)."""
        from pneumoview.core.oppoints import population_of

        def text(keyword: str) -> str:
            return str(getattr(header, keyword, "") or "") if header is not None else ""

        self.populations[path] = population_of(text("PatientAge"), text("PatientBirthDate"),
                                               text("StudyDate"))

    def threshold_for(self, path: str | None) -> float:
        """The threshold an image is read at (the slider shows it)."""
        if self.info is None:
            return self.threshold
        population = self.populations.get(path) if path is not None else None
        return self.policy.decide_threshold(population)[1]

    def model_refused(self, message: str = "") -> None:
        """The model asked for did not load (``message`` says why): the one in use, if any,
        stays the choice."""
        self._pending = None
        self.error = message

    def set_threshold(self, value: float) -> None:
        """The user set a threshold: it overrides the profile's or the model's points."""
        self.threshold = float(value)
        if self.info is None:
            return
        points = self.policy_without_override().uses_points
        self.thresholds.set(self.info.model_id, self.threshold,
                            None if points else self.default_threshold)
        self.override = self.thresholds.explicit(self.info.model_id)

    def reset_threshold(self) -> None:
        """Back to the profile's or the model's threshold(s)."""
        if self.info is not None:
            self.thresholds.forget(self.info.model_id)
        self.override = None
        self.threshold = self.default_threshold

    def add_batch_rows(self, rows: list[dict[str, Any]]) -> None:
        """Report rows of a batch run (``run_batch``'s ``on_rows``): the scored and not-scored
        ones become results the study tree shows; listeners hear which paths changed."""
        paths = []
        for row in rows:
            pred = prediction_from_row(row)
            if pred is not None:
                self.batch_results[pred.path] = pred
                self.populations.setdefault(pred.path, _row_population(row))
                paths.append(pred.path)
        for listener in list(self.batch_listeners):
            listener(paths)

    def batch_result(self, path: str) -> Any:
        """The batch's result for ``path`` when it was made by the loaded model."""
        pred = self.batch_results.get(path)
        if pred is None or self.info is None or pred.model_id != self.info.model_id:
            return None
        return pred

    def keep_prediction(self, key: ResultKey, pred: Any, elapsed_ms: float | None) -> bool:
        """Cache a worker's prediction for ``key``; False (not kept) when a model that has
        since been replaced made it."""
        if self.info is not None and pred.model_id != self.info.model_id:
            return False
        self.results.put(key, pred, elapsed_ms)
        return True

    def result_for_path(self, path: str) -> Any:
        """What the study tree shows for a file: the viewer's result (frame 0, a scored-anyway
        one preferred), else a GUI batch run's, read as the user sees it (:meth:`shown`)."""
        pred = self.results.best_for_path(path)
        return self.shown(pred if pred is not None else self.batch_result(path))

    def shown(self, pred: Any) -> Any:
        """``pred`` as the user sees it: read by :attr:`policy` (the profile's calibration,
        the image's operating point or the user's threshold) when scored."""
        if pred is None or not pred.scored:
            return pred
        if pred.logit is None or self.info is None:
            return pred.with_threshold(self.threshold)
        d = self.policy.decide(float(pred.logit), self.populations.get(pred.path))
        return dataclasses.replace(pred, probability=d.probability, threshold=d.threshold,
                                   flagged=d.flagged, operating_point=d.operating_point)


def cam_shown(wanted: bool | None, pred: Any) -> bool:
    """Whether the CAM is on for an image: the user's choice for it (``wanted``), else on for
    a flagged result and off for any other (``pred`` as shown, or None)."""
    if wanted is not None:
        return wanted
    return bool(pred is not None and pred.scored and pred.flagged)
