"""Per-frame display attributes of Enhanced multi-frame objects (PS3.3 C.7.6.16).

Enhanced CT, MR, XA, DX, PET... images keep their rescale and VOI window not at the top level
but in functional group macros: the Pixel Value Transformation macro (C.7.6.16.2.9: Rescale
Slope/Intercept, or a Modality LUT) and the Frame VOI LUT macro (C.7.6.16.2.10, with C.8.15.3.10
for the LUT form: Window Center/Width, their explanation, VOI LUT Function, a VOI LUT Sequence).
Each macro sits either in the Shared Functional Groups Sequence (all frames) or, per frame, in
the Per-frame Functional Groups Sequence; the per-frame item is the more specific and wins.

The functions here return the dataset that holds a frame's attributes under their ordinary
keywords (the macro's item, else the top-level dataset), so the display code reads a classic
image and an Enhanced one the same way.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

#: The macros whose items carry the Modality LUT (rescale) and the VOI LUT of a frame.
RESCALE_MACRO = "PixelValueTransformationSequence"
VOI_MACRO = "FrameVOILUTSequence"

_RESCALE_KEYS = ("RescaleSlope", "RescaleIntercept", "ModalityLUTSequence")
_VOI_KEYS = ("WindowCenter", "WindowWidth", "VOILUTSequence")


def _first_item(container: object, keyword: str) -> Dataset | None:
    try:
        seq = container.get(keyword)  # type: ignore[attr-defined]
        if seq:
            item = seq[0]
            return item if isinstance(item, Dataset) else None
    except (AttributeError, IndexError, TypeError, KeyError):
        return None
    return None


def frame_macro(ds: Dataset, frame: int, keyword: str) -> Dataset | None:
    """The first item of macro ``keyword`` for ``frame`` (0-based): per-frame, then shared."""
    try:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        groups = per_frame[frame] if per_frame and 0 <= frame < len(per_frame) else None
    except (TypeError, IndexError, KeyError):
        groups = None
    item = _first_item(groups, keyword) if groups is not None else None
    if item is None:
        item = _first_item(_first_item(ds, "SharedFunctionalGroupsSequence"), keyword)
    return item


def _source(ds: Dataset, frame: int, macro: str, keys: tuple[str, ...]) -> Dataset:
    item = frame_macro(ds, frame, macro)
    if item is not None and any(k in item for k in keys):
        return item
    return ds


def rescale_source(ds: Dataset, frame: int) -> Dataset:
    """Where ``frame``'s Modality LUT (rescale or LUT sequence) is: a macro item or ``ds``."""
    return _source(ds, frame, RESCALE_MACRO, _RESCALE_KEYS)


def voi_source(ds: Dataset, frame: int) -> Dataset:
    """Where ``frame``'s VOI windows and VOI LUTs are: a macro item or ``ds``."""
    return _source(ds, frame, VOI_MACRO, _VOI_KEYS)
