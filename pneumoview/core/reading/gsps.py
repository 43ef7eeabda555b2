"""Measurements and annotations as a DICOM Grayscale Softcopy Presentation State, and back.

Written with highdicom, so Weasis, OHIF and any PACS viewer show the reader's window, graphics
and rotation/flip on the original image. Graphics are in PIXEL units (PS3.3 C.10.5.1.2:
``column \\ row`` from the top-left corner of the top-left pixel, the coordinates used
throughout :mod:`pneumoview.core.reading`). Lines and angles are open polylines, rectangles
closed ones, ellipses the ELLIPSE type (major then minor axis end points), text and every
measurement's value are text objects. The rotation and flip go into the Spatial
Transformation module, whose convention (flip first, then clockwise rotation) is
:class:`ViewTransform`'s.

Reading (:func:`read_presentation_state`) maps the same forms back, so a state saved here, or
one from another viewer that uses these forms, applies its window and graphics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

import pneumoview
from pneumoview.core.dicomio import header_text
from pneumoview.core.reading.annotations import Annotation, Kind
from pneumoview.core.reading.orientation import ViewTransform
from pneumoview.core.windowing import Window

GSPS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.11.1"
LAYER = "PNEUMOVIEW"
#: The measured values (lengths, angles, ROI statistics) go in a layer of their own: shown by
#: other viewers, skipped when read back (PneumoView recomputes them from the graphics).
VALUES_LAYER = "PNEUMOVIEW_VALUE"
_UNITS = "PIXEL"

if TYPE_CHECKING:
    import highdicom as hd


def _highdicom() -> Any:
    """highdicom, imported on first use (it takes seconds to import: not at start-up)."""
    import highdicom

    return highdicom


@dataclass
class PresentationState:
    """What a presentation state says about the images it references."""

    referenced: tuple[str, ...]  # SOP Instance UIDs
    window: tuple[float, float] | None = None  # centre, width
    transform: ViewTransform = field(default_factory=ViewTransform)
    invert: bool | None = None  # Presentation LUT INVERSE
    annotations: dict[str, list[Annotation]] = field(default_factory=dict)  # by SOP UID
    skipped: int = 0  # graphics of forms PneumoView does not draw
    label: str = ""


# -- writing -----------------------------------------------------------------------------------
#: An arrow is its shaft plus a three-point head, grouped under this label (GSPS has no arrow
#: graphic: other viewers show the two lines, PneumoView reads the group back as an arrow).
ARROW_GROUP = "ARROW"


def _arrow(a: Annotation, group: hd.pr.GraphicGroup) -> list[hd.pr.GraphicObject]:
    hd = _highdicom()
    (tx, ty), (hx, hy) = a.points
    length = math.hypot(hx - tx, hy - ty) or 1.0
    ux, uy = (hx - tx) / length, (hy - ty) / length
    size = min(30.0, max(3.0, 0.2 * length))
    bx, by = hx - ux * size, hy - uy * size
    sx, sy = -uy * size * 0.45, ux * size * 0.45
    head = np.array([(bx + sx, by + sy), (hx, hy), (bx - sx, by - sy)])
    line = hd.pr.GraphicTypeValues.POLYLINE
    return [hd.pr.GraphicObject(line, np.array(a.points, dtype=np.float64), _UNITS,
                                graphic_group=group),
            hd.pr.GraphicObject(line, head, _UNITS, graphic_group=group)]


def _graphic(a: Annotation) -> hd.pr.GraphicObject | None:
    hd = _highdicom()
    pts = np.array(a.points, dtype=np.float64)
    if a.kind in (Kind.DISTANCE, Kind.ANGLE):
        return hd.pr.GraphicObject(hd.pr.GraphicTypeValues.POLYLINE, pts, _UNITS)
    if a.kind in (Kind.TEXT, Kind.ARROW):
        return None
    (x0, y0), (x1, y1) = a.points
    if a.kind is Kind.RECTANGLE:
        ring = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)], dtype=np.float64)
        return hd.pr.GraphicObject(hd.pr.GraphicTypeValues.POLYLINE, ring, _UNITS)
    if a.kind is Kind.ELLIPSE:
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2, abs(y1 - y0) / 2
        horizontal = [(cx - rx, cy), (cx + rx, cy)]
        vertical = [(cx, cy - ry), (cx, cy + ry)]
        axes = horizontal + vertical if rx >= ry else vertical + horizontal
        return hd.pr.GraphicObject(hd.pr.GraphicTypeValues.ELLIPSE, np.array(axes), _UNITS)
    return None


def _text(value: str, anchor: tuple[float, float], visible: bool) -> hd.pr.TextObject:
    hd = _highdicom()
    return hd.pr.TextObject(value[:1024], _UNITS, anchor_point=anchor,
                            anchor_point_visible=visible)


#: Type 2 attributes of the patient and study modules the state copies from its image; an
#: image that lacks one (they may be absent from older or anonymised files) gets it empty.
_COPIED_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                 "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _completed(source: Dataset) -> Dataset:
    missing = [k for k in _REQUIRED if not header_text(source, k)]
    if missing:
        raise ValueError(f"the image lacks {', '.join(missing)}: a presentation state cannot "
                         "reference it")
    ds = source.copy()
    for keyword in _COPIED_TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def build_presentation_state(source: Dataset, annotations: Sequence[Annotation],
                             labels: dict[str, list[str]] | None = None,
                             window: Window | None = None, invert: bool = False,
                             transform: ViewTransform | None = None,
                             label: str = "PNEUMOVIEW") -> Dataset:
    """A GSPS referencing ``source`` (a header with its SOP Instance UID and study/patient
    attributes) carrying ``annotations`` with their measured ``labels`` (by annotation id),
    ``window`` (linear or sigmoid levels; a VOI LUT is left to the image), the inversion and
    the rotation/flip. ValueError when the image cannot be referenced."""
    hd = _highdicom()
    source = _completed(source)
    layer = hd.pr.GraphicLayer(LAYER, order=1, description="PneumoView graphics and text")
    values_layer = hd.pr.GraphicLayer(VALUES_LAYER, order=2,
                                      description="Values measured by PneumoView")
    frames = sorted({a.frame for a in annotations})
    multi = int(header_text(source, "NumberOfFrames") or 1) > 1
    graphic_annotations = []
    arrow_group = hd.pr.GraphicGroup(1, ARROW_GROUP, "PneumoView arrows")
    has_arrows = any(a.kind is Kind.ARROW for a in annotations)
    for frame in frames:
        graphic_annotations += _frame_annotations(
            hd, source, [a for a in annotations if a.frame == frame],
            frame + 1 if multi else None, (layer, values_layer), arrow_group, labels or {})
    voi = _voi_transformations(hd, window)
    shape = hd.PresentationLUTShapeValues.INVERSE if invert else \
        hd.PresentationLUTShapeValues.IDENTITY
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[source], series_instance_uid=generate_uid(), series_number=9901,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="PneumoView",
        manufacturer_model_name="PneumoView", software_versions=pneumoview.__version__,
        device_serial_number="0", content_label=_label(label),
        content_description="Measurements and annotations from PneumoView",
        graphic_annotations=graphic_annotations or None,
        graphic_layers=[layer, values_layer] if graphic_annotations else None,
        graphic_groups=[arrow_group] if has_arrows else None,
        voi_lut_transformations=voi,
        presentation_lut_transformation=hd.PresentationLUTTransformation(shape))
    # General Series: Laterality (Type 2C) as the image states it, empty when it does not
    gsps.Laterality = header_text(source, "Laterality") or header_text(source, "ImageLaterality")
    t = transform or ViewTransform()
    gsps.ImageRotation = 90 * t.quarter_turns
    gsps.ImageHorizontalFlip = "Y" if t.flip else "N"
    return gsps


def _frame_annotations(hd: Any, source: Dataset, annotations: Sequence[Annotation],
                       frame_number: int | None, layers: tuple[Any, Any], arrow_group: Any,
                       labels: dict[str, list[str]]) -> list[Any]:
    """The graphic annotations of one frame: the drawings and texts on the graphics layer, the
    measured values (hidden text) on the values layer."""
    objects, texts, values = [], [], []
    for a in annotations:
        graphic = _graphic(a)
        if graphic is not None:
            objects.append(graphic)
        if a.kind is Kind.ARROW:
            objects += _arrow(a, arrow_group)
        if a.kind is Kind.TEXT or (a.kind is Kind.ARROW and a.text):
            texts.append(_text(a.text, a.points[0], visible=False))
        value = " / ".join(labels.get(a.id, [])) if a.kind.is_measurement else ""
        if value:
            values.append(_text(value, a.points[-1], visible=False))
    out = []
    if objects or texts:
        out.append(hd.pr.GraphicAnnotation(
            [source], layers[0], referenced_frame_number=frame_number,
            graphic_objects=objects or None, text_objects=texts or None))
    if values:
        out.append(hd.pr.GraphicAnnotation(
            [source], layers[1], referenced_frame_number=frame_number, text_objects=values))
    return out


def _voi_transformations(hd: Any, window: Window | None) -> list[Any] | None:
    """The window as a Softcopy VOI LUT transformation (a VOI LUT is left to the image)."""
    if window is None or window.lut is not None:
        return None
    return [hd.pr.SoftcopyVOILUTTransformation(
        window_center=window.center, window_width=window.width,
        window_explanation=window.name[:64] or None,
        voi_lut_function=window.function if window.function != "LINEAR" else None)]


def _label(text: str) -> str:
    """A Content Label (CS: upper case, digits, space, underscore; 16 characters)."""
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in text.upper())
    return (cleaned.strip("_") or "PNEUMOVIEW")[:16]


# -- reading -----------------------------------------------------------------------------------
def is_presentation_state(ds: Dataset) -> bool:
    return header_text(ds, "SOPClassUID") == GSPS_SOP_CLASS


def _points(obj: Dataset) -> list[tuple[float, float]]:
    data = [float(v) for v in obj.get("GraphicData", [])]
    pts = list(zip(data[0::2], data[1::2], strict=False))
    return [p for p in pts if all(math.isfinite(v) for v in p)]


def _from_graphic(obj: Dataset, frame: int, arrow_groups: set[str]) -> Annotation | None:
    kind = header_text(obj, "GraphicType").upper()
    pts = _points(obj)
    if header_text(obj, "GraphicAnnotationUnits").upper() != "PIXEL":
        return None  # DISPLAY units need the displayed area: not drawn
    if header_text(obj, "GraphicGroupID") in arrow_groups and kind == "POLYLINE":
        return Annotation(Kind.ARROW, tuple(pts), frame) if len(pts) == 2 else None
    if kind == "POLYLINE":
        if len(pts) == 2:
            return Annotation(Kind.DISTANCE, tuple(pts), frame)
        if len(pts) == 3:
            return Annotation(Kind.ANGLE, tuple(pts), frame)
        if len(pts) == 5 and pts[0] == pts[4]:
            xs, ys = {p[0] for p in pts}, {p[1] for p in pts}
            if len(xs) <= 2 and len(ys) <= 2:
                return Annotation(Kind.RECTANGLE, ((min(xs), min(ys)), (max(xs), max(ys))), frame)
    if kind == "ELLIPSE" and len(pts) == 4:
        a = np.array(pts)
        if _aligned(pts[0], pts[1]) and _aligned(pts[2], pts[3]):  # rotated: not drawn
            return Annotation(Kind.ELLIPSE, ((a[:, 0].min(), a[:, 1].min()),
                                             (a[:, 0].max(), a[:, 1].max())), frame)
    if kind == "CIRCLE" and len(pts) == 2:
        (cx, cy), (ex, ey) = pts
        r = math.hypot(ex - cx, ey - cy)
        return Annotation(Kind.ELLIPSE, ((cx - r, cy - r), (cx + r, cy + r)), frame)
    return None


def _aligned(p: tuple[float, float], q: tuple[float, float]) -> bool:
    return abs(p[0] - q[0]) < 1e-6 or abs(p[1] - q[1]) < 1e-6


def _from_text(obj: Dataset, frame: int) -> Annotation | None:
    text = str(obj.get("UnformattedTextValue", "") or "").strip()
    anchor = [float(v) for v in obj.get("AnchorPoint", [])]
    box = [float(v) for v in obj.get("BoundingBoxTopLeftHandCorner", [])]
    point = tuple(anchor[:2]) if len(anchor) >= 2 else tuple(box[:2]) if len(box) >= 2 else None
    if not text or point is None or not all(math.isfinite(v) for v in point):
        return None
    return Annotation(Kind.TEXT, (point,), frame, text)  # type: ignore[arg-type]


def _read_window(ds: Dataset) -> tuple[float, float] | None:
    """The (centre, width) of the first Softcopy VOI LUT item, None when absent or unusable."""
    voi = ds.get("SoftcopyVOILUTSequence")
    if not voi:
        return None
    try:
        c, w = float(voi[0].WindowCenter), float(voi[0].WindowWidth)
    except (AttributeError, TypeError, ValueError):
        return None
    return (c, w) if math.isfinite(c) and math.isfinite(w) and w > 0 else None


def _read_annotation_item(item: Dataset, state: PresentationState,
                          arrow_groups: set[str]) -> None:
    """Add one Graphic Annotation item's drawable graphics and texts to ``state``."""
    uids = [header_text(i, "ReferencedSOPInstanceUID")
            for i in item.get("ReferencedImageSequence", [])] or list(state.referenced)
    ref_items = item.get("ReferencedImageSequence") or []
    first = header_text(ref_items[0], "ReferencedFrameNumber") if ref_items else ""
    frame = int(first.split("\\")[0]) - 1 if first.split("\\")[0].isdigit() else 0
    drawn = []
    for obj in item.get("GraphicObjectSequence", []):
        a = _from_graphic(obj, frame, arrow_groups)
        in_arrow = header_text(obj, "GraphicGroupID") in arrow_groups
        if a is None and not in_arrow:
            state.skipped += 1
        elif a is not None:
            drawn.append(a)
    for obj in item.get("TextObjectSequence", []):
        t = _from_text(obj, frame)
        if t is not None:
            drawn.append(t)
    for uid in uids:
        state.annotations.setdefault(uid, []).extend(drawn)


