"""``pneumoview --self-test``: is this installation whole? Model, codecs, inference, CAM, Qt.

A frozen build can be broken in ways no import shows until a user opens the wrong file: a codec
plugin whose package metadata (its entry point) was left out is silently "not available", a
model file altered on disk scores nonsense, a missing Qt platform plugin stops the viewer before
its first window. The self-test looks at each of these directly:

* **model** - ``metadata.json`` is valid and ``model.safetensors`` matches its sha256;
* **codecs** - every embedded sample in ``resources/selftest/`` (one per transfer syntax; made
  by ``packaging/make_selftest_samples.py``) decodes through the app's own pipeline
  (:func:`pneumoview.core.dicomio.decode`) *and* through every pydicom decoding plugin the
  bundle must ship for that syntax, each compared with the formula the sample was made from
  (exact for lossless syntaxes, within a few grey levels for JPEG baseline);
* **inference** and **cam** - the inference engine loads the model, scores one sample and
  computes its Grad-CAM; the results must be finite and in range;
* **qt** - PySide6 imports and the ``offscreen`` platform plugin and this system's own one are
  present.

It prints one line per check and exits 0 when every check passed, 1 otherwise. It never writes
anything and reads only the bundle's own files.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from pneumoview import __version__
from pneumoview.commands.engineargs import add_engine_arguments
from pneumoview.core.errors import PneumoViewError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pneumoview.core.inference import Engine

#: Shape of the samples: not square, so a transposed decode cannot pass.
SAMPLE_SHAPE = (48, 64)
#: JPEG baseline (lossy) may differ from the formula by this much on average / at most.
LOSSY_MEAN_TOLERANCE = 2.0
LOSSY_MAX_TOLERANCE = 24.0


@dataclass(frozen=True)
class Sample:
    """One embedded sample file and the pydicom plugins the bundle must decode it with."""

    name: str
    filename: str
    syntax: UID
    bits: int  # BitsStored (8 or 12)
    lossless: bool
    plugins: tuple[str, ...]  # pydicom decoding plugins that must be present and agree


SAMPLES: tuple[Sample, ...] = (
    Sample("uncompressed", "uncompressed.dcm", ExplicitVRLittleEndian, 12, True, ()),
    Sample("RLE lossless", "rle_lossless.dcm", RLELossless, 12, True, ("pydicom", "pylibjpeg")),
    Sample("JPEG-LS lossless", "jpegls_lossless.dcm", JPEGLSLossless, 12, True,
           ("pyjpegls", "gdcm")),
    Sample("JPEG 2000 lossless", "j2k_lossless.dcm", JPEG2000Lossless, 12, True,
           ("pylibjpeg", "gdcm", "pillow")),
    Sample("JPEG baseline", "jpeg_baseline.dcm", JPEGBaseline8Bit, 8, False, ("pillow", "gdcm")),
    Sample("JPEG lossless SV1", "jpeg_lossless_sv1.dcm", JPEGLosslessSV1, 12, True, ("gdcm",)),
)


def reference_image(bits: int) -> np.ndarray:
    """The pixel values every sample was encoded from (a formula, so nothing else is stored).

    12 bits: a busy pattern using the whole range (a decoder that drops a byte, swaps byte order
    or transposes fails); 8 bits: a smooth pattern, so lossy JPEG stays close to it.
    """
    rows, cols = SAMPLE_SHAPE
    y, x = np.mgrid[0:rows, 0:cols].astype(np.int64)
    if bits == 12:
        return ((x * 37 + y * 53 + (x * y) % 97 + (x // 8) * 411) % 4096).astype(np.uint16)
    if bits == 8:
        v = 128 + 90 * np.sin(x / 9.0) * np.cos(y / 7.0) + 0.5 * x
        return np.clip(np.round(v), 0, 255).astype(np.uint8)
    raise ValueError(f"no reference image for {bits} bits")


@dataclass(frozen=True)
class Check:
    area: str
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"  {'OK  ' if self.ok else 'FAIL'}  {self.area:<9} {self.name}: {self.detail}"


def samples_dir() -> Path:
    from pneumoview.core.resources import resources_dir

    return resources_dir() / "selftest"


def _compare(decoded: np.ndarray, sample: Sample) -> str | None:
    """None when ``decoded`` matches the sample's formula, else what differs."""
    ref = reference_image(sample.bits).astype(np.float64)
    arr = np.asarray(decoded, dtype=np.float64)
    if arr.shape != ref.shape:
        return f"shape {arr.shape}, expected {ref.shape}"
    diff = np.abs(arr - ref)
    if sample.lossless:
        if diff.max() != 0:
            return f"{int(np.count_nonzero(diff))} pixels differ (max {diff.max():g})"
        return None
    if diff.mean() > LOSSY_MEAN_TOLERANCE or diff.max() > LOSSY_MAX_TOLERANCE:
        return f"differs too much for JPEG (mean {diff.mean():.2f}, max {diff.max():g})"
    return None


