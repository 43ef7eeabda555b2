"""The content gate's rules, format and decisions (pure numpy; real films where ../shared is)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pneumoview.core import inputgate as G

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# -- rules -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(224, 224), (160, 200), (2048, 2500), (512, 1024)])
def test_film_sizes_pass_geometry(shape: tuple[int, int]) -> None:
    assert G.check_geometry(shape) is None


@pytest.mark.parametrize("shape,kind", [((32, 32), G.GateKind.TOO_SMALL),
                                        ((159, 400), G.GateKind.TOO_SMALL),
                                        ((16, 16), G.GateKind.TOO_SMALL),
                                        ((1024, 256), G.GateKind.EXTREME_ASPECT),
                                        ((300, 900), G.GateKind.EXTREME_ASPECT)])
def test_small_and_strip_images_are_refused(shape: tuple[int, int], kind: G.GateKind) -> None:
    v = G.check_geometry(shape)
    assert v is not None and v.kind is kind
    assert f"{shape[1]} x {shape[0]} px" in v.reason


def _film_like(seed: int = 0, n: int = 224) -> np.ndarray:
    """Two dark lung fields in a bright thorax with rib-like stripes (smooth, structured)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n] / n
    body = np.exp(-((xx - 0.5) / 0.45) ** 4 - ((yy - 0.55) / 0.5) ** 4)
    lungs = sum(np.exp(-((xx - cx) / 0.13) ** 2 - ((yy - 0.45) / 0.25) ** 2)
                for cx in (0.32, 0.68))
    ribs = 0.08 * np.sin(yy * 60 + 3 * xx) * lungs
    img = 0.2 + 0.7 * body - 0.45 * lungs + ribs + rng.normal(0, 0.01, (n, n))
    return ((img - img.min()) / (img.max() - img.min())).astype(np.float32)


def test_structured_image_passes_content_rules() -> None:
    assert G.check_content_rules(_film_like()) is None


def test_blank_gradient_and_noise_are_no_content() -> None:
    n = 224
    blank = np.zeros((n, n), np.float32)
    ramp = np.tile(np.linspace(0, 1, n, dtype=np.float32), (n, 1))
    yy, xx = np.mgrid[0:n, 0:n] / n
    vignette = (1 - np.hypot(xx - 0.5, yy - 0.5)).astype(np.float32)
    noise = np.random.default_rng(0).random((n, n)).astype(np.float32)
    assert G.check_content_rules(blank).reason == "no usable image content (blank)"
    for smooth in (ramp, vignette):
        assert G.check_content_rules(smooth).reason == \
            "no usable image content (uniform or gradient)"
    assert G.check_content_rules(noise).reason == "no usable image content (noise or blank)"


def test_gate_features_keep_layout() -> None:
    """Pooling alone cannot tell a film from its 90-degree turn; the grid cells can."""
    act = np.random.default_rng(1).random((512, 7, 7)).astype(np.float32)
    f = G.gate_features(act)
    turned = G.gate_features(np.rot90(act, -1, axes=(1, 2)))
    assert f.shape == (G.feature_dim("grid3"),) == (5120,)
    np.testing.assert_allclose(f[:512], turned[:512], rtol=1e-5)  # pooled: the same
    cells = f[512:].reshape(3, 3, 512)
    cells_turned = turned[512:].reshape(3, 3, 512)
    # turned 90 degrees clockwise: the top-left cell goes to the top-right
    np.testing.assert_allclose(cells_turned[0, 2], cells[0, 0], rtol=1e-5)
    np.testing.assert_allclose(cells_turned[2, 2], cells[0, 2], rtol=1e-5)
    assert not np.allclose(cells_turned, cells)
    # the cells follow torch's adaptive average pooling (overlapping cells on 7 x 7)
    np.testing.assert_allclose(cells[0, 0], act[:, 0:3, 0:3].mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(cells[1, 2], act[:, 2:5, 4:7].mean(axis=(1, 2)), rtol=1e-5)
    batch = G.gate_features(np.stack([act, act]))
    assert batch.shape == (2, 5120)
    assert G.gate_features(act, "halves").shape == (1536,)
    with pytest.raises(G.GateFormatError):
        G.gate_features(act, "spiral")


def test_grid_means_match_torch_adaptive_pooling() -> None:
    torch = pytest.importorskip("torch")
    for h, w in ((7, 7), (10, 10), (8, 11)):
        act = np.random.default_rng(h * w).random((2, 16, h, w)).astype(np.float32)
        ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(act), 3).numpy()
        ours = G.grid_means(act, 3).reshape(2, 3, 3, 16).transpose(0, 3, 1, 2)
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


