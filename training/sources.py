"""Reading the three data-set layouts into one list of labelled images with patient groups.

* RSNA layout: ``stage_2_train_labels.csv`` (``patientId,x,y,width,height,Target``, one row per
  box, so a positive patient repeats; the label is per patient) beside
  ``stage_2_train_images/<patientId>.dcm``.
* Folder layout: ``ROOT/NORMAL`` and ``ROOT/PNEUMONIA`` (class folder names configurable).
* CSV manifest: ``image,label[,patient_id]`` with paths relative to the CSV.

Patient ids decide the splits (never split one patient's images). Kermany file names carry them:
``personN_bacteria_M`` / ``personN_virus_M`` -> ``personN``; ``IM-XXXX-YYYY`` and
``NORMAL2-IM-XXXX-YYYY`` -> one group per number ``XXXX`` (whether the two series share
children is unknown, so equal numbers stay together: the safe side).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from pneumoview.core.errors import PneumoViewError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".bmp", ".tif", ".tiff"}
_PERSON = re.compile(r"^(person\d+)_", re.IGNORECASE)
_IM = re.compile(r"^(?:NORMAL2-)?IM-(\d+)(?:-|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Item:
    """One labelled image: where it is, what it shows, whose it is."""

    source: str
    path: str  # absolute path
    label: int  # 0 normal / no finding, 1 pneumonia
    patient_id: str  # unique within the source


def kermany_patient_id(filename: str) -> str:
    """Patient id of a Kermany file name (falls back to the file stem)."""
    stem = Path(filename).stem
    m = _PERSON.match(stem)
    if m:
        return m.group(1).lower()
    m = _IM.match(stem)
    if m:
        return f"IM-{int(m.group(1)):04d}"
    return stem


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def read_folder(root: Path | str, name: str | None = None,
                negative: tuple[str, ...] = ("NORMAL",),
                positive: tuple[str, ...] = ("PNEUMONIA",)) -> list[Item]:
    """``ROOT/<negative>/*`` labelled 0, ``ROOT/<positive>/*`` labelled 1."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise PneumoViewError("data folder not found", root)
    name = name or default_folder_name(root)
    items: list[Item] = []
    for label, dirs in ((0, negative), (1, positive)):
        for d in dirs:
            sub = root / d
            if not sub.is_dir():
                raise PneumoViewError(f"class folder {d!r} not found (expected ROOT/{d}/)", root)
            for p in sorted(sub.iterdir()):
                if _is_image(p):
                    items.append(Item(name, str(p), label, kermany_patient_id(p.name)))
    if not items:
        raise PneumoViewError("no images found in the class folders", root)
    return items


def default_folder_name(root: Path) -> str:
    """``.../kermany/train`` -> ``kermany``: split folder names do not name a source."""
    if root.name.lower() in {"train", "val", "test", "validation"}:
        return root.parent.name.lower() or "folder"
    return root.name.lower() or "folder"


def _parse_label(value: str, where: str) -> int:
    v = str(value).strip().lower()
    if v in {"1", "1.0", "pneumonia", "positive", "true"}:
        return 1
    if v in {"0", "0.0", "normal", "negative", "false", "no finding"}:
        return 0
    raise PneumoViewError(f"label {value!r} is not 0/1", where)


def read_manifest(csv_path: Path | str, name: str | None = None) -> list[Item]:
    """A CSV ``image,label[,patient_id]`` with image paths relative to the CSV's folder."""
    csv_path = Path(csv_path).resolve()
    if not csv_path.is_file():
        raise PneumoViewError("manifest CSV not found", csv_path)
    name = name or csv_path.parent.name.lower() or "manifest"
    items: list[Item] = []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        if not {"image", "label"} <= cols:
            raise PneumoViewError("manifest needs the columns image,label[,patient_id]",
                                  csv_path)
        for i, row in enumerate(reader, start=2):
            path = (csv_path.parent / row["image"]).resolve()
            if not path.is_file():
                raise PneumoViewError(f"line {i}: image {row['image']!r} not found", csv_path)
            pid = (row.get("patient_id") or "").strip() or f"img:{row['image']}"
            items.append(Item(name, str(path), _parse_label(row["label"], f"{csv_path}:{i}"),
                              pid))
    if not items:
        raise PneumoViewError("manifest lists no images", csv_path)
    return items


def read_rsna(root: Path | str, name: str = "rsna",
              labels_csv: str = "stage_2_train_labels.csv",
              images_dir: str = "stage_2_train_images") -> list[Item]:
    """RSNA Pneumonia Detection Challenge layout; one item per patient (label = any box)."""
    root = Path(root).resolve()
    labels_path = root / labels_csv
    if not labels_path.is_file():
        raise PneumoViewError(f"{labels_csv} not found in the RSNA folder", root)
    targets: dict[str, int] = {}
    with open(labels_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"patientId", "Target"} <= set(reader.fieldnames or []):
            raise PneumoViewError("RSNA labels need the columns patientId,...,Target",
                                  labels_path)
        for i, row in enumerate(reader, start=2):
            pid = row["patientId"].strip()
            t = _parse_label(row["Target"], f"{labels_path}:{i}")
            targets[pid] = max(t, targets.get(pid, 0))
    items: list[Item] = []
    for pid in sorted(targets):
        path = root / images_dir / f"{pid}.dcm"
        if not path.is_file():
            raise PneumoViewError(f"image for patient row {pid!r} not found "
                                  f"(expected {images_dir}/{pid}.dcm)", root)
        items.append(Item(name, str(path), targets[pid], pid))
    return items


def read_reviews(csv_path: Path | str, root: Path | str | None = None,
                 name: str = "reviews") -> list[Item]:
    """The labelled reviews a site exported (``pneumoview reviews export``: ``relpath,
    sop_instance_uid, study_instance_uid, label, ...``), images at ``root / relpath`` (default:
    the CSV's folder). The export names no patient, so a study stands for its patient when the
    data are split (two studies of one patient can land in different splits: say so in a
    model's provenance)."""
    csv_path = Path(csv_path).resolve()
    if not csv_path.is_file():
        raise PneumoViewError("review export not found", csv_path)
    base = Path(root).resolve() if root else csv_path.parent
    items: list[Item] = []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"relpath", "label", "study_instance_uid"} <= set(reader.fieldnames or []):
            raise PneumoViewError("not a review export (needs relpath, label and "
                                  "study_instance_uid columns)", csv_path)
        for i, row in enumerate(reader, start=2):
            rel = row["relpath"][1:] if row["relpath"].startswith("'") else row["relpath"]
            parts = [q for q in rel.split("/") if q not in ("", ".", "..")]
            path = base.joinpath(*parts)
            if not parts or not path.is_file():
                raise PneumoViewError(f"line {i}: image {rel!r} not found under {base}",
                                      csv_path)
            group = row.get("study_instance_uid") or row.get("sop_instance_uid") or rel
            items.append(Item(name, str(path), _parse_label(row["label"], f"{csv_path}:{i}"),
                              f"study:{group}"))
    if not items:
        raise PneumoViewError("the review export has no labels", csv_path)
    return items


def parse_source_spec(spec: str, kind: str) -> tuple[str | None, str]:
    """``NAME=PATH`` or ``PATH``."""
    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
        return name.strip() or None, path
    return None, spec


def collect(folders: list[str] | None = None, manifests: list[str] | None = None,
            rsna: list[str] | None = None, negative: tuple[str, ...] = ("NORMAL",),
            positive: tuple[str, ...] = ("PNEUMONIA",), reviews: list[str] | None = None,
            reviews_root: str | None = None) -> list[Item]:
    """All items of all given sources (source names must be distinct)."""
    items: list[Item] = []
    names: set[str] = set()
    groups: list[list[Item]] = []
    for spec in folders or []:
        name, path = parse_source_spec(spec, "folder")
        groups.append(read_folder(path, name, negative, positive))
    for spec in manifests or []:
        name, path = parse_source_spec(spec, "manifest")
        groups.append(read_manifest(path, name))
    for spec in rsna or []:
        name, path = parse_source_spec(spec, "rsna")
        groups.append(read_rsna(path, name or "rsna"))
    for spec in reviews or []:
        name, path = parse_source_spec(spec, "reviews")
        groups.append(read_reviews(path, reviews_root, name or "reviews"))
    for g in groups:
        src = g[0].source
        if src in names:
            raise PneumoViewError(f"two sources are named {src!r}; name them NAME=PATH")
        names.add(src)
        items.extend(g)
    if not items:
        raise PneumoViewError("no data source given (use --folder, --manifest or --rsna)")
    return items


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