def read_presentation_state(ds: Dataset) -> PresentationState:
    """The window, transform and graphics of a GSPS (forms it cannot draw are counted)."""
    refs: list[str] = []
    for series in ds.get("ReferencedSeriesSequence", []):
        refs += [header_text(i, "ReferencedSOPInstanceUID")
                 for i in series.get("ReferencedImageSequence", [])]
    state = PresentationState(tuple(r for r in refs if r), label=header_text(ds, "ContentLabel"))
    state.window = _read_window(ds)
    rotation = header_text(ds, "ImageRotation")
    flip = header_text(ds, "ImageHorizontalFlip") == "Y"
    turns = int(rotation) // 90 if rotation in ("0", "90", "180", "270") else 0
    state.transform = ViewTransform(turns, flip)
    shape = header_text(ds, "PresentationLUTShape")
    state.invert = {"INVERSE": True, "IDENTITY": False}.get(shape)
    arrow_groups = {header_text(g, "GraphicGroupID") for g in ds.get("GraphicGroupSequence", [])
                    if header_text(g, "GraphicGroupLabel") == ARROW_GROUP}
    for item in ds.get("GraphicAnnotationSequence", []):
        if header_text(item, "GraphicLayer") == VALUES_LAYER:
            continue  # our own measured values: recomputed from the graphics
        _read_annotation_item(item, state, arrow_groups)
    return state
