"""``pneumoview render FILE --output OUT.png``: a windowed 8-bit PNG of one frame, without Qt."""

from __future__ import annotations

import argparse
import sys
from os import PathLike

import numpy as np

from pneumoview.core import colour, dicomio, windowing
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.overlays import burn_in


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="DICOM file")
    parser.add_argument("--output", "-o", required=True, metavar="OUT.png", help="PNG to write")
    parser.add_argument("--center", type=float, help="window centre (with --width)")
    parser.add_argument("--width", type=float, help="window width (with --center)")
    parser.add_argument("--preset", help="preset name, e.g. 'Full range', 'Auto', 'Soft', "
                        "'High contrast', or a window the file declares (see 'pneumoview info')")
    parser.add_argument("--frame", type=int, default=0, help="frame number, from 0 (default 0)")
    parser.add_argument("--overlays", action="store_true",
                        help="draw the file's overlay planes (60xx) in white (default: off, so "
                             "the output compares with other renderers)")


def choose_window(decoded: dicomio.DecodedImage, center: float | None = None,
                  width: float | None = None, preset: str | None = None) -> windowing.Window:
    """An explicit window, a named preset, or the file's default, with a message on misuse."""
    if (center is None) != (width is None):
        raise PneumoViewError("give both --center and --width, or neither")
    declared = decoded.windows
    if center is not None and width is not None:
        func = declared[0].function if declared and declared[0].lut is None else "LINEAR"
        if width <= 0:
            raise PneumoViewError(f"window width must be positive, got {width}")
        return windowing.Window("Custom", center, width, func)
    if preset:
        options = windowing.presets(decoded.values, declared, decoded.modality,
                                    decoded.identity)
        for w in options:
            if w.name.lower() == preset.lower():
                return w
        names = ", ".join(f"'{w.name}'" for w in options)
        raise PneumoViewError(f"no preset named '{preset}'; this file offers {names}",
                              decoded.path)
    return windowing.default_window(decoded.values, declared, decoded.identity)


def render_array(decoded: dicomio.DecodedImage, window: windowing.Window | None,
                 overlays: bool = False) -> np.ndarray:
    """The display image: windowed grey (inverted once for MONOCHROME1), or colour (RGB, palette
    applied) reduced to 8 bits; the overlay planes drawn in when asked."""
    if decoded.is_colour:
        image = colour.to_display8(decoded.values[..., :3], decoded.colour_bits)
    else:
        assert window is not None
        image = windowing.apply_window(decoded.values, window, decoded.invert)
    return burn_in(image, decoded.overlays) if overlays else image


def render_image(path: str | PathLike[str], output: str | PathLike[str],
                 center: float | None = None, width: float | None = None,
                 preset: str | None = None, frame: int = 0,
                 overlays: bool = False) -> windowing.Window | None:
    """Decode, window and save a PNG (RGB for colour); returns the window used (``None`` for
    colour, which has no window)."""
    from PIL import Image

    decoded = dicomio.decode(path, frame)
    window = None if decoded.is_colour else choose_window(decoded, center, width, preset)
    try:
        Image.fromarray(render_array(decoded, window, overlays)).save(output, format="PNG")
    except OSError as exc:
        raise PneumoViewError(f"cannot write the PNG: {exc.strerror or exc}", output) from exc
    return window


def run(args: argparse.Namespace) -> int:
    try:
        window = render_image(args.file, args.output, args.center, args.width, args.preset,
                              args.frame, args.overlays)
    except PneumoViewError as exc:
        print(f"pneumoview render: {exc}", file=sys.stderr)
        return 1
    if window is None:
        ignored = args.center is not None or args.width is not None or args.preset
        print(f"wrote {args.output} (colour: no window"
              f"{'; --center/--width/--preset do not apply' if ignored else ''})")
    else:
        print(f"wrote {args.output} (window '{window.name}' C={window.center:g} "
              f"W={window.width:g} {window.function})")
    return 0
