"""The review store: every reader decision on an AI result, kept privately and never lost.

SQLite in the user's data folder (:func:`paths.data_dir`, ``reviews.sqlite3``, 0600 in a 0700
folder), never anything in a scanned folder. Why this shape:

* **append-only with history**: a changed decision is a new row; the current decision on an
  image is its latest row, and the history shows who changed what when;
* **each review committed when made** in WAL mode with ``synchronous=FULL``: a killed process
  loses nothing that :meth:`ReviewStore.add` returned from, and a half-made review is never
  seen (a transaction is all or nothing), so nothing is doubled either;
* **bound to the model's identity** (``model_id``) and the image's identity (SOP Instance UID and
  frame; the file's absolute path only when a file has no UID), because a decision on one
  model's output is evidence about that model only;
* **readers while a writer writes**: WAL lets :meth:`ReviewStore.open_readonly` read a
  consistent snapshot (the worklist, an export) while the viewer keeps recording.

Each row records the reader (settings, else the OS user), the time (UTC), the model's weights
sha256, the operating point and the probability shown, so an export can feed
``pneumoview calibrate`` and ``python -m training`` as labels.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import enum
import getpass
import io
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from pneumoview.core.errors import PneumoViewError
from pneumoview.core.paths import create_private_file, data_dir, write_private_file

STORE_FILE = "reviews.sqlite3"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 10.0
MAX_NOTE_CHARS = 4000


class Decision(str, enum.Enum):
    """What the reader says about the AI's call."""

    AGREE = "agree"
    DISAGREE = "disagree"
    UNCERTAIN = "uncertain"


class Truth(str, enum.Enum):
    """What is right, when the reader disagrees."""

    PNEUMONIA = "pneumonia"
    NO_PNEUMONIA = "no_pneumonia"
    NOT_ASSESSABLE = "not_assessable"