# -- format ----------------------------------------------------------------------------------
def _toy_gate(dim: int = 5120, pooled: int = 512) -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    t = {"gate.content.0.weight": rng.normal(size=(2, dim)).astype(np.float32) * 0,
         "gate.content.0.bias": np.array([5.0, 0.0], np.float32),
         "gate.atypicality.mean": np.zeros(pooled, np.float32),
         "gate.atypicality.whiten": np.eye(pooled, dtype=np.float32),
         "gate.atypicality.reference": np.linspace(0.5, 1.5, 100).astype(np.float32)}
    meta = {"gate": {"format": G.GATE_FORMAT, "feature_dim": dim, "pooled_dim": pooled,
                     "heads": {"content": {"classes": ["chest", "photograph"], "layers": 1,
                                           "refuse_below": 0.5,
                                           "reasons": {"photograph": "photo!"}}},
                     "atypicality": {"refuse_above": 2.0}}}
    return meta, t


def test_model_without_gate_has_none() -> None:
    assert G.InputGate.from_model({}, {}) is None


def test_malformed_gates_are_typed_errors() -> None:
    meta, t = _toy_gate()
    G.InputGate.from_model(meta, t)
    for broken in ("gate.content.0.bias", "gate.atypicality.whiten"):
        with pytest.raises(G.GateFormatError):
            G.InputGate.from_model(meta, {k: v for k, v in t.items() if k != broken})
    bad = json.loads(json.dumps(meta))
    bad["gate"]["format"] = "pv-gate-99"
    with pytest.raises(G.GateFormatError):
        G.InputGate.from_model(bad, t)
    nan = dict(t, **{"gate.content.0.bias": np.array([np.nan, 0], np.float32)})
    with pytest.raises(G.GateFormatError):
        G.InputGate.from_model(meta, nan)


def test_atypicality_is_reported_and_refuses_only_beyond_its_bound() -> None:
    meta, t = _toy_gate()
    gate = G.InputGate.from_model(meta, t)
    x = _film_like()
    near = np.zeros((512, 7, 7), np.float32) + 1.0  # distance 1.0: mid-reference
    far = np.zeros((512, 7, 7), np.float32) + 3.0
    v = gate.judge((1024, 1024), x, near)
    assert v.kind is G.GateKind.PASSED and v.atypicality == pytest.approx(1.0)
    assert 40 < v.atypicality_percentile < 60
    v = gate.judge((1024, 1024), x, far)
    assert v.kind is G.GateKind.ATYPICAL and v.atypicality_percentile == 100.0
    assert v.reason.startswith("atypical input: further from the training images than")


def test_a_head_refuses_with_its_reason() -> None:
    meta, t = _toy_gate()
    t["gate.content.0.bias"] = np.array([0.0, 5.0], np.float32)
    v = G.InputGate.from_model(meta, t).judge((1024, 1024), _film_like(),
                                              np.ones((512, 7, 7), np.float32))
    assert v.kind is G.GateKind.NOT_CHEST and v.reason == "photo!"


def _two_head_gate(content_bias: list[float]) -> G.InputGate:
    """A content head with fixed probabilities and an orientation head that always refuses."""
    meta, t = _toy_gate()
    t["gate.content.0.bias"] = np.array(content_bias, np.float32)
    t["gate.orientation.0.weight"] = np.zeros((4, 5120), np.float32)
    t["gate.orientation.0.bias"] = np.array([0.0, 0.0, 5.0, 0.0], np.float32)
    meta["gate"]["heads"]["content"]["refuse_below"] = 0.01
    meta["gate"]["heads"]["orientation"] = {
        "classes": ["upright", "rotated_90_cw", "rotated_180", "rotated_270_cw"], "layers": 1,
        "refuse_below": 0.1, "reasons": {"rotated_180": "upside down"}}
    return G.InputGate.from_model(meta, t)


