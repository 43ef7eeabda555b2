"""Hostile settings files (issue 13.17): nesting, FIFOs, /dev/zero, huge lists.

Each case fell over before: a deep file raised RecursionError ("unexpected error" at start-up),
a FIFO blocked start-up forever, a link to /dev/zero was killed for memory, and 100,000 recent
folders made start-up take minutes (one menu action each).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time

import pytest
from hostile_support import run_bounded

from pneumoview.core.settings import (
    MAX_MAP_ENTRIES,
    MAX_RECENT,
    Settings,
    load_settings,
    save_settings,
)

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")


@pytest.mark.parametrize("depth", [50, 100_000])
def test_deeply_nested_settings_give_defaults_with_a_warning(tmp_path, caplog, depth):
    path = tmp_path / "settings.json"
    path.write_text('{"extra_key": ' + "[" * depth + "]" * depth + "}")
    with caplog.at_level(logging.WARNING):
        s = load_settings(path)
    assert s == Settings()
    assert "using the defaults" in caplog.text
    assert save_settings(s, path)  # and what it saves loads again


def _load_in_child(path: os.PathLike[str]) -> str:
    return f"""
        import logging, sys
        from pathlib import Path
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
        from pneumoview.core.settings import Settings, load_settings
        assert load_settings(Path({str(path)!r})) == Settings()
        print("DEFAULTS")
    """


@posix_only
def test_settings_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "settings.json"
    os.mkfifo(fifo)
    out = run_bounded(_load_in_child(fifo), timeout_s=30)
    assert out.ok, (out.returncode, out.stderr[-2000:])
    assert "DEFAULTS" in out.stdout and "not a regular file" in out.stdout


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_settings_link_to_dev_zero_is_refused_without_reading_it(tmp_path):
    link = tmp_path / "settings.json"
    link.symlink_to("/dev/zero")
    out = run_bounded(_load_in_child(link), mem_mib=1024, timeout_s=60)
    assert out.ok, (out.returncode, out.stderr[-2000:])
    assert "DEFAULTS" in out.stdout and "not a regular file" in out.stdout


def test_oversized_settings_file_is_refused(tmp_path, caplog):
    path = tmp_path / "settings.json"
    path.write_text('{"window_state": "' + "A" * (5 * 2**20) + '"}')
    with caplog.at_level(logging.WARNING):
        assert load_settings(path) == Settings()
    assert "refused" in caplog.text


def test_huge_lists_are_cut_to_their_bounds_at_load(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({
        "recent_folders": [f"/f/{i}" for i in range(100_000)],
        "ai_thresholds": {f"{i:064x}": 0.5 for i in range(20_000)},
        **{f"future_{i}": i for i in range(5_000)},
    }))
    t0 = time.perf_counter()
    s = load_settings(path)
    assert time.perf_counter() - t0 < 30  # generous: the point is the bounds below
    assert s.recent_folders == [f"/f/{i}" for i in range(MAX_RECENT)]
    assert len(s.ai_thresholds) == MAX_MAP_ENTRIES
    assert len(s.extra) <= 256


def test_settings_are_written_private_whatever_the_umask(tmp_path):
    old = os.umask(0o000)
    try:
        path = tmp_path / "new" / "settings.json"
        assert save_settings(Settings(), path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not [p for p in path.parent.iterdir() if p.name != "settings.json"]  # no temp left
