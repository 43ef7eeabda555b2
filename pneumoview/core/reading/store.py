"""Where a reader's measurements and annotations are kept: per image, private to the user.

Nothing is ever written next to the images (a scanned folder is only read). Each image's
annotations are one JSON file under ``data_dir()/annotations``, 0600 in a 0700 folder, named by
a digest of the image's key so the folder listing shows no identifiers. The key is the SOP
Instance UID (the image's identity wherever the file is copied), or for a file without a valid
one the SHA-256 of its bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from pydicom.dataset import Dataset

from pneumoview.core.dicomio import header_text
from pneumoview.core.errors import PneumoViewError
from pneumoview.core.paths import data_dir, read_small_file, write_private_file
from pneumoview.core.reading.annotations import Annotation

FORMAT = "pneumoview-annotations-1"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the file's bytes (read in chunks, never whole into memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def image_key(ds: Dataset | None, path: str | os.PathLike[str] | None = None) -> str:
    """``uid:<SOP Instance UID>``, else ``sha256:<file digest>`` (reads the file)."""
    uid = header_text(ds, "SOPInstanceUID")
    if uid and len(uid) <= 64 and _UID.match(uid):
        return f"uid:{uid}"
    if path is None:
        raise PneumoViewError("the image has no SOP Instance UID and no file to digest")
    try:
        return f"sha256:{file_digest(path)}"
    except OSError as exc:
        raise PneumoViewError(f"cannot read the file to key its annotations ({exc})",
                              path) from exc


class AnnotationStore:
    """Load and save the annotations of one image at a time."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else data_dir() / "annotations"

    def path_for(self, key: str) -> Path:
        return self.root / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()[:40]}.json"

    def load(self, key: str) -> list[Annotation]:
        """The saved annotations ([] when none); a damaged file is a PneumoViewError naming
        it (it is left as it is, never overwritten unseen)."""
        path = self.path_for(key)
        try:
            raw = read_small_file(path)
        except FileNotFoundError:
            return []
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            if data.get("key") != key:
                raise ValueError("the file belongs to another image")
            items = data.get("annotations")
            if not isinstance(items, list):
                raise ValueError("'annotations' must be a list")
            return [Annotation.from_json(item) for item in items]
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
            raise PneumoViewError(f"damaged annotation file ({exc})", path) from exc

    def save(self, key: str, annotations: list[Annotation]) -> Path:
        """Write them (atomically, private); no annotations removes the file."""
        path = self.path_for(key)
        if not annotations:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise PneumoViewError(f"cannot remove the annotation file ({exc})", path) from exc
            return path
        payload = {"format": FORMAT, "key": key,
                   "annotations": [a.to_json() for a in annotations]}
        try:
            return write_private_file(path, json.dumps(payload, indent=1))
        except OSError as exc:
            raise PneumoViewError(f"cannot save the annotations ({exc})", path) from exc
