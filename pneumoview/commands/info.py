"""``pneumoview info FILE``: what a DICOM file holds and how PneumoView decodes it, without Qt."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from pneumoview.core import dicomio, functional_groups, windowing
from pneumoview.core.errors import PneumoViewError

_HEADER_FIELDS = (
    ("Patient", "PatientName"), ("Patient ID", "PatientID"), ("Study date", "StudyDate"),
    ("Study", "StudyDescription"), ("Series", "SeriesDescription"), ("Modality", "Modality"),
    ("Body part", "BodyPartExamined"), ("View", "ViewPosition"),
    ("Photometric", "PhotometricInterpretation"), ("Rows", "Rows"), ("Columns", "Columns"),
    ("Bits allocated/stored", None), ("Pixel representation", "PixelRepresentation"),
    ("Rescale slope/intercept", None), ("Presentation LUT shape", "PresentationLUTShape"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="DICOM file")
    parser.add_argument("--no-decode", action="store_true", help="print the header facts only")


def describe(path: str, decode: bool = True) -> list[str]:
    """Human-readable lines about a file; raises PneumoViewError for unreadable ones."""
    ds = dicomio.read_header(path)
    tsyntax = ds.file_meta.get("TransferSyntaxUID", "(none)")
    lines = [f"File: {path}", f"Transfer syntax: {tsyntax} ({getattr(tsyntax, 'name', '')})",
             f"SOP class: {getattr(ds.get('SOPClassUID', ''), 'name', '')}"]
    text = dicomio.header_text  # a malformed value prints as empty, it does not raise
    for label, key in _HEADER_FIELDS:
        if label == "Bits allocated/stored":
            value = f"{text(ds, 'BitsAllocated')}/{text(ds, 'BitsStored')}"
        elif label == "Rescale slope/intercept":
            src = functional_groups.rescale_source(ds, 0)  # Enhanced: frame 1's functional group
            value = f"{text(src, 'RescaleSlope') or '1'}/{text(src, 'RescaleIntercept') or '0'}" \
                + (" + Modality LUT Sequence" if "ModalityLUTSequence" in src else "") \
                + (" (functional groups, frame 1)" if src is not ds else "")
        else:
            value = text(ds, key) if key else ""
        lines.append(f"{label}: {value}")
    lines.append(f"Frames: {dicomio.number_of_frames(ds)}")
    lines.append(f"Display inverts: {'yes' if dicomio.display_inverts(ds) else 'no'}")
    if decode:
        decoded = dicomio.decode(path, ds=ds)
        values = decoded.values
        lines.append(f"Decoded: {values.shape} float32, modality values "
                     f"{float(np.min(values)):g} .. {float(np.max(values)):g}")
        for w in windowing.presets(values, decoded.windows, decoded.modality, decoded.identity):
            kind = "VOI LUT" if w.lut is not None else w.function
            lines.append(f"Preset: '{w.name}' C={w.center:g} W={w.width:g} ({kind})")
    return lines


def run(args: argparse.Namespace) -> int:
    from pneumoview.commands.console import say, say_lines

    try:
        lines = describe(args.file, decode=not args.no_decode)
    except PneumoViewError as exc:
        say(f"pneumoview info: {exc}", sys.stderr)
        return 1
    except MemoryError:
        say(f"pneumoview info: {args.file}: not enough memory to decode this image; try "
            "--no-decode for the header", sys.stderr)
        return 1
    say_lines(lines)  # header text and the file name may hold terminal escape sequences
    return 0
