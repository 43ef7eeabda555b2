"""The report files the GUI batch keeps: where they go, how they are named, cancel and copy.

Every GUI run writes its report row by row into ``data_dir()/reports/`` (private to the user:
reports hold patient IDs) under a name with the time, the folder, the model version and the
threshold, so the user has a copy whether or not they press Save Report. A cancelled run keeps
its partial report, renamed ``...-cancelled.csv``; resuming it renames it back first
(:func:`resume_target`). :func:`unfinished_reports` finds the reports a later session (after a
restart, a crash or a kill) can still resume: those whose manifest says the run was cancelled
or never finished (:func:`pneumoview.core.report.run_state`, the rule ``flag --resume`` and
``merge-reports`` go by).
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class UnfinishedReport:
    """A report in the reports folder whose run stopped before the end."""

    path: str  #: the report CSV
    folder: str  #: the folder that run flagged (the manifest's ``root``)
    model: str  #: the model's name and version
    when: float  #: when the report was last written (its mtime)
    rows: int  #: rows in the report (the files done)
    files: int  #: files that run counted
    state: rep.RunState  #: cancelled or interrupted (:func:`report.run_state`)

    @property
    def folder_exists(self) -> bool:
        return os.path.isdir(self.folder)


@dataclass(frozen=True)
class SkippedReport:
    """A file in the reports folder that cannot be offered for resuming, and why."""

    path: str
    reason: str


def unfinished_reports(folder: str | os.PathLike[str] | None = None
                       ) -> tuple[list[UnfinishedReport], list[SkippedReport]]:
    """The reports in ``folder`` (default :func:`reports_dir`) that can be resumed, newest
    first, and the ones passed over with the reason (no manifest, a damaged one, another run
    writing it). Finished reports are neither. Only reads: nothing is created or renamed."""
    where = Path(folder) if folder is not None else reports_dir()
    try:
        names = sorted(os.listdir(where))
    except OSError:
        return [], []  # no reports folder yet (nothing ever flagged)
    found: list[UnfinishedReport] = []
    skipped: list[SkippedReport] = []
    for name in names:
        if name.startswith(".") or not name.endswith(".csv"):
            continue  # manifests, locks, a writer's temporary files
        entry = _unfinished(where / name)
        if isinstance(entry, SkippedReport):
            skipped.append(entry)
        elif entry is not None:
            found.append(entry)
    found.sort(key=lambda r: r.when, reverse=True)
    return found, skipped


def unfinished_for_folder(folder: str | os.PathLike[str],
                          reports: list[UnfinishedReport]) -> UnfinishedReport | None:
    """The newest of ``reports`` made by a run of ``folder`` (compared as absolute paths)."""
    want = os.path.normcase(os.path.abspath(folder))
    for entry in reports:  # newest first
        if os.path.normcase(os.path.abspath(entry.folder)) == want:
            return entry
    return None


def _unfinished(path: Path) -> UnfinishedReport | SkippedReport | None:
    """One file of the reports folder: resumable, passed over (why), or finished (None)."""
    try:
        st = os.stat(path, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size == 0 and not rep.manifest_path(path).exists():
            return SkippedReport(str(path), "empty: its run stopped before writing a row")
        if not rep.starts_like_a_report(path):
            return SkippedReport(str(path), rep.NOT_A_REPORT)
        manifest = rep.read_manifest(path)
    except OSError as exc:
        return SkippedReport(str(path), f"cannot read it ({exc.strerror or exc})")
    except PneumoViewError as exc:
        return SkippedReport(str(path), exc.reason)
    assert manifest is not None  # required=True raises when it is missing
    state = rep.run_state(manifest)
    if state is rep.RunState.FINISHED:
        return None
    holder = rep.lock_holder(path)
    if holder is not None:
        return SkippedReport(str(path), f"another run is writing it ({holder})")
    if not isinstance(manifest.get("root"), str) or not manifest["root"]:
        return SkippedReport(str(path), "its manifest does not name the folder flagged")
    rows = manifest.get("rows")
    return UnfinishedReport(
        path=str(path), folder=rep.unescape_path(manifest["root"]),
        model=_model_of(manifest),
        when=st.st_mtime, rows=int(rows) if rows is not None else _count_rows(path),
        files=int(manifest["files"]), state=state)


def _model_of(manifest: dict) -> str:
    """The model as the chooser names it: name and version (the label adds hashes)."""
    name, version = manifest.get("model_name"), manifest.get("model_version")
    if isinstance(name, str) and isinstance(version, str) and name:
        return f"{name} {version}".strip()
    return str(manifest.get("model_label") or "unknown model")


def _count_rows(path: Path) -> int:
    """Complete rows in a report (a torn last line is not one): its lines after the header.
    Cells never hold a line break (:mod:`pneumoview.core.report` writes them on one line)."""
    lines = 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                lines += chunk.count(b"\n")
    except OSError:
        return 0
    return max(0, lines - 1)
