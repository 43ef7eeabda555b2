"""The GUI's batch job: load the viewer's model, pick the report's name, run the core engine.

Runs on a background thread (a :class:`~pneumoview.qt.workers.Job` in the ``batch`` lane); no Qt
here, so it is the same code path as ``pneumoview flag`` apart from where the report goes (see
:mod:`pneumoview.core.savedreports`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pneumoview.core import defaults
from pneumoview.core.aistate import saved_threshold
from pneumoview.core.batch import BatchOptions, BatchSummary, run_batch
from pneumoview.core.paths import PRIVATE_FILE_MODE, create_private_file
from pneumoview.core.report import manifest_path
from pneumoview.core.savedreports import (
    mark_cancelled,
    prepare_reports_dir,
    report_name,
    resume_target,
    unique_report_path,
)

#: Decode workers run below normal priority in the GUI so the viewer's own decoding is first.
GUI_WORKER_NICE = defaults.GUI_WORKER_NICE


@dataclass
class Started:
    """Sent once the model is loaded and the report file chosen."""

    folder: str
    output: str
    model_label: str
    model_version: str
    threshold: float


def gui_batch(folder: str, *, model_dir: str | None, device: str,
              thresholds: dict[str, Any] | None,
              on_started: Callable[[Started], None],
              on_rows: Callable[[list[dict[str, Any]]], None],
              on_progress: Callable[[Any], None],
              cancel: Callable[[], bool],
              workers: int | None = None, batch_size: int = defaults.BATCH_SIZE,
              out_dir: str | os.PathLike[str] | None = None,
              max_image_mib: int = defaults.MAX_IMAGE_MIB,
              engine_name: str = defaults.ENGINE, precision: str = defaults.PRECISION,
              profiles: dict[str, Any] | None = None,
              resume: str | None = None) -> BatchSummary:
    """Flag ``folder`` with the viewer's model choice, per-model threshold and size guard;
    ``resume``: continue that (cancelled or interrupted) report, like ``flag --resume``.

    A threshold the user set for the model overrides; otherwise the model's active site
    profile (``profiles``: model_id -> path, File > Use Site Profile), else its population
    operating points, else its threshold (:class:`~pneumoview.core.oppoints.ScoringPolicy`).
    """
    from pneumoview.core.inference import Engine

    engine = Engine(model_dir, device or defaults.DEVICE, with_cam=False, engine=engine_name,
                    precision=precision)
    info = engine.load()
    from pneumoview.core.siteprofile import profile_for

    saved = saved_threshold(thresholds or {}, info.model_id, float("nan"))
    explicit = saved == saved  # a valid threshold the user set (NaN: none)
    threshold = saved if explicit else float(info.threshold)
    profile = (profiles or {}).get(info.model_id) if not explicit else None
    if profile is not None:
        threshold = profile_for(info, profile).threshold  # type: ignore[union-attr]
    if resume is not None:
        output = Path(resume_target(resume))
    else:
        output = unique_report_path(prepare_reports_dir(out_dir),
                                    report_name(folder, info.version, threshold))
    on_started(Started(os.path.abspath(folder), str(output), info.label, info.version,
                       threshold))
    created = out_dir is None and resume is None
    if created:
        create_private_file(output)  # the writer truncates it and keeps its 0600 mode
    try:
        summary = run_batch(
            BatchOptions(folder, output, threshold=threshold if explicit else None,
                         profile=profile, workers=workers,
                         batch_size=batch_size, nice=GUI_WORKER_NICE, overwrite=resume is None,
                         resume=resume is not None, max_image_mib=max_image_mib),
            engine=engine, on_rows=on_rows, on_progress=on_progress, cancel=cancel)
    except BaseException:
        if created:
            _drop_if_empty(output)
        raise
    if created and summary.output is None:  # cancelled while counting the files
        _drop_if_empty(output)
    if summary.cancelled and summary.output is not None:
        summary.output, summary.manifest = mark_cancelled(output)
    if out_dir is None and summary.manifest:
        with contextlib.suppress(OSError):
            os.chmod(summary.manifest, PRIVATE_FILE_MODE)
    return summary


def _drop_if_empty(output: Path) -> None:
    """Remove the empty report made for a run that stopped before writing it (a folder that
    is gone, a scan cancelled), so the reports folder holds no file that is not a report."""
    with contextlib.suppress(OSError):
        if output.stat().st_size == 0 and not manifest_path(output).exists():
            output.unlink()
