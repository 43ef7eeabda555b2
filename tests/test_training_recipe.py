"""training/ for model 1.1: precision choice, folds, population operating points, metrics,
input contract pv-input-2 (pure functions, no training)."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoview.core import contract
from training import metrics as M
from training import oppoints
from training.splits import assign_folds

torch = pytest.importorskip("torch")

from training import precision as P  # noqa: E402

ZEN3 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_auto_precision_is_fp32_on_a_cpu_without_native_bf16():
    choice = P.choose("auto", torch.device("cpu"), ZEN3)
    assert choice.dtype == "fp32" and not choice.autocast
    assert "AVX512-BF16/AMX" in choice.reason
    assert choice.record() == {"dtype": "fp32", "requested": "auto", "reason": choice.reason}


def test_auto_precision_is_bf16_with_amx_or_avx512_bf16():
    choice = P.choose("auto", torch.device("cpu"), SAPPHIRE)
    assert choice.dtype == "bf16" and choice.autocast
    assert "avx512_bf16" in choice.reason and "amx_bf16" in choice.reason


def test_explicit_precision_is_honoured_and_unknown_refused():
    assert P.choose("bf16", torch.device("cpu"), ZEN3).dtype == "bf16"
    assert P.choose("fp32", torch.device("cpu"), SAPPHIRE).dtype == "fp32"
    with pytest.raises(ValueError):
        P.choose("fp16", torch.device("cpu"), ZEN3)


def test_folds_keep_patients_together_and_balance_labels():
    rng = np.random.default_rng(3)
    patients = [f"p{i // 2 if i < 60 else i}" for i in range(200)]  # 30 with two images
    labels = [int(rng.random() < 0.45) for _ in patients]
    for i in range(0, 60, 2):
        labels[i + 1] = labels[i]
    folds = assign_folds(patients, labels, 5, seed=0)
    assert folds == assign_folds(patients, labels, 5, seed=0)
    assert folds != assign_folds(patients, labels, 5, seed=1)
    by_patient: dict[str, set[int]] = {}
    for p, f in zip(patients, folds, strict=True):
        by_patient.setdefault(p, set()).add(f)
    assert all(len(v) == 1 for v in by_patient.values())
    f = np.asarray(folds)
    y = np.asarray(labels)
    sizes = [int((f == k).sum()) for k in range(5)]
    assert max(sizes) - min(sizes) <= 3, sizes
    prev = [y[f == k].mean() for k in range(5)]
    assert max(prev) - min(prev) < 0.1, prev


def test_folds_need_enough_groups():
    with pytest.raises(ValueError):
        assign_folds(["a", "a", "b"], [0, 1, 0], 3)
    with pytest.raises(ValueError):
        assign_folds(["a", "b"], [0, 1], 1)


def test_population_operating_points():
    assert oppoints.population_of("nih") == "adult"
    assert oppoints.population_of("kermany_val") == "paediatric"
    assert oppoints.population_of("kermanyx") is None
    rng = np.random.default_rng(0)
    n = 400
    src = ["nih"] * (n // 2) + ["kermany"] * (n // 2)
    y = rng.integers(0, 2, n)
    # the adult scores are shifted down: the same sensitivity needs a lower adult threshold
    p = np.clip(0.25 * y + rng.random(n) * 0.7 - np.r_[np.full(n // 2, 0.2),
                                                      np.zeros(n // 2)], 0, 1)
    pts = oppoints.choose(y, p, src, 0.9, {"adult": "nih out-of-fold"})
    assert set(pts) == {"adult", "paediatric"}
    assert pts["adult"]["threshold"] < pts["paediatric"]["threshold"]
    assert pts["adult"]["age_years"] == [18, None] and "PatientAge" in pts["adult"]["criterion"]
    assert pts["adult"]["chosen_on"] == "nih out-of-fold"
    for pop, s in (("adult", "nih"), ("paediatric", "kermany")):
        m = np.asarray(src) == s
        sens = M.confusion(y[m], p[m], pts[pop]["threshold"])["sensitivity"]
        assert sens >= 0.9
    assert oppoints.unknown_age_threshold(pts) == pts["adult"]["threshold"]
    thr = oppoints.per_image(["nih", "kermany", "other"], pts)
    assert list(thr) == [pts["adult"]["threshold"], pts["paediatric"]["threshold"],
                         pts["adult"]["threshold"]]


def test_confusion_with_one_threshold_per_image():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.5, 0.5, 0.5, 0.5])
    c = M.confusion(y, p, np.array([0.4, 0.6, 0.4, 0.6]))
    assert (c["tp"], c["fn"], c["fp"], c["tn"]) == (1, 1, 1, 1)


def test_patient_bootstrap_is_wider_than_image_bootstrap_for_clustered_scores():
    """Ten copies of each patient's image: resampling images pretends 10x the evidence."""
    rng = np.random.default_rng(1)
    y0 = rng.integers(0, 2, 30)
    s0 = y0 * 0.6 + rng.random(30)
    y, s = np.repeat(y0, 10), np.repeat(s0, 10)
    groups = np.repeat(np.arange(30), 10)
    img = M.bootstrap_ci(y, s, 0.5, 400, seed=0)["auroc"]
    pat = M.bootstrap_ci(y, s, 0.5, 400, seed=0, groups=groups)["auroc"]
    assert (pat["ci_high"] - pat["ci_low"]) > 2 * (img["ci_high"] - img["ci_low"])
    assert pat["value"] == pytest.approx(M.auroc(y, s))


def test_paired_auroc_difference():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    good = y + rng.normal(0, 0.5, 300)
    bad = y + rng.normal(0, 2.0, 300)
    d = M.auroc_difference(y, good, bad, 300)
    assert d["value"] > 0 and d["ci_low"] > 0 and d["p_not_better"] < 0.05
    same = M.auroc_difference(y, good, good, 50)
    assert same["value"] == 0 and same["ci_low"] == same["ci_high"] == 0


def test_pv_input_2_equals_pv_input_1_for_large_images():
    rng = np.random.default_rng(5)
    big = rng.normal(1000, 200, (600, 500)).astype(np.float32)
    one = contract.model_input(big, False)
    np.testing.assert_array_equal(one, contract.model_input(big, False, 224, "pv-input-1"))
    # an image larger than the input is prepared identically (box resize, same percentiles)
    np.testing.assert_array_equal(one, contract.model_input(big, False, 224, "pv-input-2"))
    assert contract.model_input(big, False, 320, "pv-input-2").shape == (320, 320)
    with pytest.raises(ValueError, match="unknown input contract"):
        contract.model_input(big, False, 224, "pv-input-9")


def test_pv_input_2_upsamples_small_images_smoothly():
    """A box 'upscale' replicates pixels unevenly (224 -> 320: rows repeated once or twice);
    pv-input-2 interpolates, so a ramp stays a ramp."""
    ramp = np.tile(np.arange(224, dtype=np.float32), (224, 1))
    one = contract.model_input(ramp, False, 320, "pv-input-1")
    two = contract.model_input(ramp, False, 320, "pv-input-2")
    steps_one = np.unique(np.round(np.diff(one[160]), 5))
    steps_two = np.diff(two[160, 10:-10])
    assert len(steps_one) >= 2 and 0.0 in steps_one  # repeated columns: zero steps
    assert steps_two.min() > 0 and steps_two.max() / steps_two.min() < 1.2
