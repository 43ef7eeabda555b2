"""The gate's training side: attaching a gate to a model folder, data generators, fitting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pneumoview.core import inputgate as G
from tests.support.model_fixture import make_random_model_dir


def _gate_dir(tmp: Path, backbone_id: str) -> Path:
    from training.gate.attach import write_gate_dir

    rng = np.random.default_rng(0)
    tensors = {"gate.orientation.0.weight": rng.normal(size=(4, 5120)).astype(np.float32),
               "gate.orientation.0.bias": np.zeros(4, np.float32),
               "gate.atypicality.mean": np.zeros(512, np.float32),
               "gate.atypicality.whiten": np.eye(512, dtype=np.float32),
               "gate.atypicality.reference": np.linspace(0, 2, 50).astype(np.float32)}
    gate = {"format": G.GATE_FORMAT, "feature_dim": 5120, "pooled_dim": 512,
            "heads": {"orientation": {"classes": ["upright", "a", "b", "c"], "layers": 1,
                                      "refuse_below": 0.1}},
            "atypicality": {"method": "m", "refuse_above": 3.0, "refuse_above_percentile": 100.0,
                            "n_reference": 50, "bound_rule": "r"}}
    return write_gate_dir(tmp / "gate", tensors, gate, {"backbone_id": backbone_id,
                                                        "command": "python -m training gate"})


def _backbone_id(model_dir: Path) -> str:
    from safetensors.numpy import load_file

    from pneumoview.core.model import read_model_info
    from training.gate.features import network_digest

    info = read_model_info(model_dir)
    return network_digest(load_file(str(info.weights_path)), info)


def test_attached_gate_loads_and_leaves_the_classifier_unchanged(tmp_path: Path) -> None:
    """A weights file with gate.* tensors still loads strictly, gives the same logits, and the
    sha256 in the metadata covers the gate (the old loader refused the extra tensors)."""
    import torch

    from pneumoview.core.model import load_model, predict_activations, predict_logits
    from training.gate.attach import attach_gate

    src = make_random_model_dir(tmp_path / "m")
    gated = attach_gate(src, _gate_dir(tmp_path, _backbone_id(src)), tmp_path / "gated")
    before, after = load_model(src, "cpu"), load_model(gated, "cpu")
    assert before.gate_tensors == {}
    assert set(after.gate_tensors) == {"gate.orientation.0.weight", "gate.orientation.0.bias",
                                       "gate.atypicality.mean", "gate.atypicality.whiten",
                                       "gate.atypicality.reference"}
    x = torch.rand(2, 1, 224, 224)
    np.testing.assert_array_equal(predict_logits(before, x), predict_logits(after, x))
    logits, act = predict_activations(after, x)
    np.testing.assert_allclose(logits, predict_logits(after, x), rtol=1e-5, atol=1e-5)
    assert act.shape == (2, 512, 7, 7)
    meta = json.loads((gated / "metadata.json").read_text())
    assert meta["weights_sha256"] != before.info.weights_sha256
    assert meta["gate"]["format"] == G.GATE_FORMAT
    assert G.InputGate.from_model(meta, after.gate_tensors) is not None
    card = (gated / "MODEL_CARD.md").read_text()
    assert card.count("## Input gate") == 1
    again = attach_gate(gated, tmp_path / "gate")  # re-attaching replaces, never duplicates
    assert (again / "MODEL_CARD.md").read_text().count("## Input gate") == 1


def test_gate_of_another_backbone_is_refused(tmp_path: Path) -> None:
    from pneumoview.core.errors import PneumoViewError
    from training.gate.attach import attach_gate

    src = make_random_model_dir(tmp_path / "m")
    with pytest.raises(PneumoViewError, match="another backbone"):
        attach_gate(src, _gate_dir(tmp_path, "0" * 16), tmp_path / "out")


def test_degradations_are_deterministic_and_keep_a_film_shape() -> None:
    from training.gate.degrade import DEGRADATIONS, degrade

    grey = np.tile(np.linspace(0, 255, 300, dtype=np.float32), (280, 1))
    a, ka = degrade(grey, np.random.default_rng(5))
    b, kb = degrade(grey, np.random.default_rng(5))
    assert ka == kb and np.array_equal(a, b)
    for name, fn in DEGRADATIONS.items():
        out = fn(grey, np.random.default_rng(1))
        assert out.ndim == 2 and min(out.shape) >= 150 and np.isfinite(out).all(), name


def test_pages_and_samples_are_reproducible() -> None:
    from training.gate.pages import PAGES
    from training.gate.samples import orient, page_samples, seed_of

    for _kind, (_content, _group, gen) in PAGES.items():
        p1, p2 = gen(np.random.default_rng(3)), gen(np.random.default_rng(3))
        assert p1.ndim == 2 and np.array_equal(p1, p2)
    s1, s2 = page_samples(1, 0), page_samples(1, 0)
    assert [s.key for s in s1] == [s.key for s in s2]
    assert np.array_equal(s1[3].make(), s2[3].make())
    assert seed_of("a", 1) == seed_of("a", 1) != seed_of("a", 2)
    img = np.arange(6, dtype=np.float32).reshape(2, 3)
    # 90 degrees clockwise: the first row becomes the last column
    assert np.array_equal(orient(img, 1)[:, -1], img[0])


def test_ledoit_wolf_matches_scikit_learn() -> None:
    sk = pytest.importorskip("sklearn.covariance")
    from training.gate.heads import ledoit_wolf

    x = np.random.default_rng(0).normal(size=(80, 30)) @ np.diag(np.linspace(0.5, 3, 30))
    mean, cov, shrink = ledoit_wolf(x)
    ref = sk.LedoitWolf().fit(x)
    np.testing.assert_allclose(cov, ref.covariance_, rtol=1e-6, atol=1e-9)
    assert shrink == pytest.approx(ref.shrinkage_)


def test_heads_learn_a_separable_problem() -> None:
    from training.gate.heads import head_probabilities, pass_threshold, train_head

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (200, 8)), rng.normal(3, 1, (200, 8))]) + 10
    y = np.array([0] * 200 + [1] * 200)
    p = head_probabilities(train_head(x, y, 2, steps=200), x)
    assert (p.argmax(1) == y).mean() > 0.97
    t = pass_threshold(p[y == 0, 0], 0.01)
    assert (p[y == 0, 0] < t).mean() <= 0.01 and t <= 0.5


def test_feature_store_keeps_activations_and_resumes(tmp_path: Path) -> None:
    """A is cached as float16 chunks; a second store reads them back (no forward pass), and
    derived features equal those computed from A directly."""
    from pneumoview.core.model import load_model
    from training.gate.features import FeatureStore, layout_features
    from training.gate.samples import page_samples

    loaded = load_model(make_random_model_dir(tmp_path / "m"), "cpu")
    samples = page_samples(2, 0)[:7]
    store = FeatureStore(loaded, tmp_path / "w", batch_size=3, chunk=4)
    feats = store.compute(samples, "pages")
    assert feats.pooled.shape == (7, G.feature_dim("grid3"))
    assert store.n_chunks == 2  # 4 + 3 samples
    again = FeatureStore(loaded, tmp_path / "w")
    again._forward = None  # type: ignore[assignment]  # a forward pass would fail here
    feats2 = again.compute(samples)
    np.testing.assert_array_equal(feats.pooled, feats2.pooled)
    np.testing.assert_array_equal(feats.logit, feats2.logit)
    act = again.activations([samples[0].key])
    assert act.dtype == np.float32 and act.shape == (1, 512, 7, 7)
    np.testing.assert_allclose(again.features([samples[0].key], layout_features("halves")),
                               G.gate_features(act, "halves"), rtol=1e-6)
    # a chunk cut short (its activations never renamed into place) is computed again
    (tmp_path / "w").joinpath(*store.dir.parts[-2:], "chunk-00001.A.npy").unlink()
    third = FeatureStore(loaded, tmp_path / "w")
    assert samples[-1].key not in third and samples[0].key in third


def test_gate_fit_refuses_when_a_negative_source_is_not_installed(caplog) -> None:
    """Without scikit-image (say) the same command would fit a gate on fewer negatives: the
    fit names the missing package and how to install it, unless told to go on."""
    from training.gate.command import MissingSourcesError, check_sources
    from training.gate.sources import NEGATIVE_SOURCES, BaseImage

    def pic(name: str) -> BaseImage:
        return BaseImage(name, "photo", "photograph", lambda: np.zeros((8, 8), np.float32))

    every = [pic(f"{prefix}x") for prefix, _, _ in NEGATIVE_SOURCES]
    check_sources(every, allow=False)  # all present: nothing to say
    no_skimage = [b for b in every if not b.name.startswith("skimage/")]
    with pytest.raises(MissingSourcesError, match=r"scikit-image.*pip install scikit-image"):
        check_sources(no_skimage, allow=False)
    with caplog.at_level("WARNING", logger="training.gate"):
        check_sources(no_skimage, allow=True)
    assert "scikit-image" in caplog.text