def check_codecs(directory: Path | None = None) -> list[Check]:
    """Decode every sample through the app's pipeline and through each required plugin."""
    import pydicom
    from pydicom.pixels import pixel_array
    from pydicom.pixels.decoders.base import get_decoder

    from pneumoview.core.dicomio import decode

    directory = samples_dir() if directory is None else directory
    checks = []
    for sample in SAMPLES:
        path = directory / sample.filename
        problems: list[str] = []
        passed: list[str] = []
        if not path.is_file():
            checks.append(Check("codec", sample.name, False, f"sample {path} is missing"))
            continue
        try:
            syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
            if syntax != sample.syntax:
                problems.append(f"sample is {syntax.name}, expected {sample.syntax.name}")
            problem = _compare(decode(path).values, sample)
            if problem:
                problems.append(f"app decode: {problem}")
            else:
                passed.append("app")
        except PneumoViewError as exc:
            problems.append(f"app decode: {exc.reason}")
        except Exception as exc:  # a broken bundle fails in ways we cannot list
            problems.append(f"app decode: {type(exc).__name__}: {exc}")
        if sample.plugins:
            decoder = get_decoder(sample.syntax)
            available = set(decoder.available_plugins)
            missing = decoder.missing_dependencies
            for plugin in sample.plugins:
                if plugin not in available:
                    why = "; ".join(m for m in missing if m.startswith(plugin)) or "not installed"
                    problems.append(f"{plugin} not available ({why})")
                    continue
                try:
                    arr = pixel_array(path, decoding_plugin=plugin)
                except Exception as exc:
                    problems.append(f"{plugin}: {type(exc).__name__}: {exc}")
                    continue
                problem = _compare(arr, sample)
                if problem:
                    problems.append(f"{plugin}: {problem}")
                else:
                    passed.append(plugin)
        label = f"{sample.name} ({sample.filename})"
        if problems:
            checks.append(Check("codec", label, False, "; ".join(problems)))
        else:
            checks.append(Check("codec", label, True, "decoded by " + ", ".join(passed)))
    return checks


def check_model(model_dir: Path | None = None) -> Check:
    """Metadata valid and weights sha256 as recorded (imports torch, as the loader does)."""
    try:
        from pneumoview.core.model import read_model_info, verify_weights

        info = read_model_info(model_dir)
        verify_weights(info)
    except PneumoViewError as exc:
        return Check("model", "weights", False, str(exc))
    except Exception as exc:
        return Check("model", "weights", False, f"{type(exc).__name__}: {exc}")
    return Check("model", "weights", True, f"{info.label}: sha256 verified")


#: Largest logit difference from torch float32 the self-test accepts, by the precision that ran:
#: float32 engines differ by rounding only (about 1e-5); bf16 keeps 8 bits of mantissa, which
#: moves the logit by a few hundredths on real films; int8 (the model folder's quantised graph,
#: which kept the accuracy guard when it was made) moves it by up to a few tenths.
AGREEMENT_LIMIT = {"f32": 1e-3, "bf16": 0.1, "int8": 1.0}


def check_engine_agreement(engine: Engine, model_dir: Path | None, device: str,
                           directory: Path) -> Check:
    """The engine that runs against torch float32 on every sample that decodes."""
    from pneumoview.core.dicomio import decode
    from pneumoview.core.inference import Engine

    name = f"{engine.engine_name} {engine.precision} vs torch f32"
    try:
        inputs = []
        for sample in SAMPLES:
            try:
                inputs.append(engine.model_input(decode(directory / sample.filename)))
            except PneumoViewError:
                continue  # the codec checks report it
        reference = Engine(model_dir, device=device, with_cam=False, engine="torch")
        reference.load()
        diff = float(np.abs(engine.logits(inputs) - reference.logits(inputs)).max())
        reference.close()
    except Exception as exc:
        return Check("engine", name, False, f"{type(exc).__name__}: {exc}")
    limit = AGREEMENT_LIMIT.get(engine.precision, 1e-3)
    return Check("engine", name, bool(inputs) and diff <= limit,
                 f"{len(inputs)} samples, max logit difference {diff:.1e} (limit {limit:g})")


