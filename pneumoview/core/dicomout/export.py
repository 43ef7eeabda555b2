"""From a finished report to DICOM AI result objects: one SR and one Secondary Capture for
each scored row.

The objects say what the report says: the probability is the report's own value. The CAM for
the Secondary Capture needs one more model pass per image; that pass also checks that the
file, the model and the result are still the ones the report recorded (file size and mtime,
``model_id``, the probability within :data:`PROBABILITY_TOLERANCE`), so an object is never
written for an image that changed after the run or with another model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pneumoview.core.dicomout.output import check_output_folder, write_object
from pneumoview.core.dicomout.picture import compose, film_rgb
from pneumoview.core.dicomout.result import AIResult, ModelIdentity
from pneumoview.core.dicomout.sc import build_sc
from pneumoview.core.dicomout.sr import build_sr
from pneumoview.core.errors import PneumoViewError

#: How far the re-run's probability may be from the report's (which has 6 decimals); batched
#: and single-image forward passes differ in the last float32 bits, never by this much.
PROBABILITY_TOLERANCE = 1e-4


@dataclass
class ExportSummary:
    written: list[Path] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (source path, reason)
    not_evaluated: int = 0  # rows that were not scored: no objects, by design
    cancelled: bool = False


class ResultExporter:
    """Writes the objects of report rows into ``out`` with a loaded CAM-capable engine."""

    def __init__(self, engine: Any, out: str | os.PathLike[str],
                 scanned: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.engine = engine
        self.out = check_output_folder(out, scanned)
        self.model = ModelIdentity.from_info(engine.info)

    def export_rows(self, rows: Iterable[Mapping[str, Any]],
                    cancel: Callable[[], bool] = lambda: False,
                    on_row: Callable[[int], None] | None = None) -> ExportSummary:
        summary = ExportSummary()
        for i, row in enumerate(rows):
            if cancel():
                summary.cancelled = True
                break
            if row.get("status") != "scored":
                summary.not_evaluated += 1
                continue
            try:
                summary.written.extend(self.export_row(row))
            except PneumoViewError as exc:
                summary.errors.append((str(row.get("path", "")), exc.reason))
            if on_row is not None:
                on_row(i + 1)
        return summary

    def export_row(self, row: Mapping[str, Any]) -> list[Path]:
        """The SR and SC of one scored row; raises PneumoViewError naming the file."""
        from pneumoview.core.dicomio import decode

        path = str(row["path"])
        self._check_unchanged(row, path)
        result = AIResult.from_row(row, self.model)
        decoded = decode(path, frame=result.frame)
        prediction, cam = self.engine.score_with_cam(decoded, result.threshold, force=True)
        self._check_same_result(result, prediction, path)
        header = _header(decoded)
        sr = build_sr(result, header, path)
        sc = build_sc(result, header, compose(film_rgb(decoded), cam, result), path)
        return [write_object(sr, self.out), write_object(sc, self.out)]

    def _check_unchanged(self, row: Mapping[str, Any], path: str) -> None:
        if str(row.get("model_id") or self.model.model_id) != self.model.model_id:
            raise PneumoViewError("the report was made with another model than the one "
                                  "loaded; no DICOM result written", path)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise PneumoViewError(f"cannot read the file again ({exc.strerror})", path) from None
        if (row.get("file_size") not in (None, st.st_size)
                or row.get("mtime_ns") not in (None, st.st_mtime_ns)):
            raise PneumoViewError("the file changed after the report was written; resume the "
                                  "report to score it again first", path)

    def _check_same_result(self, result: AIResult, prediction: Any, path: str) -> None:
        again = prediction.probability
        if again is None or not math.isfinite(again) \
                or abs(again - result.probability) > PROBABILITY_TOLERANCE:
            raise PneumoViewError(f"the model gives {again} for this image now, the report "
                                  f"says {result.probability:.6f}; no DICOM result written",
                                  path)


def _header(decoded: Any) -> Any:
    if decoded.header is None:
        raise PneumoViewError("the decoded image has no header to reference", decoded.path)
    return decoded.header


def export_report(report: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  model_dir: str | os.PathLike[str] | None = None, device: str = "auto",
                  scanned: Iterable[str | os.PathLike[str]] = (),
                  cancel: Callable[[], bool] = lambda: False) -> ExportSummary:
    """Write the objects of every scored row of ``report`` into ``out``."""
    from pneumoview.core import report as rep
    from pneumoview.core.inference import Engine

    engine = Engine(model_dir, device, with_cam=True, interactive=False)
    engine.load()
    exporter = ResultExporter(engine, out, scanned)
    rows = [rep.parse_row(r) for r in rep.read_report(report)]
    return exporter.export_rows(rows, cancel)


def write_prediction(decoded: Any, prediction: Any, cam: Any, info: Any,
                     out: str | os.PathLike[str],
                     scanned: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """The viewer's File > Save AI Result as DICOM: the SR and the Secondary Capture of the
    result on screen (its prediction and CAM, no second model run)."""
    folder = check_output_folder(out, scanned)
    result = AIResult.from_prediction(prediction, ModelIdentity.from_info(info))
    path = str(decoded.path)
    header = _header(decoded)
    sr = build_sr(result, header, path)
    sc = build_sc(result, header, compose(film_rgb(decoded), cam, result), path)
    return [write_object(sr, folder), write_object(sc, folder)]