def test_a_refused_photograph_is_refused_as_a_photograph() -> None:
    """Regression: a grey photograph above the content head's (low) threshold was refused by
    the orientation head as "upside down"; the content head's verdict names the reason when
    it finds a non-chest class more likely than a chest film."""
    act = np.ones((512, 7, 7), np.float32)
    photo_like = _two_head_gate([0.0, 3.0]).judge((1024, 1024), _film_like(), act)
    assert photo_like.probabilities["content"]["chest"] < G.CONTENT_REASON_BELOW
    assert photo_like.kind is G.GateKind.NOT_CHEST and photo_like.reason == "photo!"
    film_like = _two_head_gate([2.0, 0.0]).judge((1024, 1024), _film_like(), act)
    assert film_like.kind is G.GateKind.ROTATED and film_like.reason == "upside down"


def test_a_rotated_film_the_content_head_doubts_is_refused_as_rotated() -> None:
    """Regression: a rotated chest film for which the content head found "photograph"
    slightly more likely than "chest" (without refusing it) was refused as "not a chest
    radiograph"; the reader can act on "upside down", so the orientation reason wins unless
    the content head finds the image clearly unlike a chest film."""
    doubted = _two_head_gate([0.0, 1.0]).judge((1024, 1024), _film_like(),
                                               np.ones((512, 7, 7), np.float32))
    p_chest = doubted.probabilities["content"]["chest"]
    assert G.CONTENT_REASON_BELOW < p_chest < doubted.probabilities["content"]["photograph"]
    assert doubted.kind is G.GateKind.ROTATED and doubted.reason == "upside down"


def test_feature_layout_and_dimension_are_checked() -> None:
    meta, t = _toy_gate()
    assert G.InputGate.from_model(meta, t).layout == "grid3"
    legacy = json.loads(json.dumps(meta))
    legacy["gate"].update(format="pv-gate-1", feature_dim=1536)
    t1 = dict(t, **{"gate.content.0.weight": np.zeros((2, 1536), np.float32)})
    gate = G.InputGate.from_model(legacy, t1)
    assert gate.layout == "halves"
    assert gate.judge((1024, 1024), _film_like(), np.ones((512, 7, 7), np.float32)).kind \
        is G.GateKind.PASSED
    wrong = json.loads(json.dumps(meta))
    wrong["gate"]["feature_dim"] = 1536
    with pytest.raises(G.GateFormatError, match="does not fit"):
        G.InputGate.from_model(wrong, t1)
    unknown = json.loads(json.dumps(meta))
    unknown["gate"]["feature_layout"] = "spiral"
    with pytest.raises(G.GateFormatError, match="layout"):
        G.InputGate.from_model(unknown, t)


def test_inputgate_imports_no_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, pneumoview.core.inputgate; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- the bundled gate on real films (needs ../shared) ------------------------------------------
needs_shared = pytest.mark.skipif(not (SHARED / "kermany").is_dir(),
                                  reason="needs ../shared/data (real chest films)")


@pytest.fixture(scope="module")
def bundled():
    from pneumoview.core.model import load_model

    loaded = load_model(None, "cpu")
    gate = G.InputGate.from_model(loaded.info.raw, loaded.gate_tensors)
    if gate is None:
        pytest.skip("the bundled model has no input gate")
    return loaded, gate


def _verdict(bundled, grey: np.ndarray) -> G.GateVerdict:
    from pneumoview.core import contract
    from pneumoview.core.model import predict_activations, prepare_batch

    loaded, gate = bundled
    x = contract.model_input(grey, False, loaded.info.input_size)
    _logit, act = predict_activations(loaded, prepare_batch([x], loaded.info))
    return gate.judge(grey.shape, x, act[0])


def _kermany(name: str = "NORMAL") -> np.ndarray:
    from pneumoview.core import contract

    path = sorted((SHARED / "kermany" / "val" / name).iterdir())[0]
    return contract.to_grey(contract.load_plain_image(path))


def _nih(i: int = 0) -> np.ndarray:
    from pneumoview.core import contract

    path = sorted((SHARED / "nih" / "images").iterdir())[i]
    return contract.to_grey(contract.load_plain_image(path))


