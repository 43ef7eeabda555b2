"""The content gate: refuse, with a reason, what does not look like an upright frontal chest film.

The tag gate (:mod:`pneumoview.core.gate`) only objects when a tag says otherwise; a photograph,
a CT slice or a blank page wrapped in a file whose tags claim a frontal chest film passes it.
This gate looks at the pixels, in three layers that share one forward pass with the score:

1. **Rules** that need no learning, on the decoded image's size and on the model input (the
   contract's step-4 output, ``size`` x ``size`` in [0, 1]): too small, extreme aspect ratio,
   no usable content (flat, a smooth ramp, or pixel noise).
2. **Heads**: small linear/MLP classifiers on features of the backbone's last-block
   activations A: the pooled 512-d vector (the mean over A's cells, the same vector the
   pneumonia logit is read from) followed by the means over a 3 x 3 grid of cells, so a head
   sees where things are (:func:`gate_features`):
   ``content`` (chest radiograph or photograph, other medical image, document, graphic...),
   ``orientation`` (upright or rotated 90/180/270 degrees clockwise) and ``polarity`` (normal or
   inverted grey scale). Each head's first class is the one that passes; the image is refused
   when that class's probability falls below the head's threshold. A left-right mirrored film
   is upright (the heads are trained with mirrored films as upright); a transposed film is a
   mirrored film rotated by 90 degrees and is refused as rotated.
3. **Atypicality**: the Mahalanobis distance (shrinkage covariance) of the pooled features from
   the training films, with the percentile it falls at among held-out validation films. It is
   always reported; it refuses only beyond a bound chosen so that at least 97 % of degraded real
   films still pass.

Parameters are tensors named ``gate.*`` in the model's ``model.safetensors`` (so the weights
sha256 covers them) and the class names, thresholds and rule limits are the ``gate`` block of
``metadata.json`` (format ``pv-gate-2``; ``pv-gate-1`` gates, whose heads read pooled A and
top-bottom / left-right differences, still load). Pure numpy: no torch import here.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GATE_FORMAT = "pv-gate-2"
#: formats read, with the feature layout each implies when the block names none
GATE_FORMATS = {"pv-gate-2": "grid3", "pv-gate-1": "halves"}
TENSOR_PREFIX = "gate."
HEAD_NAMES = ("content", "orientation", "polarity")

# Rule limits: policy of the app, not learned, so they live here and not in the model. The
# smallest films in the training data are Kermany's 224 x 224 (redistributed at that size);
# 160 px leaves room for a cropped Kermany film and refuses thumbnails (pydicom's 16 x 16 and
# 64 x 64 frames, 32 x 32 icons).
MIN_SIDE = 160
# Chest films are 0.8-1.25 wide-to-high; a cropped one rarely exceeds 1.6. 2.5 refuses strips
# such as nuclear-medicine whole-body scans (4:1) and banners.
MAX_ASPECT = 2.5
# Neighbouring pixels of a film at the model's resolution correlate strongly (lowest 0.82 over
# 6,100 real, degraded, rotated and inverted films; 0.1 % below 0.91); pixel noise and a blank
# page with scanner noise (stretched by the contract) correlate at most 0.02. Text pages and
# tables (0.15-0.65) are left to the content head.
MIN_NEIGHBOUR_CORRELATION = 0.1
# A quadratic surface explains at most 0.92 of a film's variance on a 32 x 32 grid (0.1 % of
# them above 0.89); linear ramps and radial vignettes are explained to at least 0.948.
MAX_SMOOTH_FRACTION = 0.945
_SMOOTH_GRID = 32
# Reason precedence when the orientation or polarity head refuses and the content head does
# not: the content class names the reason only below this chest probability. With "a non-chest
# class more likely than chest" instead, 49 of 574 validation films refused as rotated (and 21 of
# 196 refused as inverted) were called "not a chest radiograph"; below 0.1, 10 and 10 are, and
# 286 of the 332 negatives refused by those heads alone keep their content reason (pv-gate-2).
CONTENT_REASON_BELOW = 0.1


class GateKind(str, enum.Enum):
    """What the gate concluded; every kind but ``PASSED`` is a refusal (status ``not_scored``)."""

    PASSED = "passed"
    TOO_SMALL = "too_small"
    EXTREME_ASPECT = "extreme_aspect"
    NO_CONTENT = "no_content"
    NOT_CHEST = "not_chest"
    ROTATED = "rotated"
    INVERTED = "inverted"
    ATYPICAL = "atypical"


@dataclass(frozen=True)
class GateVerdict:
    """The gate's answer for one image; ``reason`` is reader-facing text ('' when passed)."""

    kind: GateKind
    reason: str = ""
    atypicality: float | None = None  # distance from the training films (None: not computed)
    atypicality_percentile: float | None = None  # 0-100 among the validation films
    probabilities: Mapping[str, Mapping[str, float]] = field(default_factory=dict,
                                                             compare=False)

    @property
    def refused(self) -> bool:
        return self.kind is not GateKind.PASSED


