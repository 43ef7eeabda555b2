"""``pneumoview cache info|clear``: what PneumoView keeps in the user folders, and emptying
the index cache (the one store that holds patient names, IDs and birth dates for speed).

Both are display-less (no Qt, no torch); the viewer's File > Clear Cache does the same as
``clear``.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from pneumoview.core import indexcache, paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("info", "clear"),
                        help="info: where each store is and what it holds; clear: delete the "
                             "folder index cache")


def _mode(path: Path) -> str:
    try:
        return f"mode {stat.S_IMODE(os.stat(path).st_mode):04o}"
    except OSError:
        return "absent"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def info_lines() -> list[str]:
    """The stores PneumoView writes, with their paths, sizes and modes."""
    cache_file = indexcache.default_cache_path()
    lines = [f"Index cache: {cache_file} ({_mode(cache_file)})"]
    if cache_file.exists():
        with indexcache.IndexCache(cache_file) as cache:
            counts = cache.stats()
        lines.append(f"  {counts['entries']} file(s), {counts['instances']} DICOM image(s), "
                     f"{_size(counts['bytes'])}; holds each file's path, size and times and "
                     "its header summary (patient name, ID, birth date, sex, study date and "
                     "description, accession number, UIDs)")
        lines.append(f"  entries of deleted files are dropped when their folder is next "
                     f"opened; entries not used for {indexcache.PURGE_AFTER_DAYS} days are "
                     "purged")
    settings = paths.config_dir() / "settings.json"
    lines.append(f"Settings: {settings} ({_mode(settings)}); window layout, recent folders, "
                 "image size limit, AI preferences (threshold per model_id)")
    reports = paths.data_dir() / "reports"
    n_reports = len(list(reports.glob("*.csv"))) if reports.is_dir() else 0
    lines.append(f"Batch reports of the app: {reports} ({_mode(reports)}; {n_reports} report(s) "
                 "with patient IDs; delete them yourself when done)")
    demo = paths.cache_dir() / "demo"
    lines.append(f"Demo images: {demo} ({_mode(demo)}; public sample data)")
    from pneumoview.core.pacs.audit import default_audit_path
    from pneumoview.core.pacs.cache import RETRIEVED

    retrieved = paths.cache_dir() / RETRIEVED
    lines.append(f"Studies retrieved from a PACS (File > Open from PACS): {retrieved} "
                 f"({_mode(retrieved)}; DICOM files with patient data; delete them yourself "
                 "when done)")
    audit = default_audit_path()
    lines.append(f"PACS audit log of listen: {audit} ({_mode(audit)}; AE titles, addresses, "
                 "digests of UIDs; no patient data)")
    lines.append("Clear the index cache with: pneumoview cache clear")
    return lines


def clear() -> str:
    """Delete the index cache files; one line saying what was deleted."""
    cache_file = indexcache.default_cache_path()
    entries = indexcache.clear_cache(cache_file)
    if entries is None:
        return f"nothing to clear: no index cache at {cache_file}"
    return f"deleted the index cache {cache_file} ({entries} entries)"


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "info":
            print("\n".join(info_lines()))
        else:
            print(clear())
    except OSError as exc:
        print(f"pneumoview cache: error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
