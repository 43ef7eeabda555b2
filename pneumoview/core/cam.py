"""Class-activation-map pixel maths (pure numpy): mapping a CAM back onto the original image.

The model sees the image squashed to ``S x S`` without keeping the aspect ratio (contract step
3), so a CAM computed on the model's grid (the 7 x 7 layer4 grid, or ``S x S``) must be
stretched back to ``H x W`` independently along each axis. Samples are aligned on pixel centres:
output pixel ``y`` of ``H`` sits at ``(y + 0.5) * h / H - 0.5`` in the ``h``-pixel input, which
is exactly where the box-filter resize took its area from. Values are interpolated bilinearly
and clamped at the borders, so the map covers the whole image with no half-pixel shift.
"""

from __future__ import annotations

import numpy as np


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower index, upper index and upper weight for centre-aligned linear resampling."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def resample_to_grid(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D map to ``shape`` = (H, W), pixel centres aligned (bilinear); float32."""
    src = np.asarray(cam, dtype=np.float32)
    if src.ndim != 2 or src.size == 0:
        raise ValueError(f"a CAM must be a non-empty 2-D array, got shape {src.shape}")
    height, width = int(shape[0]), int(shape[1])
    if height < 1 or width < 1:
        raise ValueError(f"target shape must be positive, got {shape}")
    y0, y1, wy = _axis_weights(src.shape[0], height)
    x0, x1, wx = _axis_weights(src.shape[1], width)
    rows = src[y0] * (1.0 - wy)[:, None] + src[y1] * wy[:, None]  # (H, w)
    out = rows[:, x0] * (1.0 - wx)[None, :] + rows[:, x1] * wx[None, :]
    return out.astype(np.float32, copy=False)


def normalise_cam(cam: np.ndarray) -> np.ndarray:
    """Clip negatives (ReLU) and scale to [0, 1]; an all-zero map stays zero (no glow)."""
    arr = np.maximum(np.asarray(cam, dtype=np.float32), 0.0)
    top = float(arr.max()) if arr.size else 0.0
    if not np.isfinite(top) or top <= 0.0:
        return np.zeros_like(arr, dtype=np.float32)
    return (arr / top).astype(np.float32, copy=False)


def top_fraction_mask(cam: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``fraction`` of pixels with the highest CAM values (ties by order)."""
    arr = np.asarray(cam, dtype=np.float32).ravel()
    k = int(round(float(fraction) * arr.size))
    mask = np.zeros(arr.size, dtype=bool)
    if k > 0:
        mask[np.argsort(-arr, kind="stable")[:k]] = True
    return mask.reshape(np.shape(cam))


#: Colour stops (value, (r, g, b)) of the CAM overlay: dark blue through green and yellow to
#: red. The viewer's overlay and burned-in exports (Secondary Capture) share them.
CAM_STOPS = ((0.0, (0, 0, 120)), (0.3, (0, 90, 255)), (0.55, (0, 220, 120)),
             (0.75, (255, 220, 0)), (1.0, (255, 30, 0)))
#: Below this value the map is fully transparent; alpha then rises to CAM_ALPHA_MAX.
CAM_ALPHA_FLOOR = 0.2
CAM_ALPHA_MAX = 220


def cam_lut(n: int = 256) -> np.ndarray:
    """(n, 4) uint8 RGBA lookup table: colour ramp plus an alpha ramp from CAM_ALPHA_FLOOR, so
    cold values leave the film readable and hot values cover it."""
    x = np.linspace(0.0, 1.0, n)
    pos = np.array([s[0] for s in CAM_STOPS])
    rgb = np.stack([np.interp(x, pos, [s[1][c] for s in CAM_STOPS]) for c in range(3)], axis=1)
    alpha = np.clip((x - CAM_ALPHA_FLOOR) / (1.0 - CAM_ALPHA_FLOOR), 0.0, 1.0) * CAM_ALPHA_MAX
    return np.concatenate([rgb, alpha[:, None]], axis=1).round().astype(np.uint8)


def blend_cam(film_rgb: np.ndarray, cam: np.ndarray, opacity: float = 0.6) -> np.ndarray:
    """``film_rgb`` (H, W, 3) uint8 with ``cam`` (H, W) in [0, 1] painted over it through
    :func:`cam_lut` at ``opacity``; uint8, what the viewer shows at that opacity."""
    lut = cam_lut()
    idx = np.clip(np.rint(np.asarray(cam, np.float32) * 255.0), 0, 255).astype(np.intp)
    rgba = lut[idx].astype(np.float32)
    alpha = rgba[..., 3:4] / 255.0 * float(opacity)
    out = film_rgb.astype(np.float32) * (1.0 - alpha) + rgba[..., :3] * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def linear_cam(activations: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Grad-CAM of a global-average-pool + one-linear-logit head, in closed form.

    For logit = b + sum_k w_k mean(A_k), the gradient of the logit with respect to A_k is
    w_k / (h w) everywhere, so Grad-CAM's channel weights are w_k / (h w) and its map is
    ReLU(sum_k w_k A_k) up to that positive factor: no backward pass is needed. The map is
    then scaled as grad-cam scales it (minus its minimum, over its maximum + 1e-7), so it equals
    the package's output. ``activations`` is A (C, h, w) or (N, C, h, w); ``weights`` (C,).
    Returns float32 maps in [0, 1] of shape (h, w) or (N, h, w).
    """
    a = np.asarray(activations, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32).reshape(-1)
    if a.ndim not in (3, 4) or a.shape[-3] != w.shape[0]:
        raise ValueError(f"activations {a.shape} do not fit {w.shape[0]} channel weights")
    raw = np.maximum(np.tensordot(w, a, axes=([0], [a.ndim - 3])), 0.0)
    low = raw.min(axis=(-2, -1), keepdims=True)
    shifted = raw - low
    return (shifted / (shifted.max(axis=(-2, -1), keepdims=True) + 1e-7)).astype(np.float32)
