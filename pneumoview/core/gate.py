"""The validity gate: refuse to score an image only on positive evidence that it is not a
frontal chest radiograph.

The classifier was trained on frontal chest films; a lateral view, a knee or a CT slice would
still get a number, and that number would mean nothing. Many real files lack these tags, so a
missing or empty tag is never evidence: only a tag that says otherwise stops scoring. The reason
is a short phrase naming the tag, shown as "Not scored: <reason>".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pneumoview.core.dicomio import header_text

CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX"})
LATERAL_VIEWS = frozenset({"LAT", "LL", "RL", "LATERAL"})
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "SC", "OT"})
COLOUR_PHOTOMETRICS = ("RGB", "YBR", "PALETTE")


def _tag(header: Any, keyword: str) -> str:
    """A tag's value as upper-case text; '' when missing, empty or malformed (never evidence)."""
    return header_text(header, keyword).upper()


# A grey film in a colour wrapper may come back with slightly different channels: a lossy codec
# that codes R, G and B separately (JPEG-LS near-lossless, JPEG without a colour transform) adds
# independent errors of a few grey levels to each. Such an image is still grey; true colour
# (a photograph, a colour-coded map) has channels far apart over much of the picture.
GREY_CHROMA_FRACTION = 0.05  # of the image's value range
GREY_CHROMA_PERCENTILE = 99.0


def looks_grey(values: np.ndarray) -> bool:
    """True when a (H, W, C) array holds a grey picture: its colour channels are equal, or differ
    by no more than codec noise (in 99 % of pixels, by at most 5 % of the value range)."""
    arr = np.asarray(values)
    if arr.ndim != 3 or arr.shape[2] < 2:
        return True
    rgb = arr[..., :3]
    if all(np.array_equal(rgb[..., 0], rgb[..., c]) for c in range(1, rgb.shape[2])):
        return True
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 250_000)))  # ~250k pixels suffice
    sample = rgb[::step, ::step].astype(np.float32)
    chroma = sample.max(axis=2) - sample.min(axis=2)
    value_range = float(sample.max() - sample.min())
    if not np.isfinite(value_range) or value_range <= 0:
        return False
    spread = float(np.percentile(chroma, GREY_CHROMA_PERCENTILE))
    return spread <= GREY_CHROMA_FRACTION * value_range


def not_scorable_reason(header: Any, n_frames: int | None = None,
                        values: np.ndarray | None = None) -> str | None:
    """A short reason this image must not be scored, or ``None`` when nothing says so.

    ``header`` is a pydicom Dataset (or anything with ``.get``); ``n_frames`` overrides the
    header's NumberOfFrames; ``values``, when given, lets a colour-encoded file whose channels
    are all equal (a grey film in an RGB wrapper) pass.
    """
    body = _tag(header, "BodyPartExamined")
    if body and body not in CHEST_BODY_PARTS:
        return f"not a chest image (BodyPartExamined {body})"
    view = _tag(header, "ViewPosition")
    if view in LATERAL_VIEWS:
        return f"lateral view (ViewPosition {view})"
    intent = _tag(header, "PresentationIntentType")
    if intent == "FOR PROCESSING":
        return "raw detector image (Presentation Intent Type FOR PROCESSING)"
    modality = _tag(header, "Modality")
    if modality and modality not in RADIOGRAPH_MODALITIES:
        return f"not a radiograph (Modality {modality})"
    if n_frames is None:
        try:
            n_frames = int(_tag(header, "NumberOfFrames") or 1)
        except ValueError:
            n_frames = 1
    if n_frames > 1:
        return f"multi-frame image ({n_frames} frames)"
    photometric = _tag(header, "PhotometricInterpretation")
    try:
        samples = int(_tag(header, "SamplesPerPixel") or 1)
    except ValueError:
        samples = 1
    header_colour = samples >= 3 or photometric.startswith(COLOUR_PHOTOMETRICS)
    if photometric.startswith("PALETTE"):
        return "colour image (PhotometricInterpretation PALETTE COLOR)"
    if values is not None and np.asarray(values).ndim == 3:
        true_colour = not looks_grey(values)
    else:
        true_colour = header_colour and values is None
    if true_colour:
        return f"colour image (PhotometricInterpretation {photometric or 'RGB'})"
    return None