@needs_shared
@pytest.mark.parametrize("which", ["kermany NORMAL", "kermany PNEUMONIA", "nih"])
def test_real_films_pass(bundled, which: str) -> None:
    grey = _nih(3) if which == "nih" else _kermany(which.split()[1])
    v = _verdict(bundled, grey)
    assert not v.refused, v.reason
    assert v.atypicality is not None and 0 <= v.atypicality_percentile <= 100


@needs_shared
def test_dark_film_passes(bundled) -> None:
    """An under-exposed film: values squeezed into the lowest quarter, gamma 1.4."""
    grey = _nih(5)
    dark = 60.0 * np.power(grey / 255.0, 1.4)
    assert not _verdict(bundled, dark).refused


@needs_shared
def test_film_with_large_collimation_border_passes(bundled) -> None:
    """Collimator shutters 12 % in from every side: the field outside is unexposed (bright)."""
    grey = _nih(7).copy()
    h, w = grey.shape
    t, s = int(h * 0.12), int(w * 0.12)
    for region in (np.s_[:t, :], np.s_[h - t:, :], np.s_[:, :s], np.s_[:, w - s:]):
        grey[region] = 250.0
    assert not _verdict(bundled, grey).refused


@needs_shared
def test_film_padded_with_a_very_large_frame(bundled) -> None:
    """A white frame of 20 % on every side (half the picture): pv-gate-1 refused it as
    atypical; pv-gate-2's heads see where the frame is and its atypicality bound keeps it."""
    grey = _nih(7)
    h, w = grey.shape
    framed = np.full((int(h * 1.4), int(w * 1.4)), 255.0, np.float32)
    framed[int(h * 0.2):int(h * 0.2) + h, int(w * 0.2):int(w * 0.2) + w] = grey
    assert not _verdict(bundled, framed).refused


@needs_shared
def test_paediatric_film_passes(bundled) -> None:
    assert not _verdict(bundled, _kermany("PNEUMONIA")).refused


@needs_shared
def test_film_with_burned_in_text_and_markers_passes(bundled) -> None:
    from PIL import Image, ImageDraw

    from training.gate.draw import draw_arrow, font

    grey = _nih(9)
    img = Image.fromarray(grey.astype(np.uint8))
    d = ImageDraw.Draw(img)
    d.text((20, 20), "L  AP SUPINE PORTABLE", fill=255, font=font(0, 28))
    d.text((400, 470), "R", fill=255, font=font(3, 36))
    draw_arrow(d, (380, 120), (300, 200), 255, 3)
    assert not _verdict(bundled, np.asarray(img, np.float32)).refused


@needs_shared
def test_rotated_and_inverted_are_refused(bundled) -> None:
    grey = _nih(3)
    # a film turned 90 degrees may be named a lateral view by the content head (README, known
    # limits): refused either way
    for k in (-1, 2):
        turned = _verdict(bundled, np.rot90(grey, k).copy())
        assert turned.kind is G.GateKind.ROTATED or \
            turned.reason.startswith("looks like a lateral"), turned.reason
    # an inverted film is refused; some (22 of the 250 of the test set) are named "not a
    # chest radiograph" by the content head instead (README, known limits)
    assert _verdict(bundled, 255.0 - grey).kind in (G.GateKind.INVERTED, G.GateKind.NOT_CHEST)


def test_a_photograph_is_refused(bundled) -> None:
    skimage = pytest.importorskip("skimage")  # its sample photograph (not a test dependency)
    camera = Path(skimage.__file__).parent / "data" / "camera.png"
    from pneumoview.core import contract

    photo = contract.to_grey(contract.load_plain_image(camera))
    assert _verdict(bundled, photo).refused  # the reason may name another kind (model card)


@needs_shared
def test_shared_chest_dicoms_pass(bundled) -> None:
    from pneumoview.core import contract, dicomio
    from pneumoview.core.model import predict_activations, prepare_batch

    loaded, gate = bundled
    files = sorted((SHARED / "dicom").glob("*.dcm"))
    assert len(files) == 4
    for path in files:
        img = dicomio.decode(path)
        x = contract.model_input(img.values, img.invert, loaded.info.input_size)
        _l, act = predict_activations(loaded, prepare_batch([x], loaded.info))
        v = gate.judge(img.shape, x, act[0])
        assert not v.refused, (path.name, v.reason)
