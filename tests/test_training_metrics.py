"""training/metrics.py: AUROC, thresholds, temperature, calibration error, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from training import metrics as M


def _brute_auroc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return gt / (len(pos) * len(neg))


def test_auroc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(2, 50))
        y = rng.integers(0, 2, n)
        s = rng.integers(0, 6, n).astype(float)
        if y.min() == y.max():
            assert np.isnan(M.auroc(y, s))
            continue
        assert M.auroc(y, s) == pytest.approx(_brute_auroc(y, s), abs=1e-12)


def test_threshold_reaches_target_sensitivity():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    for target in (0.8, 0.9, 0.95):
        t = M.threshold_for_sensitivity(y, p, target)
        sens = M.confusion(y, p, t)["sensitivity"]
        assert sens >= target
        # the highest such threshold: any higher one falls short
        higher = p[(y == 1) & (p > t)].min()
        assert M.confusion(y, p, higher)["sensitivity"] < target


def test_fit_temperature_recovers_scale():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 3, 20000)
    y = (rng.random(20000) < M.sigmoid(z)).astype(int)
    t = M.fit_temperature(y, z * 2.5)  # over-confident logits
    assert t == pytest.approx(2.5, rel=0.06)
    assert M.nll(y, z * 2.5, t) < M.nll(y, z * 2.5, 1.0)


def test_ece_and_confusion():
    y = np.array([0, 0, 1, 1])
    assert M.expected_calibration_error(y, np.array([0.0, 0.0, 1.0, 1.0])) == 0.0
    assert M.expected_calibration_error(y, np.array([1.0, 1.0, 0.0, 0.0])) == 1.0
    c = M.confusion(y, np.array([0.1, 0.6, 0.7, 0.2]), 0.5)
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (1, 1, 1, 1)
    assert c["sensitivity"] == 0.5 and c["specificity"] == 0.5


def test_bootstrap_interval_brackets_point():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.4 * y + rng.random(300) * 0.6, 0, 1)
    ci = M.bootstrap_ci(y, p, 0.5, n_boot=300, seed=0)
    for k, v in ci.items():
        assert v["ci_low"] <= v["value"] <= v["ci_high"], k
    assert ci["auroc"]["ci_high"] - ci["auroc"]["ci_low"] < 0.15
