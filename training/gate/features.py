"""Backbone activations of gate samples, cached on disk per backbone, read back bounded.

One forward pass of the frozen classifier gives the last block's activations A (what the
gate's heads and atypicality read, through :func:`pneumoview.core.inputgate.gate_features`)
and the logit (what the figures' "flagged" needs). The store keeps A itself (float16, so a head
that reads A another way is refitted without a single new forward pass) in chunk files under
``WORK/features/<backbone id>-a1/``:

* ``chunk-NNNNN.npz``: the keys, logits, decoded shapes and rule statistics of up to
  ``chunk`` samples (small; all of them are read at start);
* ``chunk-NNNNN.A.npy``: their A, (n, C, h, w) float16, opened as a read-only memory map.

A chunk is written (then renamed into place) every ``chunk`` samples, so an interrupted run
resumes where it stopped and a second command (the figures) reuses what the first computed.
Derived features are computed from the memory maps a batch at a time, so the memory a command
holds is its feature matrix (float32), not every A. The backbone id digests the network tensors
only (not the ``gate.*`` ones), so a model folder with a gate attached shares its backbone's
cache.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumoview.core import contract
from pneumoview.core.inputgate import DEFAULT_LAYOUT, TENSOR_PREFIX, content_statistics
from training.gate.samples import Sample

log = logging.getLogger("training.gate")

FEATURES_VERSION = "a1"  # the cache holds A (float16); features are derived on reading
STAT_KEYS = ("range", "neighbour_correlation", "smooth_fraction")


@dataclass
class Features:
    """Rows aligned with a list of samples."""

    pooled: np.ndarray  # (N, D) float32: inputgate.gate_features (pooled first)
    logit: np.ndarray  # (N,) float64
    shape: np.ndarray  # (N, 2) int: decoded height, width
    stats: np.ndarray  # (N, 3) float: STAT_KEYS of the model input

    def __len__(self) -> int:
        return len(self.logit)

    def rows(self, idx: Sequence[int] | np.ndarray) -> Features:
        i = np.asarray(idx, dtype=np.int64)
        return Features(self.pooled[i], self.logit[i], self.shape[i], self.stats[i])

    @staticmethod
    def concat(parts: Sequence[Features]) -> Features:
        return Features(np.concatenate([p.pooled for p in parts]),
                        np.concatenate([p.logit for p in parts]),
                        np.concatenate([p.shape for p in parts]),
                        np.concatenate([p.stats for p in parts]))


def network_digest(tensors: Mapping[str, np.ndarray], info) -> str:  # noqa: ANN001
    """sha256 (16 hex) of the network's tensors (``gate.*`` excluded) and of the input
    normalisation of ``info`` (a ModelInfo): what the gate's features depend on."""
    h = hashlib.sha256()
    for name in sorted(k for k in tensors if not k.startswith(TENSOR_PREFIX)):
        h.update(name.encode())
        h.update(np.ascontiguousarray(tensors[name]).tobytes())
    h.update(f"{info.input_contract}|{info.input_size}|{info.mean!r}|{info.std!r}".encode())
    return h.hexdigest()[:16]


def backbone_id(loaded) -> str:  # noqa: ANN001 - a pneumoview.core.model.LoadedModel
    state = loaded.module.state_dict()
    return network_digest({k: v.detach().cpu().numpy() for k, v in state.items()},
                          loaded.info)


Derive = Callable[[np.ndarray], np.ndarray]  # A (n, C, h, w) float32 -> (n, D) features


def layout_features(layout: str = DEFAULT_LAYOUT) -> Derive:
    from pneumoview.core.inputgate import gate_features

    return lambda a: gate_features(a, layout)


