"""``pneumoview view``: the GUI (Qt is imported only inside :func:`run`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, MutableMapping

from pneumoview.commands.engineargs import add_engine_arguments

#: what to install when Qt's xcb platform cannot load (Qt 6.5+ needs libxcb-cursor)
XCB_PACKAGES = "libxcb-cursor0 (Debian/Ubuntu) or xcb-util-cursor (Fedora)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="*", metavar="PATH",
                        help="folder or DICOM file to open; 2 to 4 files open side by side "
                             "(1x2, 2x2) in that order")
    parser.add_argument("--demo", action="store_true", help="open the built-in demo studies")
    parser.add_argument("--screenshot", metavar="OUT.png",
                        help="open PATH, wait for all pending work, save the window and exit")
    parser.add_argument("--model", metavar="DIR", help="model folder exported by training")
    parser.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:N or mps")
    add_engine_arguments(parser)
    parser.add_argument("--profile", metavar="PROFILE.json",
                        help="use this site profile for its model (remembered in the settings)")


def _can_load(soname: str) -> bool:
    import ctypes

    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def display_problem(env: MutableMapping[str, str], screenshot: bool, platform: str = sys.platform,
                    can_load: Callable[[str], bool] = _can_load) -> str | None:
    """Why Qt could not open a window here, or None; may choose ``offscreen`` for a screenshot.

    Without this check a Linux machine with no display, or without the library Qt's xcb
    platform needs, ends in Qt's abort (SIGABRT, a core dump) after a generic message.
    ``--screenshot`` needs no display, so it gets Qt's offscreen platform instead.
    """
    if not platform.startswith("linux"):
        return None
    has_x, has_wayland = bool(env.get("DISPLAY")), bool(env.get("WAYLAND_DISPLAY"))
    chosen = env.get("QT_QPA_PLATFORM", "").split(":", 1)[0].strip().lower()
    if chosen:
        return _chosen_platform_problem(chosen, has_x, has_wayland, can_load)
    if not has_x and not has_wayland:
        if screenshot:
            env["QT_QPA_PLATFORM"] = "offscreen"
            return None
        return ("no display found (neither DISPLAY nor WAYLAND_DISPLAY is set). The viewer "
                "needs a graphical session; on a server use the headless commands (info, "
                "render, flag, merge-reports), or save a picture with --screenshot OUT.png.")
    if has_x and not has_wayland and not can_load("libxcb-cursor.so.0"):
        return (f"Qt's X11 (xcb) platform needs the system library libxcb-cursor.so.0, which "
                f"is not installed: install {XCB_PACKAGES}, or run under Wayland.")
    return None


def _chosen_platform_problem(chosen: str, has_x: bool, has_wayland: bool,
                             can_load: Callable[[str], bool]) -> str | None:
    """For ``QT_QPA_PLATFORM=xcb`` / ``wayland``: Qt's own message when the display is missing
    blames libxcb-cursor, which may well be installed; say what is really wrong."""
    if chosen == "xcb":
        if not has_x:
            return ("QT_QPA_PLATFORM=xcb, but no X display is set (DISPLAY is empty). Start "
                    "an X session (or Xvfb) and set DISPLAY, or unset QT_QPA_PLATFORM; on a "
                    "server use the headless commands or --screenshot with "
                    "QT_QPA_PLATFORM=offscreen.")
        if not can_load("libxcb-cursor.so.0"):
            return (f"Qt's X11 (xcb) platform needs the system library libxcb-cursor.so.0, "
                    f"which is not installed: install {XCB_PACKAGES}.")
    if chosen == "wayland" and not has_wayland:
        return ("QT_QPA_PLATFORM=wayland, but WAYLAND_DISPLAY is not set; start the viewer "
                "inside a Wayland session, or unset QT_QPA_PLATFORM.")
    return None


def run(args: argparse.Namespace) -> int:
    import logging

    from pneumoview.commands.console import PrintableFormatter

    problem = display_problem(os.environ, bool(getattr(args, "screenshot", None)))
    if problem:
        print(f"pneumoview: cannot start the viewer: {problem}", file=sys.stderr)
        return 1
    if getattr(args, "profile", None):
        from pneumoview.core.errors import PneumoViewError

        try:
            remember_profile(args.profile, args.model)
        except PneumoViewError as exc:
            from pneumoview.commands.console import say

            say(f"pneumoview: {exc}", sys.stderr)
            return 1
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableFormatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    from pneumoview.qt.app import run_viewer

    return run_viewer(args)


def remember_profile(path: str, model_dir: str | None) -> None:
    """Check a site profile against the model the viewer will use and make it that model's
    active profile in the settings (the viewer and the GUI batch then use it)."""
    from pneumoview.core.modelinfo import read_model_info
    from pneumoview.core.settings import load_settings, save_settings
    from pneumoview.core.siteprofile import load_profile

    settings = load_settings()
    profile = load_profile(path)
    profile.check_model(read_model_info(model_dir or settings.ai_model_dir or None))
    settings.site_profiles = {**settings.site_profiles,
                              profile.model_id: os.path.abspath(path)}
    save_settings(settings)