class GateFormatError(ValueError):
    """The model's gate block or tensors are malformed (the model must be re-exported)."""


# -- rules -----------------------------------------------------------------------------------
def check_geometry(shape: tuple[int, ...], min_side: int = MIN_SIDE,
                   max_aspect: float = MAX_ASPECT) -> GateVerdict | None:
    """Refuse an image too small to carry a chest film, or of an extreme aspect ratio."""
    h, w = int(shape[0]), int(shape[1])
    if min(h, w) < min_side:
        return GateVerdict(GateKind.TOO_SMALL,
                           f"image too small to be a chest film ({w} x {h} px; the gate needs "
                           f"at least {min_side} px on the shorter side)")
    aspect = max(h, w) / max(1, min(h, w))
    if aspect > max_aspect:
        return GateVerdict(GateKind.EXTREME_ASPECT,
                           f"extreme aspect ratio for a chest film ({w} x {h} px, "
                           f"{aspect:.1f}:1)")
    return None


def neighbour_correlation(x: np.ndarray) -> float:
    """The smaller of the horizontal and vertical lag-1 correlations of ``x`` (1 for a film's
    smooth anatomy, about 0 for pixel noise; 1 for a flat image by convention)."""
    a = np.asarray(x, dtype=np.float64)
    out = 1.0
    for u, v in ((a[:, :-1], a[:, 1:]), (a[:-1, :], a[1:, :])):
        du, dv = u - u.mean(), v - v.mean()
        den = math.sqrt(float((du * du).sum()) * float((dv * dv).sum()))
        if den > 0:
            out = min(out, float((du * dv).sum()) / den)
    return out


