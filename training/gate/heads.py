"""Fitting the gate on cached features: heads, atypicality, thresholds.

* Heads: softmax classifiers (linear, or one hidden ReLU layer) on standardised pooled
  features, class-balanced cross-entropy with weight decay, full-batch Adam, seeded. The
  standardisation is folded into the first layer, so the runtime multiplies raw features.
* Atypicality: Ledoit-Wolf shrinkage covariance of the training films' features (closed form,
  numpy); the whitening matrix is its inverse square root.
* Thresholds: each head refuses when its passing class's probability is below a bound set on
  validation films (clean and degraded, upright), at their ``quantile`` (default 0.2 %), never
  above 0.5; the atypicality bound is the ``97 % rule``: a distance that the chosen share of
  degraded validation films stays within.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def train_head(x: np.ndarray, y: np.ndarray, n_classes: int, hidden: int = 0,
               weight_decay: float = 1e-3, steps: int = 400, lr: float = 0.01,
               seed: int = 0, sample_weight: np.ndarray | None = None,
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Layers [(weight, bias), ...] mapping raw features to class logits."""
    import torch

    g = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(x, dtype=torch.float32)
    mu, sd = xt.mean(0), xt.std(0).clamp_min(1e-4)
    z = (xt - mu) / sd
    yt = torch.as_tensor(y, dtype=torch.int64)
    counts = torch.bincount(yt, minlength=n_classes).clamp_min(1).float()
    w = (1.0 / counts)[yt] if sample_weight is None else torch.as_tensor(
        sample_weight, dtype=torch.float32)
    w = w / w.sum()
    dims = [x.shape[1], *([hidden] if hidden else []), n_classes]
    layers = []
    for i in range(len(dims) - 1):
        lin = torch.nn.Linear(dims[i], dims[i + 1])
        bound = 1 / np.sqrt(dims[i])
        with torch.no_grad():
            lin.weight.uniform_(-bound, bound, generator=g)
            lin.bias.zero_()
        layers.append(lin)
    net = torch.nn.Sequential(*[m for i, lin in enumerate(layers)
                                for m in ([lin] if i == len(layers) - 1 else
                                          [lin, torch.nn.ReLU()])])
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        loss = (torch.nn.functional.cross_entropy(net(z), yt, reduction="none") * w).sum()
        loss.backward()
        opt.step()
    out = []
    with torch.no_grad():
        for i, lin in enumerate(layers):
            wt, bt = lin.weight.detach().clone(), lin.bias.detach().clone()
            if i == 0:  # fold the standardisation: W (x - mu) / sd + b
                wt = wt / sd
                bt = bt - wt @ mu
            out.append((wt.numpy().astype(np.float32), bt.numpy().astype(np.float32)))
    return out


def head_probabilities(layers: Sequence[tuple[np.ndarray, np.ndarray]],
                       x: np.ndarray) -> np.ndarray:
    from pneumoview.core.inputgate import softmax

    h = np.asarray(x, dtype=np.float32)
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return softmax(h)


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, shrunk covariance, shrinkage) of the rows of ``x`` (Ledoit & Wolf 2004)."""
    x = np.asarray(x, dtype=np.float64)
    n, p = x.shape
    mean = x.mean(axis=0)
    xc = x - mean
    s = xc.T @ xc / n
    m = np.trace(s) / p
    d2 = float(((s - m * np.eye(p)) ** 2).sum()) / p
    b2_bar = (float((np.square((xc * xc).sum(axis=1))).sum()) - n * float((s * s).sum())) \
        / (n * n) / p
    b2 = min(max(b2_bar, 0.0), d2)
    shrink = b2 / d2 if d2 > 0 else 1.0
    return mean, shrink * m * np.eye(p) + (1 - shrink) * s, float(shrink)


def whitening(cov: np.ndarray) -> np.ndarray:
    """The symmetric inverse square root of a covariance matrix."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.clip(vals, vals.max() * 1e-9, None)
    return (vecs / np.sqrt(vals)) @ vecs.T


def mahalanobis(x: np.ndarray, mean: np.ndarray, whiten: np.ndarray) -> np.ndarray:
    z = (np.asarray(x, np.float64) - mean) @ whiten.T
    return np.sqrt((z * z).sum(axis=1) / mean.shape[0])


def pass_threshold(p_pass: np.ndarray, quantile: float, cap: float = 0.5) -> float:
    """The bound under which at most ``quantile`` of these positives' pass probabilities fall
    (never above ``cap``: a head never refuses an image whose passing class is most likely)."""
    if len(p_pass) == 0:
        return cap
    q = float(np.quantile(np.asarray(p_pass, np.float64), quantile, method="lower"))
    return float(min(cap, q))