def check_inference(model_dir: Path | None = None, device: str = "auto",
                    directory: Path | None = None, engine_name: str = "auto",
                    precision: str = "auto") -> list[Check]:
    """Load the engine, score the uncompressed sample and compute its CAM; an engine other
    than torch is also checked against torch on the samples."""
    directory = samples_dir() if directory is None else directory
    try:
        from pneumoview.core.dicomio import decode
        from pneumoview.core.inference import Engine

        t0 = time.perf_counter()
        engine = Engine(model_dir, device=device, with_cam=True, engine=engine_name,
                        precision=precision)
        engine.load()
        load_ms = (time.perf_counter() - t0) * 1000
        decoded = decode(directory / SAMPLES[0].filename)
        t1 = time.perf_counter()
        pred = engine.score(decoded, force=True)
        score_ms = (time.perf_counter() - t1) * 1000
    except PneumoViewError as exc:
        from pneumoview.commands.advice import run_advice

        return [Check("inference", "score", False, f"{exc}{run_advice(exc)}"),
                Check("cam", "grad-cam", False, "not run: inference failed")]
    except Exception as exc:
        return [Check("inference", "score", False, f"{type(exc).__name__}: {exc}"),
                Check("cam", "grad-cam", False, "not run: inference failed")]
    p = pred.probability
    if pred.scored and p is not None and math.isfinite(p) and 0.0 <= p <= 1.0:
        inf = Check("inference", "score", True,
                    f"probability {p:.4f} with {engine.engine_text} (load {load_ms:.0f} ms, "
                    f"score {score_ms:.0f} ms)"
                    + (f"; openvino not used: {engine.engine_fallback}"
                       if engine.engine_fallback else ""))
    else:
        inf = Check("inference", "score", False,
                    f"status {pred.status}, probability {p!r} ({pred.reason})")
    agreement = [] if engine.engine_name == "torch" else \
        [check_engine_agreement(engine, model_dir, device, directory)]
    try:
        t2 = time.perf_counter()
        cam = np.asarray(engine.cam(decoded))
        cam_ms = (time.perf_counter() - t2) * 1000
    except Exception as exc:
        return [inf, Check("cam", "grad-cam", False, f"{type(exc).__name__}: {exc}"),
                *agreement]
    finally:
        engine.close()
    if (cam.shape == decoded.shape and np.isfinite(cam).all() and cam.min() >= 0.0
            and cam.max() <= 1.0):
        cam_check = Check("cam", "grad-cam", True,
                          f"{cam.shape[1]}x{cam.shape[0]} map in [0, 1] ({cam_ms:.0f} ms)")
    else:
        cam_check = Check("cam", "grad-cam", False,
                          f"bad map: shape {cam.shape} for image {decoded.shape}, "
                          f"range [{np.nanmin(cam):g}, {np.nanmax(cam):g}]")
    return [inf, cam_check, *agreement]


def _native_platform() -> str:
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "cocoa"
    return "xcb"


def check_qt() -> Check:
    """PySide6 imports and its platform plugins are where Qt looks (no window is opened)."""
    try:
        from PySide6 import __version__ as qt_version
        from PySide6.QtCore import QLibraryInfo

        plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
        names = sorted({p.name.split(".")[0].removeprefix("libq").removeprefix("q")
                        for p in plugins.glob("*") if p.is_file()})
    except Exception as exc:
        return Check("qt", "platform plugins", False, f"{type(exc).__name__}: {exc}")
    need = ["offscreen", _native_platform()]
    lacking = [n for n in need if n not in names]
    if lacking:
        return Check("qt", "platform plugins", False,
                     f"{', '.join(lacking)} missing from {plugins} (found: "
                     f"{', '.join(names) or 'none'})")
    return Check("qt", "platform plugins", True,
                 f"PySide6 {qt_version}; {', '.join(names)}")


def run_self_test(model_dir: Path | None = None, device: str = "auto",
                  stream: TextIO | None = None, engine: str = "auto", precision: str = "auto",
                  steps: Sequence[str] = ("model", "codecs", "inference", "qt")) -> list[Check]:
    """Run the checks, printing each line as it finishes; returns them all."""
    out = sys.stdout if stream is None else stream
    frozen = "frozen build" if getattr(sys, "frozen", False) else "Python " + sys.version.split()[0]
    print(f"PneumoView {__version__} self-test ({frozen}, {sys.platform})", file=out, flush=True)
    runners: dict[str, Callable[[], list[Check]]] = {
        "model": lambda: [check_model(model_dir)],
        "codecs": check_codecs,
        "inference": lambda: check_inference(model_dir, device, engine_name=engine,
                                             precision=precision),
        "qt": lambda: [check_qt()],
    }
    checks: list[Check] = []
    for step in steps:
        for check in runners[step]():
            print(check.line(), file=out, flush=True)
            checks.append(check)
    failed = sum(not c.ok for c in checks)
    if failed:
        print(f"self-test FAILED: {failed} of {len(checks)} checks failed", file=out, flush=True)
    else:
        print(f"self-test passed: {len(checks)} checks", file=out, flush=True)
    return checks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pneumoview --self-test",
        description="Check this installation: model sha256, every codec on embedded samples, "
                    "one inference and one CAM, the Qt platform plugins. Exit 0 when all pass.")
    parser.add_argument("--model", metavar="DIR", help="model folder (default: the bundled one)")
    parser.add_argument("--device", default="auto", metavar="D",
                        help="auto (default), cpu, cuda, cuda:N or mps")
    add_engine_arguments(parser)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    model_dir = Path(args.model) if args.model else None
    checks = run_self_test(model_dir, args.device, engine=args.engine or "auto",
                           precision=args.precision or "auto")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