def _box_downsample(x: np.ndarray, n: int) -> np.ndarray:
    h, w = x.shape
    hh, ww = (h // n) * n, (w // n) * n
    return x[:hh, :ww].reshape(n, hh // n, n, ww // n).mean(axis=(1, 3))


_QUADRATIC: dict[int, np.ndarray] = {}


def _quadratic_pinv(n: int) -> tuple[np.ndarray, np.ndarray]:
    if n not in _QUADRATIC:
        yy, xx = np.mgrid[0:n, 0:n] / (n - 1) * 2 - 1
        basis = np.stack([np.ones_like(xx), xx, yy, xx * xx, yy * yy, xx * yy], axis=-1)
        basis = basis.reshape(-1, 6)
        _QUADRATIC[n] = np.concatenate([basis, np.linalg.pinv(basis).T], axis=1)
    both = _QUADRATIC[n]
    return both[:, :6], both[:, 6:]


def smooth_fraction(x: np.ndarray, grid: int = _SMOOTH_GRID) -> float:
    """Share of the image's variance (on a ``grid`` x ``grid`` box average) that a quadratic
    surface explains: 1 for uniform pages, ramps and vignettes, well below for anatomy."""
    a = np.asarray(x, dtype=np.float64)
    if min(a.shape) < grid:
        return 0.0
    small = _box_downsample(a, grid).reshape(-1)
    var = float(small.var())
    if var <= 1e-12:
        return 1.0
    basis, pinv_t = _quadratic_pinv(grid)
    fit = basis @ (pinv_t.T @ small)
    return 1.0 - float(((small - fit) ** 2).mean()) / var


def content_statistics(x: np.ndarray) -> dict[str, float]:
    """The rule statistics of a model input (reported by the training tool's figures)."""
    a = np.asarray(x, dtype=np.float32)
    return {"range": float(a.max() - a.min()) if a.size else 0.0,
            "neighbour_correlation": neighbour_correlation(a),
            "smooth_fraction": smooth_fraction(a)}


def judge_content_statistics(stats: Mapping[str, float]) -> GateVerdict | None:
    """Refuse on :func:`content_statistics`: flat, a smooth ramp, or pixel noise."""
    if stats["range"] <= 1e-6:
        return GateVerdict(GateKind.NO_CONTENT, "no usable image content (blank)")
    if stats["smooth_fraction"] >= MAX_SMOOTH_FRACTION:
        return GateVerdict(GateKind.NO_CONTENT,
                           "no usable image content (uniform or gradient)")
    if stats["neighbour_correlation"] < MIN_NEIGHBOUR_CORRELATION:
        return GateVerdict(GateKind.NO_CONTENT, "no usable image content (noise or blank)")
    return None


def check_content_rules(x: np.ndarray) -> GateVerdict | None:
    """Refuse a model input with no usable content: flat, a smooth ramp, or pixel noise."""
    return judge_content_statistics(content_statistics(x))


# -- features --------------------------------------------------------------------------------
#: How the heads' input is read from A: "grid3" (pv-gate-2) = pooled, then the means of a 3 x 3
#: grid of cells; "halves" (pv-gate-1) = pooled, then top-minus-bottom and left-minus-right
#: differences of the outer thirds.
LAYOUTS = ("grid3", "halves")
DEFAULT_LAYOUT = "grid3"


def _cells(n: int, g: int) -> list[tuple[int, int]]:
    """Adaptive-pooling cell bounds along one axis (as torch's adaptive_avg_pool2d)."""
    return [((i * n) // g, -((-(i + 1) * n) // g)) for i in range(g)]


def grid_means(activations: np.ndarray, g: int) -> np.ndarray:
    """(..., C, h, w) -> (..., g * g * C): the mean of A in each cell of a g x g grid, cells in
    row-major order (top-left first), channels within each cell."""
    a = np.asarray(activations, dtype=np.float32)
    h, w = a.shape[-2:]
    out = [a[..., y0:y1, x0:x1].mean(axis=(-2, -1))
           for y0, y1 in _cells(h, g) for x0, x1 in _cells(w, g)]
    return np.concatenate(out, axis=-1)


def gate_features(activations: np.ndarray, layout: str = DEFAULT_LAYOUT) -> np.ndarray:
    """The heads' input from the last block's activations A ((C, h, w) or (N, C, h, w)):
    pooled first (the mean over h, w, as the logit reads it; the atypicality reads this part),
    then the spatial part of ``layout`` (see :data:`LAYOUTS`).

    Global pooling forgets where things are, so a film turned by 90 degrees pools to nearly
    the same vector as the upright film; the grid cells keep the layout (apices above the
    diaphragm, the mediastinum between the lungs) that tells the orientation, and what sits at
    the borders (a frame, a collimation edge) is told apart from what fills the middle.
    """
    a = np.asarray(activations, dtype=np.float32)
    pooled = a.mean(axis=(-2, -1))
    if layout == "grid3":
        return np.concatenate([pooled, grid_means(a, 3)], axis=-1)
    if layout == "halves":
        h, w = a.shape[-2:]
        t, u = max(1, h // 3), max(1, w // 3)
        tb = a[..., :t, :].mean(axis=(-2, -1)) - a[..., h - t:, :].mean(axis=(-2, -1))
        lr = a[..., :, :u].mean(axis=(-2, -1)) - a[..., :, w - u:].mean(axis=(-2, -1))
        return np.concatenate([pooled, tb, lr], axis=-1)
    raise GateFormatError(f"unknown gate feature layout {layout!r}")


def feature_dim(layout: str, channels: int = 512) -> int:
    return channels * {"grid3": 10, "halves": 3}[layout]


# -- heads and atypicality -------------------------------------------------------------------
def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Head:
    """An MLP on the pooled features: ``layers`` (weight, bias) pairs with ReLU between them.

    ``classes[0]`` passes; the image is refused when its probability is below ``refuse_below``.
    ``reasons`` maps each refusing class to the reader-facing reason.
    """

    name: str
    classes: tuple[str, ...]
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    refuse_below: float
    reasons: Mapping[str, str]

    def probabilities(self, pooled: np.ndarray) -> np.ndarray:
        """(N, 512) or (512,) features -> class probabilities of the same leading shape."""
        h = np.asarray(pooled, dtype=np.float32)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return softmax(h)

    def judge(self, p: np.ndarray) -> str | None:
        """The refusing class for one probability vector, or None when it passes."""
        if float(p[0]) >= self.refuse_below:
            return None
        return self.classes[1 + int(np.argmax(p[1:]))]


@dataclass(frozen=True)
class Atypicality:
    """Mahalanobis distance ``||whiten @ (f - mean)|| / sqrt(dim)`` (about 1 for training
    films) and its percentile among the reference (validation) films' sorted distances."""

    mean: np.ndarray
    whiten: np.ndarray
    reference: np.ndarray  # sorted distances of the reference films
    refuse_above: float  # distance bound (inf: never refuses)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Distance of gate features (their pooled part: the first ``dim`` values)."""
        f = np.asarray(features, dtype=np.float32)[..., :self.mean.shape[0]] - self.mean
        z = f @ self.whiten.T
        return np.sqrt((z.astype(np.float64) ** 2).sum(axis=-1) / self.mean.shape[0])

    def percentile(self, distance: float) -> float:
        """Share (0-100) of the reference films closer to the training films than this one."""
        n = len(self.reference)
        return 100.0 * float(np.searchsorted(self.reference, distance, side="right")) / n

    def reason(self, percentile: float) -> str:
        n = len(self.reference)
        if percentile >= 100.0:
            return (f"atypical input: further from the training images than all {n} "
                    "reference films")
        return (f"atypical input: further from the training images than "
                f"{min(percentile, 99.9):.1f} % of them")


def _array(tensors: Mapping[str, Any], name: str) -> np.ndarray:
    key = TENSOR_PREFIX + name
    if key not in tensors:
        raise GateFormatError(f"gate tensor {key!r} missing")
    arr = np.asarray(tensors[key], dtype=np.float32)
    if not np.isfinite(arr).all():
        raise GateFormatError(f"gate tensor {key!r} holds non-finite values")
    return arr


def _head(name: str, spec: Mapping[str, Any], tensors: Mapping[str, Any], dim: int) -> Head:
    classes = tuple(str(c) for c in spec["classes"])
    n_layers = int(spec["layers"])
    layers = []
    width = dim
    for i in range(n_layers):
        w, b = _array(tensors, f"{name}.{i}.weight"), _array(tensors, f"{name}.{i}.bias")
        if w.ndim != 2 or w.shape[1] != width or b.shape != (w.shape[0],):
            raise GateFormatError(f"gate head {name!r} layer {i} has shape {w.shape}")
        layers.append((w, b))
        width = w.shape[0]
    if width != len(classes) or len(classes) < 2:
        raise GateFormatError(f"gate head {name!r} gives {width} outputs for {len(classes)} "
                              "classes")
    threshold = float(spec["refuse_below"])
    if not 0.0 <= threshold <= 1.0:
        raise GateFormatError(f"gate head {name!r} threshold {threshold} outside [0, 1]")
    reasons = {str(k): str(v) for k, v in dict(spec.get("reasons", {})).items()}
    for c in classes[1:]:
        reasons.setdefault(c, f"not scored by the input gate ({c})")
    return Head(name, classes, tuple(layers), threshold, reasons)


_KIND_OF_HEAD = {"content": GateKind.NOT_CHEST, "orientation": GateKind.ROTATED,
                 "polarity": GateKind.INVERTED}


class InputGate:
    """Rules, heads and atypicality of one model (see the module docstring)."""

    def __init__(self, heads: Mapping[str, Head], atypicality: Atypicality | None,
                 layout: str = DEFAULT_LAYOUT) -> None:
        self.heads = dict(heads)
        self.atypicality = atypicality
        self.layout = layout

    @classmethod
    def from_model(cls, metadata: Mapping[str, Any],
                   tensors: Mapping[str, Any]) -> InputGate | None:
        """The gate of a model (``metadata.json`` and its tensors), None when it has none."""
        spec = metadata.get("gate")
        if spec is None:
            return None
        try:
            if spec.get("format") not in GATE_FORMATS:
                raise GateFormatError(f"unknown gate format {spec.get('format')!r}")
            layout = str(spec.get("feature_layout", GATE_FORMATS[spec["format"]]))
            if layout not in LAYOUTS:
                raise GateFormatError(f"unknown gate feature layout {layout!r}")
            dim = int(spec["feature_dim"])
            pooled_dim = int(spec.get("pooled_dim", dim))
            if dim != feature_dim(layout, pooled_dim):
                raise GateFormatError(f"gate feature_dim {dim} does not fit layout {layout!r}")
            heads = {name: _head(name, hs, tensors, dim)
                     for name, hs in dict(spec.get("heads", {})).items()}
            unknown = set(heads) - set(HEAD_NAMES)
            if unknown:
                raise GateFormatError(f"unknown gate heads {sorted(unknown)}")
            atyp = None
            if "atypicality" in spec:
                a = spec["atypicality"]
                mean, whiten = _array(tensors, "atypicality.mean"), \
                    _array(tensors, "atypicality.whiten")
                ref = np.sort(_array(tensors, "atypicality.reference").astype(np.float64))
                if mean.shape != (pooled_dim,) or whiten.ndim != 2 or \
                        whiten.shape[1] != pooled_dim or \
                        ref.size == 0:
                    raise GateFormatError("gate atypicality tensors have the wrong shapes")
                bound = a.get("refuse_above")
                atyp = Atypicality(mean, whiten, ref,
                                   math.inf if bound is None else float(bound))
            return cls(heads, atyp, layout)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, GateFormatError):
                raise
            raise GateFormatError(f"malformed gate block ({type(exc).__name__}: {exc})") \
                from exc

    # -- the checks, in order ----------------------------------------------------------------
    def pre_check_statistics(self, shape: tuple[int, ...],
                             stats: Mapping[str, float]) -> GateVerdict | None:
        """The rules (no forward pass needed) on the model input's :func:`content_statistics`:
        a refusal, or None to go on."""
        return check_geometry(shape) or judge_content_statistics(stats)

    def features(self, activations: np.ndarray) -> np.ndarray:
        """The heads' input (:func:`gate_features` in this gate's layout)."""
        return gate_features(activations, self.layout)

    def judge(self, shape: tuple[int, ...], x: np.ndarray,
              activations: np.ndarray) -> GateVerdict:
        """Rules, then heads (content, orientation, polarity), then the atypicality bound.

        ``shape`` is the decoded image's (height, width), ``x`` the model input (contract step
        4) and ``activations`` the last block's A (512, h, w) from the forward pass that gave
        the score (:func:`pneumoview.core.model.predict_activations`).
        """
        return self.judge_statistics(shape, content_statistics(x),
                                     self.features(activations))

    def judge_statistics(self, shape: tuple[int, ...], stats: Mapping[str, float],
                         features: np.ndarray) -> GateVerdict:
        """:meth:`judge` given the model input's :func:`content_statistics` and the
        :meth:`features` of its activations.

        Which heads refuse decides *whether* the image is refused; the reason is the one a
        reader can act on: the refusing head's, except that the content class is named when
        the content head finds the image clearly unlike a chest film (chest probability below
        :data:`CONTENT_REASON_BELOW`), so a photograph that the orientation head also objects
        to is refused as a photograph, and a rotated chest film the content head merely
        doubts is refused as rotated.
        """
        distance = percentile = None
        if self.atypicality is not None:
            distance = float(self.atypicality.distance(features))
            percentile = self.atypicality.percentile(distance)
        probs: dict[str, dict[str, float]] = {}
        for name, head in self.heads.items():
            p = head.probabilities(features)
            probs[name] = {c: float(v) for c, v in zip(head.classes, p, strict=True)}
        common: dict[str, Any] = dict(atypicality=distance, atypicality_percentile=percentile,
                                      probabilities=probs)
        rule = check_geometry(shape) or judge_content_statistics(stats)
        if rule is not None:
            return GateVerdict(rule.kind, rule.reason, **common)
        refusals = []
        for name in HEAD_NAMES:
            if name in self.heads:
                head = self.heads[name]
                refusing = head.judge(np.array(list(probs[name].values())))
                if refusing is not None:
                    refusals.append((name, refusing))
        content = self.heads.get("content")
        if refusals and content is not None and refusals[0][0] != "content":
            p = np.array(list(probs["content"].values()))
            if float(p[0]) < CONTENT_REASON_BELOW:
                refusals.insert(0, ("content", content.classes[1 + int(np.argmax(p[1:]))]))
        if refusals:
            name, refusing = refusals[0]
            return GateVerdict(_KIND_OF_HEAD[name], self.heads[name].reasons[refusing],
                               **common)
        atyp = self.atypicality
        if atyp is not None and distance is not None and percentile is not None and \
                distance > atyp.refuse_above:
            return GateVerdict(GateKind.ATYPICAL, atyp.reason(percentile), **common)
        return GateVerdict(GateKind.PASSED, "", **common)


def split_gate_tensors(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(network tensors, gate tensors) of one weights file's contents."""
    net = {k: v for k, v in state.items() if not k.startswith(TENSOR_PREFIX)}
    gate = {k: v for k, v in state.items() if k.startswith(TENSOR_PREFIX)}
    return net, gate
