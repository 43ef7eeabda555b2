"""Display conformance: ``pneumoview render`` against dcmtk (and GDCM where dcmtk cannot read).

    python -m bench.conformance_dcmtk

For the files of issue 14 (palette colour, 16/32-bit RGB, Enhanced multi-frame, JPEG 2000,
VOI LUT probes, overlays, 8-bit films without VOI data) renders each with PneumoView's default
display and with the reference at the same window, and prints the largest difference in grey
levels; a file "matches" when no pixel differs by more than one. References:

* ``dcmtk``: ``dcmj2pnm`` with the window PneumoView chose (``+Ww``), the file's VOI LUT
  (``+Wl n``) or, for colour, no VOI (``-W``); 8-bit films without VOI data are compared with
  dcmtk's default display (no VOI: identity), as both programs show them when first opened;
* ``gdcm+dcmtk``: GDCM's ``gdcmconv`` first (``--raw`` decompresses JPEG 2000, dcmtk has no
  decoder for it; ``--decompress-lut`` expands a segmented palette, which dcmtk 3.6.7 ignores);
* ``pydicom``: for 32-bit RGB, which dcmtk 3.6.7 refuses: the stored values shifted to 8 bits
  (dcmtk's own depth reduction, ``DiColorOutputPixelTemplate``).

Needs dcmtk and libgdcm-tools (Debian). Prints a table and per-group counts; exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from pneumoview.cli import main as cli_main
from pneumoview.commands import render
from pneumoview.core import dicomio
from tests.support.dicom_factory import sample_file
from tests.support.display_probes import big_endian_ow_lut, half_range_lut, little_endian_ow_lut
from tests.support.shared_data import shared_path

PALETTE = ["OBXXXX1A.dcm", "OBXXXX1A_2frame.dcm", "OBXXXX1A_expb.dcm",
           "OBXXXX1A_expb_2frame.dcm", "OBXXXX1A_rle.dcm", "OBXXXX1A_rle_2frame.dcm",
           "OT-PAL-8-face.dcm", "gdcm-US-ALOKA-16.dcm", "gdcm-US-ALOKA-16_big.dcm",
           "examples_palette.dcm"]
RGB_DEEP = [f"SC_rgb{enc}_{bits}bit{frames}.dcm" for bits in (16, 32)
            for enc in ("", "_expb", "_rle") for frames in ("", "_2frame")]
ENHANCED = [("eCT_Supplemental.dcm", 0), ("eCT_Supplemental.dcm", 1)]
J2K = ["GDCMJ2K_TextGBR.dcm"]
OVERLAYS = ["MR-SIEMENS-DICOM-WithOverlays.dcm", "examples_overlay.dcm"]
FILMS_8BIT = [p for p in (shared_path("dicom", "nhsx_nih_cxr.dcm"),
                          shared_path("dicom", "txv_siim_cxr.dcm")) if p is not None]
SEGMENTED = {"gdcm-US-ALOKA-16.dcm", "gdcm-US-ALOKA-16_big.dcm"}


class Case:
    """One file, frame and reference; :meth:`run` gives (max diff, note)."""

    def __init__(self, group: str, path: Path, frame: int = 0, reference: str = "dcmtk",
                 overlays: bool = False) -> None:
        self.group, self.path, self.frame = group, path, frame
        self.reference, self.overlays = reference, overlays

    @property
    def label(self) -> str:
        return f"{self.path.name}[{self.frame}]"

    def run(self, tmp: Path) -> tuple[float | None, str]:
        try:
            ours = self._ours(tmp / "ours.png")
        except RuntimeError as exc:
            return None, f"ours failed: {exc}"
        ref = self._reference(tmp)
        if ref is None:
            return None, "reference failed"
        if ours.ndim != ref.ndim:  # grey against colour: compare as colour
            ours = np.repeat(ours[..., None], 3, axis=2) if ours.ndim == 2 else ours
            ref = np.repeat(ref[..., None], 3, axis=2) if ref.ndim == 2 else ref
        if ours.shape != ref.shape:
            return None, f"shape {ours.shape} vs {ref.shape}"
        diff = np.abs(ours.astype(int) - ref.astype(int))
        return float(diff.max()), f"mean {diff.mean():.2f}"

    # -- ours ----------------------------------------------------------------------------------
    def _ours(self, out: Path) -> np.ndarray:
        args = ["render", str(self.path), "--output", str(out), "--frame", str(self.frame)]
        if self.overlays:
            args.append("--overlays")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                rc = cli_main(args)
        except SystemExit as exc:  # argparse: an option this version does not have
            raise RuntimeError(f"exit {exc.code}") from None
        if rc != 0 or not out.exists():
            raise RuntimeError(f"rc {rc}")
        return np.asarray(Image.open(out))

    def _window_args(self) -> list[str]:
        decoded = dicomio.decode(self.path, self.frame)
        if decoded.is_colour or self.group == "8-bit film":  # colour; dcmtk's default display
            return ["-W"]
        window = render.choose_window(decoded)
        if window.lut is not None:
            luts = [w for w in decoded.windows if w.lut is not None]
            return ["+Wl", str(luts.index(window) + 1)]
        func = ["+Wfs"] if window.function == "SIGMOID" else []
        return ["+Ww", f"{window.center!r}", f"{window.width!r}", *func]

    # -- references ----------------------------------------------------------------------------
    def _reference(self, tmp: Path) -> np.ndarray | None:
        if self.reference == "pydicom":
            return _shifted_rgb(self.path, self.frame)
        src = self.path
        if self.reference.startswith("gdcm"):
            src = tmp / "gdcm.dcm"
            option = "--decompress-lut" if self.path.name in SEGMENTED else "--raw"
            done = subprocess.run(["gdcmconv", option, str(self.path), str(src)],
                                  capture_output=True, timeout=120)
            if done.returncode != 0:
                return None
        out = tmp / "ref.png"
        cmd = ["dcmj2pnm", "+on", "+F", str(self.frame + 1), *self._window_args(),
               "+O" if self.overlays else "-O", *(["0"] if self.overlays else []), str(src),
               str(out)]
        done = subprocess.run(cmd, capture_output=True, timeout=120)
        if done.returncode != 0 or not out.exists():
            return None
        return np.asarray(Image.open(out))


def _shifted_rgb(path: Path, frame: int) -> np.ndarray:
    ds = pydicom.dcmread(path)
    arr = pydicom.pixels.pixel_array(ds, index=frame).astype(np.uint64)
    return (arr >> (int(ds.BitsStored) - 8)).astype(np.uint8)


def cases(tmp: Path) -> list[Case]:
    def named(names: list[str]) -> list[Path]:
        return [Path(p) for p in map(sample_file, names) if p]

    def frames(path: Path) -> list[int]:
        return [0, 1] if "2frame" in path.name else [0]

    out = [Case("palette", p, f, reference="gdcm+dcmtk" if p.name in SEGMENTED else "dcmtk")
           for p in named(PALETTE) for f in frames(p)]
    out += [Case("rgb16/32", p, f, reference="pydicom" if "32bit" in p.name else "dcmtk")
            for p in named(RGB_DEEP) for f in frames(p)]
    out += [Case("enhanced", Path(p), f) for n, f in ENHANCED if (p := sample_file(n))]
    out += [Case("jpeg2000", p, reference="gdcm+dcmtk") for p in named(J2K)]
    builders: list[Callable[[Path], Path]] = [half_range_lut, little_endian_ow_lut,
                                              big_endian_ow_lut]
    out += [Case("voi-lut", b(tmp / f"{b.__name__}.dcm")) for b in builders]
    out += [Case("overlays", p, overlays=True) for p in named(OVERLAYS)]
    out += [Case("8-bit film", p) for p in FILMS_8BIT]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    for tool in ("dcmj2pnm", "gdcmconv"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install dcmtk libgdcm-tools)")
    warnings.simplefilter("ignore")
    groups: dict[str, list[bool]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for case in cases(tmp):
            sub = Path(tempfile.mkdtemp(dir=tmp))
            diff, note = case.run(sub)
            ok = diff is not None and diff <= 1
            groups.setdefault(case.group, []).append(ok)
            shown = "-" if diff is None else f"{diff:.0f}"
            print(f"{case.group:11s} {case.label:34s} {case.reference:11s} max diff {shown:>4s}"
                  f"  {'match' if ok else 'DIFFERS'}  {note}")
    print()
    total = sum(len(v) for v in groups.values())
    matched = sum(sum(v) for v in groups.values())
    for group, oks in groups.items():
        print(f"{group:11s} {sum(oks)}/{len(oks)} within one grey level")
    print(f"{'all':11s} {matched}/{total} within one grey level")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
