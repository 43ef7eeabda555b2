"""Datasets over a prepared cache, the training augmentation, and the (distributed) sampler."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pneumoview.core.errors import PneumoViewError
from training.prepare import PREPARED_FILE

INDEX_COLUMNS = ["split", "row", "source", "path", "label", "patient_id", "group"]


@dataclass
class SplitIndex:
    """Images of a cache: each row points into ``images_<split>.npy`` at ``rows[i]``."""

    rows: np.ndarray  # row in the memmap
    labels: np.ndarray  # int64
    sources: list[str]
    paths: list[str]
    patient_ids: list[str]
    splits: list[str] = field(default_factory=list)  # memmap per row (empty: all one split)
    groups: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, mask: np.ndarray | list[bool]) -> SplitIndex:
        m = np.asarray(mask, dtype=bool)
        pick = [i for i in range(len(self)) if m[i]]
        return SplitIndex(self.rows[m], self.labels[m], [self.sources[i] for i in pick],
                          [self.paths[i] for i in pick], [self.patient_ids[i] for i in pick],
                          [self.splits[i] for i in pick] if self.splits else [],
                          [self.groups[i] for i in pick] if self.groups else [])

    def __add__(self, other: SplitIndex) -> SplitIndex:
        a, b = self.with_splits(""), other.with_splits("")
        return SplitIndex(np.concatenate([a.rows, b.rows]), np.concatenate([a.labels, b.labels]),
                          a.sources + b.sources, a.paths + b.paths,
                          a.patient_ids + b.patient_ids, a.splits + b.splits,
                          a.groups + b.groups)

    def with_splits(self, default: str) -> SplitIndex:
        if self.splits or not default:
            return self
        return SplitIndex(self.rows, self.labels, self.sources, self.paths, self.patient_ids,
                          [default] * len(self), self.groups)


def write_index(path: Path | str, index: SplitIndex) -> Path:
    """An index CSV (``INDEX_COLUMNS``) that ``--train-index``/``--val-index`` read."""
    if not index.splits:
        raise ValueError("an index file needs the split of every row")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(INDEX_COLUMNS)
        for i in range(len(index)):
            w.writerow([index.splits[i], int(index.rows[i]), index.sources[i], index.paths[i],
                        int(index.labels[i]), index.patient_ids[i],
                        index.groups[i] if index.groups else ""])
    tmp.replace(path)
    return path


def read_prepared(data_dir: Path | str) -> dict:
    path = Path(data_dir) / PREPARED_FILE
    if not path.is_file():
        raise PneumoViewError("not a prepared cache (run `python -m training prepare` first)",
                              data_dir)
    return json.loads(path.read_text(encoding="utf-8"))


def read_split(data_dir: Path | str, split: str) -> SplitIndex:
    """A split of the cache (``<split>.csv``), or an index file when ``split`` is a CSV path."""
    if str(split).endswith(".csv"):
        return read_index(split)
    path = Path(data_dir) / f"{split}.csv"
    if not path.is_file():
        raise PneumoViewError(f"split {split!r} not found in the prepared cache", data_dir)
    return _read_csv(path, split)


def read_index(path: Path | str) -> SplitIndex:
    """An index file written by :func:`write_index` (rows of several splits)."""
    path = Path(path)
    if not path.is_file():
        raise PneumoViewError("index file not found", path)
    return _read_csv(path, None)


def _read_csv(path: Path, split: str | None) -> SplitIndex:
    rows, labels, sources, paths, pids, splits, groups = [], [], [], [], [], [], []
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            rows.append(int(r["row"]))
            labels.append(int(r["label"]))
            sources.append(r["source"])
            paths.append(r["path"])
            pids.append(r["patient_id"])
            splits.append(split or r["split"])
            groups.append(r.get("group") or "")
    return SplitIndex(np.asarray(rows, dtype=np.int64), np.asarray(labels, dtype=np.int64),
                      sources, paths, pids, splits, groups)


class Augment:
    """The recipe's augmentation, fused into one resampling per image and run on whole batches.

    RandomAffine (+-``degrees``, translation up to ``translate`` of the side, scale 0.9-1.1)
    followed by RandomResizedCrop back to the input size with area scale ``crop_scale`` (0.35-1,
    not torchvision's 0.08, which crops the chest away) and aspect ratio 3/4-4/3. Both are affine
    maps, so they compose into one ``affine_grid``/``grid_sample`` (bilinear, zero fill) per
    image: ~1 ms instead of ~20 ms for two torchvision passes, which keeps the CPU data path off
    the critical path. Crops come out at most as large as the image (upsampling), so no
    antialiasing is needed. Draws from the torch global RNG (re-seeded per epoch).
    """

    def __init__(self, degrees: float = 5.0, translate: float = 0.05,
                 scale: tuple[float, float] = (0.9, 1.1),
                 crop_scale: tuple[float, float] = (0.35, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), gamma: float = 0.0,
                 contrast: float = 0.0) -> None:
        self.gamma = gamma
        self.contrast = contrast
        self.degrees = degrees
        self.translate = translate
        self.scale = scale
        self.crop_scale = crop_scale
        self.ratio = ratio

    def theta(self, n: int) -> torch.Tensor:
        """(n, 2, 3) maps from output to input coordinates (normalised, [-1, 1])."""
        u = torch.rand(n, 7, dtype=torch.float64)
        angle = (u[:, 0] * 2 - 1) * math.radians(self.degrees)
        tx = (u[:, 1] * 2 - 1) * 2 * self.translate
        ty = (u[:, 2] * 2 - 1) * 2 * self.translate
        sc = self.scale[0] + u[:, 3] * (self.scale[1] - self.scale[0])
        area = self.crop_scale[0] + u[:, 4] * (self.crop_scale[1] - self.crop_scale[0])
        logr = math.log(self.ratio[0]) + u[:, 5] * (math.log(self.ratio[1]) -
                                                    math.log(self.ratio[0]))
        r = torch.exp(logr)
        w = torch.sqrt(area * r).clamp(max=1.0)
        h = torch.sqrt(area / r).clamp(max=1.0)
        v = torch.rand(n, 2, dtype=torch.float64)
        cx = (v[:, 0] * 2 - 1) * (1 - w)
        cy = (v[:, 1] * 2 - 1) * (1 - h)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # source = R(-angle) (crop_point - t) / sc, crop_point = (cx + w x, cy + h y)
        a, b = cos / sc, sin / sc
        th = torch.empty(n, 2, 3, dtype=torch.float64)
        th[:, 0, 0] = a * w
        th[:, 0, 1] = b * h
        th[:, 1, 0] = -b * w
        th[:, 1, 1] = a * h
        dx, dy = cx - tx, cy - ty
        th[:, 0, 2] = a * dx + b * dy
        th[:, 1, 2] = -b * dx + a * dy
        return th

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 1, S, S) float in [0, 1] -> augmented, same shape."""
        th = self.theta(x.shape[0]).to(device=x.device, dtype=x.dtype)
        grid = torch.nn.functional.affine_grid(th, list(x.shape), align_corners=False)
        out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                              align_corners=False)
        return self.intensity(out)

    def intensity(self, x: torch.Tensor) -> torch.Tensor:
        """Gamma ``x ** exp(U(-g, g))`` then contrast ``0.5 + (x - 0.5) * (1 + U(-c, c))``,
        clipped to [0, 1]: exposure and processing differences between sites, in the range
        the input gate calls plausible (gamma 0.7-1.4 is g = 0.35). Off when both are 0."""
        n = x.shape[0]
        shape = (n,) + (1,) * (x.dim() - 1)
        if self.gamma > 0:
            g = torch.exp((torch.rand(n, dtype=torch.float64) * 2 - 1) * self.gamma)
            x = x.clamp(min=0.0).pow(g.to(x.dtype).reshape(shape))
        if self.contrast > 0:
            c = 1 + (torch.rand(n, dtype=torch.float64) * 2 - 1) * self.contrast
            x = (0.5 + (x - 0.5) * c.to(x.dtype).reshape(shape)).clamp(0.0, 1.0)
        return x


