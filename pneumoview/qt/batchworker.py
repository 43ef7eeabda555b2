"""The GUI's batch job: load a model, pick the report's name, run the core batch engine.

Runs on a background thread (a :class:`~pneumoview.qt.workers.Job` in the ``batch`` lane); no Qt
here, so it is the same code path as ``pneumoview flag`` apart from where the report goes: a
file in ``data_dir()/reports/`` named with the time, the folder, the model version and the
threshold, written row by row (the "automatic copy"). A cancelled run keeps its partial report,
renamed ``...-cancelled.csv`` and marked cancelled in its manifest.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pneumoview.core import report as rep
from pneumoview.core.aistate import saved_threshold
from pneumoview.core.batch import BatchOptions, BatchSummary, run_batch
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.paths import PRIVATE_FILE_MODE, create_private_file, private_dir

#: Decode workers run below normal priority in the GUI so the viewer's own decoding is first.
GUI_WORKER_NICE = 10


def reports_dir() -> Path:
    from pneumoview.core.paths import data_dir

    return data_dir() / "reports"


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return (slug or "folder")[:limit]


def report_name(folder: str, model_version: str, threshold: float,
                when: float | None = None) -> str:
    """``20261122-031500_<folder>_model-<version>_t0.500.csv``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    name = os.path.basename(os.path.normpath(folder)) or "root"
    return (f"{stamp}_{_slug(name)}_model-{_slug(model_version, 20)}_t{threshold:.3f}.csv")


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
              workers: int | None = None, batch_size: int = 32,
              out_dir: str | os.PathLike[str] | None = None) -> BatchSummary:
    """Flag ``folder`` with the viewer's model choice and per-model threshold."""
    from pneumoview.core.inference import Engine

    engine = Engine(model_dir, device or "auto", with_cam=False)
    info = engine.load()
    threshold = saved_threshold(thresholds or {}, info.model_id, float(info.threshold))
    target_dir = Path(out_dir) if out_dir is not None else reports_dir()
    try:
        if out_dir is None:
            private_dir(target_dir)  # reports hold patient IDs: 0700, whatever the umask
        else:
            target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PneumoViewError(f"cannot create the reports folder ({exc.strerror or exc})",
                              target_dir) from exc
    output = target_dir / report_name(folder, info.version, threshold)
    n = 1
    while output.exists():  # two runs in the same second
        n += 1
        output = output.with_name(f"{output.stem.rsplit('~', 1)[0]}~{n}.csv")
    on_started(Started(os.path.abspath(folder), str(output), info.label, info.version,
                       threshold))
    if out_dir is None:
        create_private_file(output)  # the writer truncates it and keeps its 0600 mode
    summary = run_batch(
        BatchOptions(folder, output, threshold=threshold, workers=workers,
                     batch_size=batch_size, nice=GUI_WORKER_NICE, overwrite=True),
        engine=engine, on_rows=on_rows, on_progress=on_progress, cancel=cancel)
    if summary.cancelled and summary.output is not None:
        summary.output, summary.manifest = mark_cancelled(output)
    if out_dir is None and summary.manifest:
        with contextlib.suppress(OSError):
            os.chmod(summary.manifest, PRIVATE_FILE_MODE)
    return summary


def mark_cancelled(output: str | os.PathLike[str]) -> tuple[str, str | None]:
    """Rename a cancelled report (and its manifest) to ``...-cancelled.csv``."""
    src = Path(output)
    dst = src.with_name(f"{src.stem}-cancelled{src.suffix}")
    try:
        os.replace(src, dst)
    except OSError:
        return str(src), str(rep.manifest_path(src))
    try:
        os.replace(rep.manifest_path(src), rep.manifest_path(dst))
    except OSError:
        return str(dst), None
    return str(dst), str(rep.manifest_path(dst))


def copy_report(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Save a copy of a report (and its manifest) where the user chose."""
    import shutil

    try:
        shutil.copyfile(source, dest)
        man = rep.manifest_path(source)
        if man.exists():
            shutil.copyfile(man, rep.manifest_path(dest))
    except OSError as exc:
        raise PneumoViewError(f"cannot save the report ({exc.strerror or exc})", dest) from exc
