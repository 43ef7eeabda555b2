"""Overlay planes (groups 6000-601E, PS3.3 C.9.2-C.9.3): bit planes drawn over the image.

A plane is Overlay Rows x Columns bits (one frame or several), placed with its 1-based Overlay
Origin on the image and, for a multi-frame plane, starting at the image's Image Frame Origin.
Graphics planes ('G': annotations, measurements a scanner burned in as a plane) are meant to be
seen; ROI planes ('R') mark a region, drawn here as its outline so the region stays readable.
Overlay pixels are shown white (dcmtk's default "Replace" mode with foreground density 1).

:func:`frame_overlays` reads the planes of one frame onto the image's pixel grid;
:func:`burn_in` draws them into an 8-bit display image (``render --overlays``), and
:func:`rgba_layer` makes the transparent layer the viewer stacks over the image.
Overlays stored in unused high bits of the pixel data (retired since 2004) are not read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from pneumoview.core.colour import is_little_endian, ow_bytes

#: First group of each of the 16 repeating overlay groups (6000, 6002, ... 601E).
GROUPS = tuple(range(0x6000, 0x6020, 2))
#: Overlay pixel value in an 8-bit display image.
FOREGROUND = 255


@dataclass(frozen=True)
class Overlay:
    """One overlay plane of one frame, on that frame's (H, W) pixel grid."""

    group: int
    kind: str  # "G" graphics or "R" region of interest
    label: str
    mask: np.ndarray  # bool (H, W): the plane's set bits, placed at its origin

    @property
    def is_graphics(self) -> bool:
        return self.kind != "R"

    @property
    def drawn(self) -> np.ndarray:
        """The pixels to paint: a graphics plane's bits, an ROI's outline."""
        return self.mask if self.is_graphics else outline(self.mask)


def outline(mask: np.ndarray) -> np.ndarray:
    """The set pixels of ``mask`` with an unset 4-neighbour (or on the border)."""
    m = np.asarray(mask, dtype=bool)
    padded = np.pad(m, 1, constant_values=False)
    interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return m & ~interior


def _value(ds: Dataset, group: int, elem: int, default: object = None) -> object:
    item = ds.get((group << 16) | elem)
    return default if item is None or item.value in (None, "") else item.value


def _int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return default


def _plane_frame(ds: Dataset, group: int, frame: int) -> int | None:
    """Index, within the plane, of the overlay frame drawn on image ``frame`` (0-based)."""
    n_frames = max(1, _int(_value(ds, group, 0x0015, 1), 1))
    origin = _value(ds, group, 0x0051)
    if n_frames == 1 and origin is None:
        return 0  # one plane, no frame origin: it belongs to every frame
    k = frame - (_int(origin, 1) - 1)
    return k if 0 <= k < n_frames else None


def _bits(ds: Dataset, group: int, rows: int, cols: int, k: int) -> np.ndarray | None:
    data = _value(ds, group, 0x3000)
    if not isinstance(data, bytes | bytearray):
        return None
    raw = ow_bytes(data, is_little_endian(ds)) if ds[(group << 16) | 0x3000].VR == "OW" \
        else bytes(data)
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
    start, size = k * rows * cols, rows * cols
    if bits.size < start + size:
        return None  # shorter than its header says: not drawn
    return bits[start:start + size].reshape(rows, cols).astype(bool)


def _place(plane: np.ndarray, origin: object, shape: tuple[int, int]) -> np.ndarray:
    """``plane`` on an image of ``shape``, its top-left at the 1-based (row, column) origin."""
    try:
        r0, c0 = (int(v) - 1 for v in origin)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        r0, c0 = 0, 0
    out = np.zeros(shape, dtype=bool)
    h, w = plane.shape
    top, left = max(r0, 0), max(c0, 0)
    bottom, right = min(r0 + h, shape[0]), min(c0 + w, shape[1])
    if bottom > top and right > left:
        out[top:bottom, left:right] = plane[top - r0:bottom - r0, left - c0:right - c0]
    return out


def frame_overlays(ds: Dataset, frame: int, shape: tuple[int, int]) -> tuple[Overlay, ...]:
    """The overlay planes of image ``frame`` (0-based), each on the (H, W) ``shape`` grid.

    A plane that is malformed (missing size, data shorter than declared) is skipped: an
    overlay is an annotation, and a broken one must not stop the image from showing.
    """
    out = []
    for group in GROUPS:
        rows = _int(_value(ds, group, 0x0010), 0)
        cols = _int(_value(ds, group, 0x0011), 0)
        if rows < 1 or cols < 1 or _int(_value(ds, group, 0x0100, 1), 1) != 1:
            continue
        k = _plane_frame(ds, group, frame)
        plane = None if k is None else _bits(ds, group, rows, cols, k)
        if plane is None:
            continue
        kind = str(_value(ds, group, 0x0040, "G")).strip().upper()[:1] or "G"
        label = str(_value(ds, group, 0x1500, "") or _value(ds, group, 0x0022, "")
                    or f"Overlay {group:04X}").strip()
        mask = _place(plane, _value(ds, group, 0x0050), shape)
        out.append(Overlay(group, "R" if kind == "R" else "G", label, mask))
    return tuple(out)


def burn_in(image: np.ndarray, overlays: tuple[Overlay, ...]) -> np.ndarray:
    """An 8-bit grey (H, W) or RGB (H, W, 3) display image with the overlays drawn white."""
    out = np.array(image, copy=True)
    for overlay in overlays:
        out[overlay.drawn] = FOREGROUND
    return out


def rgba_layer(overlays: tuple[Overlay, ...], shape: tuple[int, int]) -> np.ndarray:
    """A (H, W, 4) uint8 layer: opaque white where any overlay is drawn, transparent elsewhere."""
    layer = np.zeros((*shape, 4), dtype=np.uint8)
    for overlay in overlays:
        layer[overlay.drawn] = FOREGROUND
    return layer
