"""``pneumoview render FILE --output OUT.png``: a windowed 8-bit image of one frame, without Qt.

The output's extension chooses the format (``.png``, the default when there is none; ``.jpg``
and the others Pillow writes); an extension Pillow cannot write is refused. ``--frame`` counts
from 0 (DICOM's own frame numbers, and the viewer's "Frame 1/3", count from 1).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from os import PathLike

import numpy as np

from pneumoview.commands.argtypes import finite_float
from pneumoview.core import colour, dicomio, windowing
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.overlays import burn_in

#: Lossy formats are written at this quality (Pillow's default of 75 blurs fine lines).
JPEG_QUALITY = 95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="DICOM file")
    parser.add_argument("--output", "-o", required=True, metavar="OUT.png",
                        help="image to write; the extension picks the format (.png, .jpg, "
                             ".tif, .bmp, ...; PNG when there is none)")
    parser.add_argument("--center", type=finite_float, help="window centre (with --width)")
    parser.add_argument("--width", type=finite_float, help="window width (with --center)")
    parser.add_argument("--preset", help="preset name, e.g. 'Full range', 'Auto', 'Soft', "
                        "'High contrast', or a window the file declares (see 'pneumoview info')")
    parser.add_argument("--frame", type=int, default=0,
                        help="frame index, counted from 0 (default 0, the first frame; DICOM "
                             "and the viewer number frames from 1)")
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
        if not (math.isfinite(center) and math.isfinite(width)):
            raise PneumoViewError(f"window centre and width must be finite numbers, got "
                                  f"{center} and {width}")
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


def image_format(output: str | PathLike[str]) -> str:
    """Pillow's format name for the output's extension (PNG without one); refuses others."""
    from PIL import Image

    ext = os.path.splitext(os.fspath(output))[1].lower()
    if not ext:
        return "PNG"
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise PneumoViewError(f"cannot write {ext!r} images; use .png, .jpg, .tif or .bmp",
                              output)
    return fmt


def render_image(path: str | PathLike[str], output: str | PathLike[str],
                 center: float | None = None, width: float | None = None,
                 preset: str | None = None, frame: int = 0,
                 overlays: bool = False) -> windowing.Window | None:
    """Decode, window and save the image (format by extension; RGB for colour); returns the
    window used (``None`` for colour, which has no window)."""
    from PIL import Image

    fmt = image_format(output)
    try:
        decoded = dicomio.decode(path, frame)
        window = None if decoded.is_colour else choose_window(decoded, center, width, preset)
        image = Image.fromarray(render_array(decoded, window, overlays))
    except MemoryError:
        raise PneumoViewError("not enough memory to render this image (it passed the size "
                              "guard, but this machine or the process limit cannot hold its "
                              "decoded values)", path) from None
    options = {"quality": JPEG_QUALITY} if fmt in ("JPEG", "WEBP") else {}
    try:
        image.save(output, format=fmt, **options)
    except OSError as exc:
        raise PneumoViewError(f"cannot write the image: {exc.strerror or exc}", output) from exc
    except (ValueError, KeyError) as exc:
        raise PneumoViewError(f"cannot write this image as {fmt}: {exc}", output) from exc
    return window


def run(args: argparse.Namespace) -> int:
    from pneumoview.commands.console import say

    try:
        window = render_image(args.file, args.output, args.center, args.width, args.preset,
                              args.frame, args.overlays)
    except PneumoViewError as exc:
        say(f"pneumoview render: {exc}", sys.stderr)
        return 1
    if window is None:
        ignored = args.center is not None or args.width is not None or args.preset
        say(f"wrote {args.output} (colour: no window"
            f"{'; --center/--width/--preset do not apply' if ignored else ''})")
    else:
        say(f"wrote {args.output} (window '{window.name}' C={window.center:g} "
            f"W={window.width:g} {window.function})")
    return 0