EXPORT_COLUMNS = ("relpath", "sop_instance_uid", "study_instance_uid", "label", "reader",
                  "time", "probability", "model_sha256")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    image_key TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL DEFAULT '',
    frame INTEGER NOT NULL DEFAULT 0,
    study_instance_uid TEXT NOT NULL DEFAULT '',
    relpath TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    decision TEXT NOT NULL CHECK (decision IN ('agree', 'disagree', 'uncertain')),
    truth TEXT CHECK (truth IS NULL OR truth IN ('pneumonia', 'no_pneumonia',
                                                 'not_assessable')),
    ai_flagged INTEGER,
    probability REAL,
    threshold REAL,
    operating_point TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    reader TEXT NOT NULL,
    time TEXT NOT NULL,
    CHECK (decision = 'disagree' OR truth IS NULL),
    CHECK (decision != 'disagree' OR truth IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS reviews_image ON reviews (model_id, image_key, id);
CREATE TRIGGER IF NOT EXISTS reviews_append_only_update BEFORE UPDATE ON reviews
    BEGIN SELECT RAISE(ABORT, 'reviews are append-only'); END;
CREATE TRIGGER IF NOT EXISTS reviews_append_only_delete BEFORE DELETE ON reviews
    BEGIN SELECT RAISE(ABORT, 'reviews are append-only'); END;
"""


def store_path() -> Path:
    return data_dir() / STORE_FILE


def default_reader() -> str:
    """The OS user name (the settings' reader wins where the caller has one)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or passwd
        return "unknown"


def image_key(sop_instance_uid: str, frame: int | None = 0, path: str = "") -> str:
    """The image's identity: its SOP Instance UID and frame; its absolute path when it has
    no UID (a file that lacks one cannot be told apart from its copies otherwise)."""
    if sop_instance_uid:
        return f"sop:{sop_instance_uid}#{int(frame or 0)}"
    if not path:
        raise PneumoViewError("a review needs the image's SOP Instance UID or its path")
    return f"path:{os.path.abspath(path)}"


@dataclass(frozen=True)
class ImageRef:
    """Which image, with what the AI showed the reader."""

    model_id: str
    model_sha256: str
    sop_instance_uid: str = ""
    frame: int = 0
    study_instance_uid: str = ""
    relpath: str = ""
    path: str = ""
    ai_flagged: bool | None = None
    probability: float | None = None
    threshold: float | None = None
    operating_point: str = ""

    @property
    def key(self) -> str:
        return image_key(self.sop_instance_uid, self.frame, self.path)


@dataclass(frozen=True)
class Review:
    """One row of the store."""

    id: int
    model_id: str
    model_sha256: str
    image_key: str
    sop_instance_uid: str
    frame: int
    study_instance_uid: str
    relpath: str
    path: str
    decision: Decision
    truth: Truth | None
    ai_flagged: bool | None
    probability: float | None
    threshold: float | None
    operating_point: str
    note: str
    reader: str
    time: str

    @property
    def label(self) -> int | None:
        """1 pneumonia, 0 none, None when the review gives no label (uncertain, not
        assessable, or an agreement with a result that was not a call)."""
        if self.decision is Decision.DISAGREE:
            return {Truth.PNEUMONIA: 1, Truth.NO_PNEUMONIA: 0}.get(self.truth)  # type: ignore[arg-type]
        if self.decision is Decision.AGREE and self.ai_flagged is not None:
            return int(self.ai_flagged)
        return None


_COLUMNS = ("id", "model_id", "model_sha256", "image_key", "sop_instance_uid", "frame",
            "study_instance_uid", "relpath", "path", "decision", "truth", "ai_flagged",
            "probability", "threshold", "operating_point", "note", "reader", "time")


def _review(row: tuple[Any, ...]) -> Review:
    d = dict(zip(_COLUMNS, row, strict=True))
    d["decision"] = Decision(d["decision"])
    d["truth"] = Truth(d["truth"]) if d["truth"] else None
    d["ai_flagged"] = None if d["ai_flagged"] is None else bool(d["ai_flagged"])
    return Review(**d)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ReviewStore:
    """One connection to the store. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: str | PathLike[str] | None = None, *,
                 readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else store_path()
        self.readonly = readonly
        try:
            if readonly:
                if not self.path.is_file():
                    raise PneumoViewError("no review store yet (nothing reviewed)", self.path)
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S,
                                           isolation_level=None)
            else:
                create_private_file(self.path)  # 0600; SQLite gives -wal/-shm the same mode
                self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S,
                                           isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise PneumoViewError(f"the review store cannot be opened ({exc}); it is kept "
                                  "as it is: move it away to start a new one", self.path) from None

    @classmethod
    def open_readonly(cls, path: str | PathLike[str] | None = None) -> ReviewStore:
        return cls(path, readonly=True)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing
    def add(self, image: ImageRef, decision: Decision | str, *, truth: Truth | str | None = None,
            note: str = "", reader: str = "") -> Review:
        """Record one decision, committed before this returns."""
        if self.readonly:
            raise PneumoViewError("the review store was opened read-only", self.path)
        decision = Decision(decision)
        truth = Truth(truth) if truth else None
        if (decision is Decision.DISAGREE) != (truth is not None):
            raise PneumoViewError("a disagreement says what is right (pneumonia, no pneumonia "
                                  "or not assessable); an agreement or 'uncertain' does not")
        prob = image.probability
        if prob is not None and not math.isfinite(prob):
            prob = None
        values = (image.model_id, image.model_sha256, image.key, image.sop_instance_uid,
                  int(image.frame or 0), image.study_instance_uid, image.relpath,
                  os.path.abspath(image.path) if image.path else "",
                  decision.value, truth.value if truth else None,
                  None if image.ai_flagged is None else int(image.ai_flagged), prob,
                  image.threshold, image.operating_point, str(note)[:MAX_NOTE_CHARS],
                  reader or default_reader(), _now())
        try:
            with self._transaction():
                cur = self._db.execute(
                    f"INSERT INTO reviews ({', '.join(_COLUMNS[1:])}) VALUES "
                    f"({', '.join('?' * (len(_COLUMNS) - 1))})", values)
                rid = int(cur.lastrowid or 0)
        except sqlite3.DatabaseError as exc:
            raise PneumoViewError(f"the review was not saved ({exc})", self.path) from None
        return _review((rid, *values))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- reading
    def history(self, model_id: str, key: str) -> list[Review]:
        """Every decision on one image under one model, oldest first."""
        cur = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM reviews WHERE model_id = ? "
                               "AND image_key = ? ORDER BY id", (model_id, key))
        return [_review(r) for r in cur.fetchall()]

    def current(self, model_id: str) -> dict[str, Review]:
        """The latest decision per image (by image key) under one model."""
        cur = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM reviews WHERE id IN (SELECT MAX(id) FROM "
            "reviews WHERE model_id = ? GROUP BY image_key)", (model_id,))
        return {r.image_key: r for r in map(_review, cur.fetchall())}

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0])

    def all_rows(self) -> list[Review]:
        cur = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM reviews ORDER BY id")
        return [_review(r) for r in cur.fetchall()]


# --------------------------------------------------------------------------------------------
# Export and running figures
# --------------------------------------------------------------------------------------------
def labelled(reviews: Iterable[Review]) -> list[Review]:
    return [r for r in reviews if r.label is not None]


def export_csv(reviews: Iterable[Review]) -> str:
    """The labelled CSV (:data:`EXPORT_COLUMNS`) of the current decisions that give a label;
    ``pneumoview calibrate --labels`` and ``python -m training`` read it."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    for r in sorted(labelled(reviews), key=lambda r: (r.relpath, r.image_key)):
        w.writerow([_cell(r.relpath), r.sop_instance_uid, r.study_instance_uid, r.label,
                    _cell(r.reader), r.time, "" if r.probability is None else repr(r.probability),
                    r.model_sha256])
    return buf.getvalue()


def _cell(text: str) -> str:
    from pneumoview.core.report import neutralise_formula

    return neutralise_formula(text)


def write_export(path: str | PathLike[str], reviews: Iterable[Review]) -> int:
    """Write :func:`export_csv` (private, atomically); returns the number of labels."""
    rows = list(reviews)
    write_private_file(path, export_csv(rows))
    return len(labelled(rows))


@dataclass(frozen=True)
class RunningFigures:
    """Sensitivity and PPV of the AI's calls against the reviews so far (drift shows here)."""

    n: int
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def ppv(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    def text(self) -> str:
        def f(v: float) -> str:
            return "n/a" if math.isnan(v) else f"{v:.2f}"

        return (f"reviewed {self.n}: sensitivity {f(self.sensitivity)} "
                f"({self.tp}/{self.tp + self.fn}), PPV {f(self.ppv)} ({self.tp}/"
                f"{self.tp + self.fp})")


def running_figures(reviews: Iterable[Review]) -> RunningFigures:
    tp = fp = fn = tn = 0
    n = 0
    for r in reviews:
        label = r.label
        if label is None or r.ai_flagged is None:
            continue
        n += 1
        if r.ai_flagged:
            tp, fp = tp + label, fp + (1 - label)
        else:
            fn, tn = fn + label, tn + (1 - label)
    return RunningFigures(n, tp, fp, fn, tn)