def resize_area(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-average resize of (N, 1, H, W) (small --image-size runs on a larger cache)."""
    return torch.nn.functional.interpolate(x, size=(size, size), mode="area")


class CachedDataset(torch.utils.data.Dataset):
    """One split of a prepared cache: returns ((1, S, S) float32 in [0, 1], label, index).

    Augmentation and normalisation happen on whole batches in the training loop.
    """

    def __init__(self, data_dir: Path | str, split: str, size: int | None = None,
                 index: SplitIndex | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.split = split
        self.index = (index if index is not None else read_split(data_dir, split)).with_splits(
            split)
        self.size = size
        self._arrs: dict[str, np.ndarray] = {}  # opened lazily (per worker process)

    def __len__(self) -> int:
        return len(self.index.rows)

    @property
    def labels(self) -> np.ndarray:
        return self.index.labels

    def _images(self, split: str) -> np.ndarray:
        if split not in self._arrs:
            path = self.data_dir / f"images_{split}.npy"
            if not path.is_file():
                raise PneumoViewError(f"split {split!r} has no images in the cache", path)
            self._arrs[split] = np.load(path, mmap_mode="r")
        return self._arrs[split]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        u8 = np.array(self._images(self.index.splits[i])[self.index.rows[i]])
        x = torch.from_numpy(u8).to(torch.float32).div_(255.0)[None]
        if self.size is not None and x.shape[-1] != self.size:
            x = resize_area(x[None], self.size)[0]
        return x, torch.tensor(float(self.index.labels[i])), i


def sample_weights(labels: np.ndarray, sources: list[str], balance: str,
                   power: float = 0.0) -> np.ndarray | None:
    """Per-image sampling weights so that each cell (class, source or both) gets a share
    proportional to ``n_cell ** power`` (0 = equal shares, 1 = natural frequencies)."""
    if balance == "none":
        return None
    if balance == "class":
        keys = [str(int(v)) for v in labels]
    elif balance == "source":
        keys = list(sources)
    elif balance == "source-class":
        keys = [f"{s}/{int(v)}" for s, v in zip(sources, labels, strict=True)]
    else:
        raise ValueError(f"unknown balance {balance!r}")
    counts: dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    return np.asarray([counts[k] ** (power - 1.0) for k in keys], dtype=np.float64)


class EpochSampler(torch.utils.data.Sampler[int]):
    """Seeded per epoch (so ``--resume`` replays exactly) and sharded over DDP ranks.

    Without weights it is a shuffled permutation; with weights, sampling with replacement.
    Every rank gets the same number of indices (padded by wrapping around).
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1,
                 weights: np.ndarray | None = None, num_samples: int | None = None) -> None:
        self.n = n
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.total = int(num_samples or n)
        self.per_rank = math.ceil(self.total / world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        if self.weights is None:
            reps = math.ceil(self.total / self.n)
            idx = torch.cat([torch.randperm(self.n, generator=g) for _ in range(reps)])
            idx = idx[: self.total].tolist()
        else:
            idx = torch.multinomial(self.weights, self.total, replacement=True,
                                    generator=g).tolist()
        padded = self.per_rank * self.world_size
        idx = (idx * math.ceil(padded / len(idx)))[:padded]
        return idx[self.rank:padded:self.world_size]

    def __iter__(self):  # noqa: ANN204
        return iter(self.indices())
