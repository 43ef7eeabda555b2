"""VOI windowing and display presets: pure functions on numpy arrays.

Windows follow DICOM PS3.3 C.11.2.1.2 exactly (LINEAR, LINEAR_EXACT, SIGMOID), so that
``pneumoview render`` agrees with dcmtk to within one grey level. A VOI LUT from the file is a
window too (``lut`` set). Display inversion (MONOCHROME1) is applied once, after the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from pneumoview.core.colour import is_little_endian, ow_bytes

FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")

#: CT-style presets in Hounsfield units, offered only for CT.
CT_PRESETS = (("Lung", -600.0, 1500.0), ("Mediastinum", 50.0, 350.0),
              ("Bone", 400.0, 1800.0), ("Soft tissue", 40.0, 400.0))

#: Name of the no-VOI window (:func:`identity_window`), and the deepest stored data that gets
#: it (and shows with it by default when the file declares no window: :func:`default_window`).
IDENTITY = "Identity"
IDENTITY_MAX_BITS = 8

#: Percentile presets for radiographs (name, low percentile, high percentile).
PERCENTILE_PRESETS = (("Auto", 1.0, 99.0), ("Soft", 0.1, 99.9), ("High contrast", 5.0, 95.0))


@dataclass(frozen=True)
class Window:
    """A VOI transform: centre/width with a function, or a lookup table from the file."""

    name: str
    center: float
    width: float
    function: str = "LINEAR"
    lut_first: int = 0  # first stored value mapped by the LUT
    lut: tuple[float, ...] | None = None  # LUT output normalised to [0, 1]

    def with_levels(self, center: float, width: float) -> Window:
        """The same function with new levels (a LUT becomes a linear window)."""
        func = self.function if self.lut is None else "LINEAR"
        return Window("Custom", float(center), max(float(width), 1.0), func)

    @property
    def levels(self) -> tuple[float, float]:
        """(low, high) of the linear ramp, for image widgets that take explicit levels."""
        if self.function == "LINEAR_EXACT":
            return self.center - self.width / 2, self.center + self.width / 2
        half = (self.width - 1) / 2
        return self.center - 0.5 - half, self.center - 0.5 + half


def _multi(value: object) -> list[float]:
    """The numbers of a (multi-valued) DS element; a value that is not a number becomes NaN,
    so a damaged WindowCenter/Width only drops that window (pairs stay aligned), and a plain
    string is one value, not a sequence of characters."""
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes):
        items: list[object] = [value]
    else:
        try:
            items = list(value)  # type: ignore[call-overload]
        except TypeError:
            items = [value]
    out = []
    for v in items:
        try:
            out.append(float(v))  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            out.append(float("nan"))
    return out


def declared_windows(ds: Dataset, values: np.ndarray | None = None,
                     little_endian: bool | None = None) -> tuple[Window, ...]:
    """Every window ``ds`` declares: each WindowCenter/Width pair and each VOI LUT item.

    ``ds`` is the dataset or, for an Enhanced multi-frame image, the frame's Frame VOI LUT item
    (:func:`~pneumoview.core.functional_groups.voi_source`); ``little_endian`` is the file's
    byte order (read from ``ds`` when not given).
    """
    if little_endian is None:
        little_endian = is_little_endian(ds)
    out: list[Window] = []
    centers, widths = _multi(ds.get("WindowCenter")), _multi(ds.get("WindowWidth"))
    raw_names = ds.get("WindowCenterWidthExplanation")
    if raw_names is None or raw_names == "":
        names: list[str] = []
    elif isinstance(raw_names, str):
        names = [raw_names]
    else:
        try:
            names = [str(n) for n in raw_names]
        except TypeError:  # one value read with a wrong VR (a number): not a list of names
            names = [str(raw_names)]
    func = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if func not in FUNCTIONS:
        func = "LINEAR"
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
        if w <= 0 or not np.isfinite(c) or not np.isfinite(w):
            continue
        if func == "LINEAR" and w < 1:
            continue
        label = names[i] if i < len(names) and names[i].strip() else f"File window {i + 1}"
        out.append(Window(label, c, w, func))
    for i, item in enumerate(ds.get("VOILUTSequence", []) or []):
        lut = _voi_lut(item, little_endian)
        if lut is not None:
            first, table = lut
            label = str(item.get("LUTExplanation", "") or f"File VOI LUT {i + 1}")
            mid = first + len(table) / 2
            out.append(Window(label, mid, float(len(table)), "LINEAR", first, table))
    return tuple(out)


def _voi_lut(item: Dataset, little_endian: bool = True) -> tuple[int, tuple[float, ...]] | None:
    """(first mapped value, table scaled to [0, 1]) of one VOI LUT Sequence item.

    The table is scaled by the output range its LUT Descriptor declares, 0..2^n-1 for n bits
    per entry (PS3.3 C.11.2.1.1, PS3.4 N.2.4.1), not by its own min..max: a table that uses
    half of its range is meant to display at half brightness. OW data follows the file's byte
    order (each 16-bit word swapped in a big-endian file).
    """
    try:
        desc = [int(v) for v in item.LUTDescriptor]
        n_entries, first, bits = (desc[0] or 65536), desc[1], desc[2]
        data = item.LUTData
        if isinstance(data, bytes | bytearray):
            raw = ow_bytes(data, little_endian)
            dtype = np.uint8 if bits <= 8 and len(raw) == n_entries else np.uint16
            table = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
            table = table.astype(np.float64)
        else:
            table = np.asarray(_multi(data), dtype=np.float64)
    except (AttributeError, ValueError, TypeError, IndexError, KeyError):
        return None
    if table.size < 2 or not 1 <= bits <= 16 or not np.isfinite(table).all():
        return None
    norm = np.clip(table / float(2 ** bits - 1), 0.0, 1.0)
    return first, tuple(float(v) for v in norm)


def stretched(window: Window) -> Window | None:
    """A VOI LUT window rescaled to its own min..max, offered when the table never reaches the
    upper half of its declared output range: the mark of a table whose LUT Descriptor declares
    more bits than its data uses (a 12-bit table labelled 16-bit), which shows nearly black
    when followed to the letter. ``None`` for other windows."""
    if window.lut is None:
        return None
    table = np.asarray(window.lut, dtype=np.float64)
    lo, hi = float(table.min()), float(table.max())
    if hi >= 0.5 or hi <= lo:
        return None
    norm = (table - lo) / (hi - lo)
    return Window(f"{window.name} (stretched)", window.center, window.width, window.function,
                  window.lut_first, tuple(float(v) for v in norm))


def window_unit(values: np.ndarray, window: Window) -> np.ndarray:
    """Apply a window: float32 in [0, 1] (0 = darkest before any display inversion)."""
    x = np.asarray(values, dtype=np.float64)
    if window.lut is not None:
        table = np.asarray(window.lut, dtype=np.float64)
        idx = np.clip(np.rint(x) - window.lut_first, 0, table.size - 1).astype(np.intp)
        return table[idx].astype(np.float32)
    c, w = float(window.center), float(window.width)
    if window.function == "SIGMOID":
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    elif window.function == "LINEAR_EXACT":
        y = np.clip((x - c) / w + 0.5, 0.0, 1.0)
    else:
        w = max(w, 1.0)
        if w == 1.0:  # PS3.3 C.11.2.1.2.1: width 1 is a step at c - 0.5 (no ramp to divide by)
            return (x > c - 0.5).astype(np.float32)
        y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0,
                     np.where(x > c - 0.5 + (w - 1) / 2, 1.0, (x - (c - 0.5)) / (w - 1) + 0.5))
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def apply_window(values: np.ndarray, window: Window, invert: bool = False) -> np.ndarray:
    """Windowed 8-bit display image; inversion (MONOCHROME1 or user toggle) applied once."""
    y = window_unit(values, window)
    if invert:
        y = 1.0 - y
    return np.rint(y * 255.0).astype(np.uint8)


def full_range(values: np.ndarray) -> Window:
    lo, hi = float(np.min(values)), float(np.max(values))
    return Window("Full range", (lo + hi) / 2 + 0.5, max(hi - lo + 1.0, 1.0))


def _sample(values: np.ndarray) -> np.ndarray:
    """At most ~512x512 evenly strided pixels: percentiles need no more, and it is 10x faster."""
    return values[:: max(1, values.shape[0] // 512), :: max(1, values.shape[1] // 512)]


def _window_between(name: str, lo: float, hi: float) -> Window:
    return Window(name, (lo + hi) / 2 + 0.5, max(hi - lo + 1.0, 1.0))


def percentile_window(values: np.ndarray, name: str, lo_pct: float, hi_pct: float) -> Window:
    lo, hi = (float(v) for v in np.percentile(_sample(values), (lo_pct, hi_pct)))
    return _window_between(name, lo, hi)


def identity_window(lo: float, hi: float) -> Window:
    """The display with no VOI transform: modality values ``lo``..``hi`` (the range the stored
    bits can hold) mapped linearly onto black..white, as PS3.4 treats a missing VOI LUT and as
    dcmtk shows such an image by default."""
    return _window_between(IDENTITY, lo, hi)


def presets(values: np.ndarray, declared: tuple[Window, ...] = (), modality: str = "",
            identity: Window | None = None) -> list[Window]:
    """Windows to offer: the file's own first (each VOI LUT followed by its stretched form when
    it has one, :func:`stretched`), then the identity window when the image has one, full range
    and the percentile presets.

    All percentiles come from one ``np.percentile`` call (one sort). CT presets in Hounsfield
    units are added only for CT, where the values are HU.
    """
    out: list[Window] = []
    for window in declared:
        out.append(window)
        extra = stretched(window)
        if extra is not None:
            out.append(extra)
    if values.ndim != 2:
        return out
    if identity is not None:
        out.append(identity)
    out.append(full_range(values))
    pcts = [p for _, lo, hi in PERCENTILE_PRESETS for p in (lo, hi)]
    levels = np.percentile(_sample(values), pcts)
    for i, (name, _, _) in enumerate(PERCENTILE_PRESETS):
        out.append(_window_between(name, float(levels[2 * i]), float(levels[2 * i + 1])))
    if modality.upper() == "CT":
        out.extend(Window(n, c, w) for n, c, w in CT_PRESETS)
    return out


def default_window(values: np.ndarray, declared: tuple[Window, ...] = (),
                   identity: Window | None = None,
                   offered: tuple[Window, ...] = ()) -> Window:
    """The window a reader expects first (``render`` and the viewer both start with it).

    The file's first declared window; else, for an image with an identity window (at most
    :data:`IDENTITY_MAX_BITS` bits stored: an 8-bit film is already display-ready, and
    restretching it would change the contrast it was saved with), that one; else 'Auto', the
    1st-99th percentiles, since deeper data without a window shows nearly flat at identity.
    ``offered``: what :func:`presets` gave for these values (its 'Auto' is the same window,
    from the same sort; passing it saves a second percentile pass over the image).
    """
    if declared:
        return declared[0]
    if identity is not None:
        return identity
    auto = PERCENTILE_PRESETS[0][0]
    for window in offered:  # :func:`presets` of the same values computed it already
        if window.name == auto:
            return window
    return percentile_window(values, *PERCENTILE_PRESETS[0])
