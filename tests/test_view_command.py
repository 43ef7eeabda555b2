"""``pneumoview view`` refuses clearly, instead of Qt's abort, where no window can be opened."""

from __future__ import annotations

import os
import subprocess
import sys

from pneumoview.commands.view import display_problem


def _never(_: str) -> bool:
    return False


def _always(_: str) -> bool:
    return True


def test_no_display_is_a_clear_message_and_screenshot_goes_offscreen() -> None:
    env: dict[str, str] = {}
    problem = display_problem(env, screenshot=False, platform="linux", can_load=_always)
    assert problem and "no display" in problem and "flag" in problem
    assert "QT_QPA_PLATFORM" not in env
    assert display_problem(env, screenshot=True, platform="linux", can_load=_always) is None
    assert env["QT_QPA_PLATFORM"] == "offscreen"


def test_missing_xcb_cursor_names_the_package() -> None:
    problem = display_problem({"DISPLAY": ":0"}, False, platform="linux", can_load=_never)
    assert problem and "libxcb-cursor" in problem
    assert display_problem({"DISPLAY": ":0"}, False, platform="linux", can_load=_always) is None
    # Wayland sessions and an explicit platform are left to Qt; so are other systems
    assert display_problem({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, False,
                           platform="linux", can_load=_never) is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, False, platform="linux",
                           can_load=_never) is None
    assert display_problem({}, False, platform="win32", can_load=_never) is None


def test_viewer_without_display_exits_1_with_the_reason(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["PNEUMOVIEW_CONFIG_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pneumoview", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "cannot start the viewer: no display found" in proc.stderr
