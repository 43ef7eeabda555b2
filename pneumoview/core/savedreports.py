"""The report files the GUI batch keeps: where they go, how they are named, cancel and copy.

Every GUI run writes its report row by row into ``data_dir()/reports/`` (private to the user:
reports hold patient IDs) under a name with the time, the folder, the model version and the
threshold, so the user has a copy whether or not they press Save Report. A cancelled run keeps
its partial report, renamed ``...-cancelled.csv``; resuming it renames it back first
(:func:`resume_target`).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from pneumoview.core import report as rep
from pneumoview.core.errors import PneumoViewError, ReportWriteError
from pneumoview.core.paths import private_dir


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


def prepare_reports_dir(out_dir: str | os.PathLike[str] | None) -> Path:
    """The folder a run's report goes to (``None``: the private reports folder), created."""
    target = Path(out_dir) if out_dir is not None else reports_dir()
    try:
        if out_dir is None:
            private_dir(target)  # reports hold patient IDs: 0700, whatever the umask
        else:
            target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PneumoViewError(f"cannot create the reports folder ({exc.strerror or exc})",
                              target) from exc
    return target


def unique_report_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``...~2.csv``, ``~3``... when two runs start in the same second."""
    output = folder / name
    n = 1
    while output.exists():
        n += 1
        output = output.with_name(f"{output.stem.rsplit('~', 1)[0]}~{n}.csv")
    return output


def mark_cancelled(output: str | os.PathLike[str]) -> tuple[str, str | None]:
    """Rename a cancelled report (and its manifest) to ``...-cancelled.csv``."""
    src = Path(output)
    dst = src.with_name(f"{src.stem}{CANCELLED_SUFFIX}{src.suffix}")
    try:
        os.replace(src, dst)
    except OSError:
        return str(src), str(rep.manifest_path(src))
    try:
        os.replace(rep.manifest_path(src), rep.manifest_path(dst))
    except OSError:
        return str(dst), None
    return str(dst), str(rep.manifest_path(dst))


CANCELLED_SUFFIX = "-cancelled"


def resume_target(report: str | os.PathLike[str]) -> str:
    """Where a resumed run continues ``report``: a ``...-cancelled.csv`` gets its own name
    back (with its manifest) unless that name is taken; any other report stays where it is."""
    src = Path(report)
    if not src.stem.endswith(CANCELLED_SUFFIX):
        return str(src)
    dst = src.with_name(src.stem[:-len(CANCELLED_SUFFIX)] + src.suffix)
    if dst.exists() or rep.manifest_path(dst).exists():
        return str(src)
    try:
        os.replace(src, dst)
    except OSError:
        return str(src)
    if rep.manifest_path(src).exists():
        try:
            os.replace(rep.manifest_path(src), rep.manifest_path(dst))
        except OSError:
            os.replace(dst, src)  # a report without its manifest cannot be resumed
            return str(src)
    return str(dst)


def copy_report(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Save a copy of a report (and its manifest) where the user chose."""
    import shutil

    try:
        shutil.copyfile(source, dest)
        man = rep.manifest_path(source)
        if man.exists():
            shutil.copyfile(man, rep.manifest_path(dest))
    except OSError as exc:
        raise ReportWriteError(f"cannot save the report ({exc.strerror or exc})", dest,
                               exc.errno) from exc
