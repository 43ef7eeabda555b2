"""Backbone features of gate samples, cached on disk per backbone.

One forward pass of the frozen classifier gives the pooled 512-d features (what the gate's heads
and atypicality read) and the logit (what the figures' "flagged" needs). The store keeps them
per sample key in chunk files under ``WORK/features/<backbone id>/``, written every few hundred
samples, so an interrupted run resumes and a second command (the figures) reuses what the
first computed. The backbone id digests the network tensors only (not the ``gate.*`` ones), so
a model folder with a gate attached shares its backbone's cache.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumoview.core import contract
from pneumoview.core.inputgate import TENSOR_PREFIX, content_statistics
from training.gate.samples import Sample

log = logging.getLogger("training.gate")

FEATURES_VERSION = "f2"  # inputgate.gate_features: pooled + half differences
STAT_KEYS = ("range", "neighbour_correlation", "smooth_fraction")


@dataclass
class Features:
    """Rows aligned with a list of samples."""

    pooled: np.ndarray  # (N, 1536) float32: inputgate.gate_features (pooled first)
    logit: np.ndarray  # (N,) float64
    shape: np.ndarray  # (N, 2) int: decoded height, width
    stats: np.ndarray  # (N, 3) float: STAT_KEYS of the model input

    def __len__(self) -> int:
        return len(self.logit)


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


class FeatureStore:
    """Features by sample key for one backbone; computes what is missing, in batches."""

    def __init__(self, loaded, work: Path | str, batch_size: int = 32,  # noqa: ANN001
                 chunk: int = 256) -> None:
        self.loaded = loaded
        self.dir = Path(work) / "features" / f"{backbone_id(loaded)}-{FEATURES_VERSION}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self.chunk = chunk
        self.rows: dict[str, tuple[np.ndarray, float, np.ndarray, np.ndarray]] = {}
        for f in sorted(self.dir.glob("chunk-*.npz")):
            with np.load(f) as z:
                for i, k in enumerate(z["keys"]):
                    self.rows[str(k)] = (z["pooled"][i], float(z["logit"][i]), z["shape"][i],
                                         z["stats"][i])

    def _save(self, keys: list[str]) -> None:
        n = len(list(self.dir.glob("chunk-*.npz")))
        tmp = self.dir / f"chunk-{n:05d}.tmp.npz"
        np.savez(tmp, keys=np.array(keys), pooled=np.stack([self.rows[k][0] for k in keys]),
                 logit=np.array([self.rows[k][1] for k in keys]),
                 shape=np.stack([self.rows[k][2] for k in keys]),
                 stats=np.stack([self.rows[k][3] for k in keys]))
        tmp.rename(self.dir / f"chunk-{n:05d}.npz")

    def _forward(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        from pneumoview.core.inputgate import gate_features
        from pneumoview.core.model import predict_activations, prepare_batch

        logits, act = predict_activations(self.loaded, prepare_batch(inputs, self.loaded.info))
        return logits, gate_features(act)

    def compute(self, samples: Sequence[Sample], label: str = "") -> Features:
        """Features of ``samples`` (cached ones read, the rest computed and stored)."""
        todo = [s for s in dict.fromkeys(s.key for s in samples) if s not in self.rows]
        by_key = {s.key: s for s in samples}
        size, version = self.loaded.info.input_size, self.loaded.info.input_contract
        t0, done, pending = time.time(), 0, []
        for start in range(0, len(todo), self.batch_size):
            keys = todo[start:start + self.batch_size]
            inputs, shapes, stats = [], [], []
            for k in keys:
                grey = by_key[k].make()
                inputs.append(contract.model_input(grey, False, size, version))
                shapes.append(np.array(grey.shape[:2], dtype=np.int64))
                st = content_statistics(inputs[-1])
                stats.append(np.array([st[s] for s in STAT_KEYS], dtype=np.float64))
            logits, pooled = self._forward(inputs)
            for i, k in enumerate(keys):
                self.rows[k] = (pooled[i], float(logits[i]), shapes[i], stats[i])
            pending += keys
            done += len(keys)
            if len(pending) >= self.chunk or done == len(todo):
                self._save(pending)
                pending = []
                rate = done / max(1e-6, time.time() - t0)
                log.info("features %s: %d/%d new (%.1f/s)", label, done, len(todo), rate)
        rows = [self.rows[s.key] for s in samples]
        if not rows:
            return Features(np.zeros((0, 1536), np.float32), np.zeros(0), np.zeros((0, 2)),
                            np.zeros((0, 3)))
        return Features(np.stack([r[0] for r in rows]).astype(np.float32),
                        np.array([r[1] for r in rows]), np.stack([r[2] for r in rows]),
                        np.stack([r[3] for r in rows]))