class FeatureStore:
    """Activations by sample key for one backbone; computes what is missing, in batches."""

    def __init__(self, loaded, work: Path | str, batch_size: int = 32,  # noqa: ANN001
                 chunk: int = 256, derive: Derive | None = None) -> None:
        self.loaded = loaded
        self.dir = Path(work) / "features" / f"{backbone_id(loaded)}-{FEATURES_VERSION}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self.chunk = chunk
        self.derive = derive or layout_features()
        # key -> (chunk number, row); small per-sample values kept in memory
        self.where: dict[str, tuple[int, int]] = {}
        self.small: dict[str, tuple[float, np.ndarray, np.ndarray]] = {}
        self._maps: dict[int, np.ndarray] = {}
        self.n_chunks = 0
        for f in sorted(self.dir.glob("chunk-?????.npz")):
            n = int(f.name[6:11])
            if not (self.dir / f"chunk-{n:05d}.A.npy").is_file():
                continue
            with np.load(f) as z:
                for i, k in enumerate(z["keys"]):
                    self.where[str(k)] = (n, i)
                    self.small[str(k)] = (float(z["logit"][i]), z["shape"][i], z["stats"][i])
            self.n_chunks = max(self.n_chunks, n + 1)

    def __contains__(self, key: str) -> bool:
        return key in self.where

    # -- writing -------------------------------------------------------------------------------
    def _save(self, keys: list[str], acts: list[np.ndarray], small: list[tuple]) -> None:
        n = self.n_chunks
        a_tmp = self.dir / f"chunk-{n:05d}.A.tmp.npy"
        np.save(a_tmp, np.stack(acts).astype(np.float16))
        a_tmp.rename(self.dir / f"chunk-{n:05d}.A.npy")
        tmp = self.dir / f"chunk-{n:05d}.tmp.npz"
        np.savez(tmp, keys=np.array(keys), logit=np.array([s[0] for s in small]),
                 shape=np.stack([s[1] for s in small]), stats=np.stack([s[2] for s in small]))
        tmp.rename(self.dir / f"chunk-{n:05d}.npz")
        for i, (k, s) in enumerate(zip(keys, small, strict=True)):
            self.where[k] = (n, i)
            self.small[k] = s
        self.n_chunks = n + 1

    def _forward(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        from pneumoview.core.model import predict_activations, prepare_batch

        return predict_activations(self.loaded, prepare_batch(inputs, self.loaded.info))

    def fill(self, samples: Sequence[Sample], label: str = "") -> None:
        """Compute and store every sample not in the cache yet."""
        todo = [k for k in dict.fromkeys(s.key for s in samples) if k not in self.where]
        if not todo:
            return
        by_key = {s.key: s for s in samples}
        size, version = self.loaded.info.input_size, self.loaded.info.input_contract
        t0, done = time.time(), 0
        p_keys: list[str] = []
        p_acts: list[np.ndarray] = []
        p_small: list[tuple] = []
        for start in range(0, len(todo), self.batch_size):
            keys = todo[start:start + self.batch_size]
            inputs, small = [], []
            for k in keys:
                grey = by_key[k].make()
                inputs.append(contract.model_input(grey, False, size, version))
                st = content_statistics(inputs[-1])
                small.append((np.array(grey.shape[:2], dtype=np.int64),
                              np.array([st[s] for s in STAT_KEYS], dtype=np.float64)))
                del grey
            logits, act = self._forward(inputs)
            for i, k in enumerate(keys):
                p_keys.append(k)
                p_acts.append(act[i].astype(np.float16))
                p_small.append((float(logits[i]), *small[i]))
            done += len(keys)
            if len(p_keys) >= self.chunk or done == len(todo):
                self._save(p_keys, p_acts, p_small)
                p_keys, p_acts, p_small = [], [], []
                rate = done / max(1e-6, time.time() - t0)
                log.info("features %s: %d/%d new (%.1f/s)", label, done, len(todo), rate)

    # -- reading -------------------------------------------------------------------------------
    def _map(self, n: int) -> np.ndarray:
        if n not in self._maps:
            self._maps[n] = np.load(self.dir / f"chunk-{n:05d}.A.npy", mmap_mode="r")
        return self._maps[n]

    def activations(self, keys: Sequence[str]) -> np.ndarray:
        """A of ``keys`` (float32), read from the memory maps (keep ``keys`` short)."""
        return np.stack([np.asarray(self._map(self.where[k][0])[self.where[k][1]],
                                    dtype=np.float32) for k in keys])

    def features(self, keys: Sequence[str], derive: Derive | None = None,
                 batch: int = 256) -> np.ndarray:
        """Derived features of ``keys``, a batch of A at a time."""
        derive = derive or self.derive
        parts = [derive(self.activations(keys[i:i + batch]))
                 for i in range(0, len(keys), batch)]
        if not parts:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(parts).astype(np.float32)

    def compute(self, samples: Sequence[Sample], label: str = "",
                derive: Derive | None = None) -> Features:
        """Features of ``samples`` (cached ones read, the rest computed and stored)."""
        self.fill(samples, label)
        keys = [s.key for s in samples]
        small = [self.small[k] for k in keys]
        if not keys:
            return Features(np.zeros((0, 0), np.float32), np.zeros(0),
                            np.zeros((0, 2), np.int64), np.zeros((0, 3)))
        return Features(self.features(keys, derive), np.array([s[0] for s in small]),
                        np.stack([s[1] for s in small]), np.stack([s[2] for s in small]))
