"""Display conformance on real files (issue 14): colour, palettes, Enhanced multi-frame, VOI LUTs,
overlays, codec fallbacks and the messages for damaged files.

Expected pixels come from dcmtk (and GDCM where dcmtk cannot read), computed once by
``tests/fixtures/make_dcmtk_display.py`` and checked in as strided samples
(``tests/fixtures/dcmtk_display.npz``), or from pydicom's own functions where they implement
the standard. Pure numpy: no Qt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from pneumoview.cli import main as cli_main
from pneumoview.commands import render
from pneumoview.core import codecs, colour, dicomio, gate, overlays, windowing
from pneumoview.core.errors import PneumoViewError
from tests.support.dicom_factory import sample_file, save
from tests.support.display_probes import (
    big_endian_copy,
    big_endian_ow_lut,
    half_range_lut,
    little_endian_ow_lut,
    without_voi,
)
from tests.support.shared_data import require

FIXTURES = np.load(Path(__file__).parent / "fixtures" / "dcmtk_display.npz")
PROBES = {"voi_half_range_lut": half_range_lut, "voi_big_endian_ow_lut": big_endian_ow_lut}


def _file(name: str) -> Path:
    path = sample_file(name)
    if path is None:
        pytest.skip(f"pydicom(-data) test file {name} is not installed")
    return Path(path)


def _render(path: Path, out: Path, *args: str) -> np.ndarray:
    assert cli_main(["render", str(path), "--output", str(out), *args]) == 0
    return np.asarray(Image.open(out))


def _case_source(case: str, tmp_path: Path) -> tuple[Path, int, bool]:
    """(file, frame, overlays) of a fixture case (the generator's own table)."""
    from fixtures.make_dcmtk_display import CASES

    source, frame, _voi, overlays_on, _gdcm = CASES[case]
    path = source(tmp_path / f"{case}.dcm") if callable(source) else _file(source)
    return Path(path), frame, overlays_on


def _assert_matches_fixture(case: str, ours: np.ndarray) -> None:
    ref, shape, s = (FIXTURES[case], tuple(FIXTURES[f"{case}__shape"]),
                     int(FIXTURES[f"{case}__stride"]))
    assert ours.shape == shape, f"{case}: shape {ours.shape}, dcmtk {shape}"
    diff = np.abs(ours[::s, ::s].astype(int) - ref.astype(int))
    assert diff.max() <= 1, f"{case}: max diff {diff.max()} from dcmtk, mean {diff.mean():.2f}"


DEFAULT_CASES = sorted(c for c in FIXTURES.files if "__" not in c)


@pytest.mark.parametrize("case", DEFAULT_CASES)
def test_default_render_matches_dcmtk(case: str, tmp_path: Path) -> None:
    """The default display (first declared window or VOI LUT; colour as stored) equals dcmtk's
    within one grey level: palettes, 16-bit RGB, Enhanced CT, JPEG 2000, VOI LUT probes, and
    overlays drawn only with --overlays."""
    path, frame, overlays_on = _case_source(case, tmp_path)
    extra = ["--overlays"] if overlays_on else []
    ours = _render(path, tmp_path / "ours.png", "--frame", str(frame), *extra)
    _assert_matches_fixture(case, ours)


# -- 1. PALETTE COLOR --------------------------------------------------------------------------

def test_big_endian_palette_renders_equal_to_its_little_endian_twin(tmp_path: Path) -> None:
    """pydicom 3.0.2's apply_color_lut reads a big-endian OW palette in native byte order;
    OBXXXX1A_expb must still show exactly what OBXXXX1A shows (as in dcmtk)."""
    little = _render(_file("OBXXXX1A.dcm"), tmp_path / "le.png")
    big = _render(_file("OBXXXX1A_expb.dcm"), tmp_path / "be.png")
    assert little.ndim == 3 and little.shape[2] == 3
    np.testing.assert_array_equal(big, little)
    two_frame = _render(_file("OBXXXX1A_expb_2frame.dcm"), tmp_path / "be2.png", "--frame", "1")
    assert two_frame.shape == little.shape


def test_palette_values_are_the_palette_lookup(tmp_path: Path) -> None:
    """Decoded values are pydicom's apply_color_lut of the indices (a little-endian file, where
    pydicom is right), not the grey indices; the PNG is RGB."""
    path = _file("examples_palette.dcm")
    decoded = dicomio.decode(path)
    ds = pydicom.dcmread(path)
    expected = pydicom.pixels.apply_color_lut(pydicom.pixels.pixel_array(ds), ds)
    assert decoded.is_colour and decoded.colour_bits == 16
    np.testing.assert_array_equal(decoded.values, expected.astype(np.float32))
    _render(path, tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as img:
        assert img.mode == "RGB"


def test_segmented_big_endian_palette_equals_little_endian(tmp_path: Path) -> None:
    little = dicomio.decode(_file("gdcm-US-ALOKA-16.dcm"))
    big = dicomio.decode(_file("gdcm-US-ALOKA-16_big.dcm"))
    np.testing.assert_array_equal(big.values, little.values)


def test_to_display8_is_dcmtk_depth_reduction() -> None:
    """dcmtk shifts deeper samples right and scales shallower ones up (DiColorOutputPixel)."""
    v = np.array([0, 255, 256, 65280, 65535], dtype=np.float32)
    np.testing.assert_array_equal(colour.to_display8(v, 16), [0, 0, 1, 255, 255])
    np.testing.assert_array_equal(colour.to_display8(np.array([0, 15.0]), 4), [0, 255])
    np.testing.assert_array_equal(colour.to_display8(np.array([0, 200.0]), 8), [0, 200])


# -- 2. 16- and 32-bit RGB ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["SC_rgb_32bit.dcm", "SC_rgb_expb_32bit_2frame.dcm",
                                  "SC_rgb_rle_32bit.dcm", "SC_rgb_16bit.dcm"])
def test_deep_rgb_is_scaled_not_clipped(name: str, tmp_path: Path) -> None:
    """0..2^BitsStored-1 maps linearly onto 0..255 (dcmtk's shift; 32-bit files, which dcmtk
    3.6.7 refuses, against pydicom's stored values shifted by 24)."""
    path = _file(name)
    ours = _render(path, tmp_path / "rgb.png")
    ds = pydicom.dcmread(path)
    stored = pydicom.pixels.pixel_array(ds, index=0).astype(np.uint64)
    expected = (stored >> np.uint64(int(ds.BitsStored) - 8)).astype(np.uint8)
    np.testing.assert_array_equal(ours, expected)
    assert len(np.unique(ours)) > 2  # the old render held only 0 and 255


def test_render_prints_no_window_for_colour(tmp_path: Path, capsys: pytest.CaptureFixture) \
        -> None:
    _render(_file("SC_rgb_16bit.dcm"), tmp_path / "c.png", "--center", "10", "--width", "5")
    out = capsys.readouterr().out
    assert "C=" not in out and "no window" in out and "do not apply" in out


def test_colour_files_stay_unscored() -> None:
    """The validity gate refuses palette and true-colour images whatever their values are now."""
    for name in ("OBXXXX1A.dcm", "OT-PAL-8-face.dcm", "SC_rgb_16bit.dcm", "SC_rgb_32bit.dcm",
                 "GDCMJ2K_TextGBR.dcm"):
        decoded = dicomio.decode(_file(name))
        reason = gate.not_scorable_reason(decoded.header, 1, decoded.values)
        assert reason is not None, name  # US files are refused for their modality first
        decoded.header.Modality = "OT"
        assert "colour" in gate.not_scorable_reason(decoded.header, 1, decoded.values), name


# -- 3. Enhanced multi-frame functional groups -------------------------------------------------

def test_enhanced_ct_reads_rescale_and_window_from_functional_groups() -> None:
    path = _file("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    for frame in (0, 1):
        decoded = dicomio.decode(path, frame)
        raw = pydicom.pixels.pixel_array(ds, index=frame).astype(np.float32)
        np.testing.assert_array_equal(decoded.values, raw - 1024)  # HU, not raw values
        window = decoded.windows[0]
        assert (window.center, window.width) == (49, 102)
        assert windowing.default_window(decoded.values, decoded.windows) == window


def test_per_frame_functional_group_wins_over_shared(tmp_path: Path) -> None:
    """PS3.3 C.7.6.16: a frame's own Pixel Value Transformation / Frame VOI LUT item applies
    to that frame; the others keep the shared one."""
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(_file("eCT_Supplemental.dcm"))
    pvt, voi = Dataset(), Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 2, -100, "US"
    voi.WindowCenter, voi.WindowWidth, voi.WindowCenterWidthExplanation = 300, 600, "FRAME 2"
    ds.PerFrameFunctionalGroupsSequence[1].PixelValueTransformationSequence = [pvt]
    ds.PerFrameFunctionalGroupsSequence[1].FrameVOILUTSequence = [voi]
    path = save(ds, tmp_path / "per_frame.dcm")
    raw = pydicom.pixels.pixel_array(ds, index=1).astype(np.float32)
    first, second = dicomio.decode(path, 0), dicomio.decode(path, 1)
    np.testing.assert_array_equal(second.values, raw * 2 - 100)
    assert second.windows[0].name == "FRAME 2" and first.windows[0].center == 49
    assert first.values.min() == -1024


# -- 4. JPEG 2000: every plugin ----------------------------------------------------------------

def test_every_plugin_is_tried_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """When all fail, the one-line message names each plugin tried, gdcm last."""
    path = _file("GDCMJ2K_TextGBR.dcm")
    ds = dicomio.read_dataset(path)
    order = codecs.plugin_order(ds)
    assert len(order) >= 2 and order[-1] == "gdcm"
    called: list[str] = []

    def fail(*_args: object, decoding_plugin: str = "", **_kw: object) -> None:
        called.append(decoding_plugin)
        raise RuntimeError(f"{decoding_plugin} refuses\nsecond line")

    monkeypatch.setattr(pydicom.pixels, "pixel_array", fail)
    with pytest.raises(PneumoViewError) as err:
        dicomio.decode(path)
    assert called == order
    message = str(err.value)
    assert "\n" not in message and all(f"{p}: RuntimeError: {p} refuses" in message
                                       for p in order)


def test_gdcm_is_not_tried_on_a_frame_whose_size_disagrees(tmp_path: Path) -> None:
    """gdcm aborts the process on such a frame (fuzzer finding): the size check keeps it out,
    and lets it in for a well-formed file."""
    ds = dicomio.read_dataset(_file("GDCMJ2K_TextGBR.dcm"))
    assert codecs.codestream_matches(ds, 0)
    ds.Columns = 65535
    assert not codecs.codestream_matches(ds, 0)
    jls = dicomio.read_dataset(_file("JPEGLSNearLossless_08.dcm"))
    assert codecs.codestream_matches(jls, 0)
    jls.Rows = 7
    assert not codecs.codestream_matches(jls, 0)


# -- 5./6. VOI LUT output range and byte order ------------------------------------------------

def test_voi_lut_follows_its_descriptor_range_with_a_stretched_option(tmp_path: Path) -> None:
    decoded = dicomio.decode(half_range_lut(tmp_path / "half.dcm"))
    shown = windowing.apply_window(decoded.values, decoded.windows[0])
    assert shown.max() == 127  # half of the 16-bit range: half brightness (was 255)
    options = windowing.presets(decoded.values, decoded.windows, decoded.modality)
    stretch = [w for w in options if w.name.endswith("(stretched)")]
    assert len(stretch) == 1 and windowing.apply_window(decoded.values, stretch[0]).max() == 255
    full = dicomio.decode(_file("vlut_04.dcm"))  # a table using its whole range: no stretch
    assert not [w for w in windowing.presets(full.values, full.windows) if "stretch" in w.name]


def test_big_endian_ow_voi_lut_equals_little_endian_twin(tmp_path: Path) -> None:
    little = _render(little_endian_ow_lut(tmp_path / "le.dcm"), tmp_path / "le.png")
    big = _render(big_endian_ow_lut(tmp_path / "be.dcm"), tmp_path / "be.png")
    np.testing.assert_array_equal(big, little)


# -- 7. Overlays ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["MR-SIEMENS-DICOM-WithOverlays.dcm", "examples_overlay.dcm"])
def test_overlay_planes_are_pydicoms_overlay_array(name: str) -> None:
    path = _file(name)
    decoded = dicomio.decode(path)
    ds = pydicom.dcmread(path)
    assert len(decoded.overlays) == 1 and decoded.overlays[0].is_graphics
    np.testing.assert_array_equal(decoded.overlays[0].mask, ds.overlay_array(0x6000) > 0)


def test_overlays_drawn_only_with_the_option(tmp_path: Path) -> None:
    path = _file("MR-SIEMENS-DICOM-WithOverlays.dcm")
    plain = _render(path, tmp_path / "plain.png")
    drawn = _render(path, tmp_path / "drawn.png", "--overlays")
    mask = dicomio.decode(path).overlays[0].mask
    assert (drawn[mask] == 255).all() and (plain[mask] != 255).any()
    np.testing.assert_array_equal(drawn[~mask], plain[~mask])
    _assert_matches_fixture("overlay_MR-SIEMENS_off", plain)


def test_big_endian_overlay_equals_little_endian(tmp_path: Path) -> None:
    path = _file("examples_overlay.dcm")
    big = big_endian_copy(pydicom.dcmread(path), tmp_path / "be.dcm")
    le_mask = dicomio.decode(path).overlays[0].mask
    be_mask = dicomio.decode(big).overlays[0].mask
    assert le_mask.any()
    np.testing.assert_array_equal(be_mask, le_mask)


def test_roi_overlay_is_an_outline_and_frames_follow_the_frame_origin() -> None:
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    roi = overlays.Overlay(0x6000, "R", "roi", mask)
    assert roi.drawn.sum() == 12 and not roi.drawn[2:4, 2:4].any()
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000015, "IS", 2)
    ds.add_new(0x60000051, "US", 2)  # overlay frames 1-2 belong to image frames 2-3
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000050, "SS", [2, 3])
    ds.add_new(0x60003000, "OW", bytes([0xFF, 0x00, 0x00, 0x01]))
    assert overlays.frame_overlays(ds, 0, (4, 12)) == ()
    first = overlays.frame_overlays(ds, 1, (4, 12))[0].mask
    assert first[1, 2:10].all() and first.sum() == 8
    second = overlays.frame_overlays(ds, 2, (4, 12))[0].mask
    assert second.sum() == 1 and second[2, 2]


# -- 8. Messages --------------------------------------------------------------------------------

def _message(path: Path) -> str:
    with pytest.raises(PneumoViewError) as err:
        dicomio.decode(path)
    assert "\n" not in str(err.value)
    return err.value.reason


def test_invalid_number_of_frames_is_named() -> None:
    assert "invalid NumberOfFrames value '1A'" in _message(_file("badVR.dcm"))


def test_truncated_enhanced_mr_is_not_called_a_non_image() -> None:
    reason = _message(_file("emri_small_jpeg_2k_lossless_too_short.dcm"))
    assert "pixel data is cut short" in reason and "Rows/Columns" not in reason


def test_truncated_file_says_its_pixel_data_is_short(tmp_path: Path) -> None:
    data = _file("MR_small_RLE.dcm").read_bytes()
    rle = tmp_path / "rle.dcm"
    rle.write_bytes(data[: len(data) * 3 // 4])
    assert "pixel data is cut short" in _message(rle)
    j2k = tmp_path / "j2k.dcm"
    header_end = pydicom.dcmread(_file("JPEG2000.dcm"))["PixelData"].file_tell
    j2k.write_bytes(_file("JPEG2000.dcm").read_bytes()[: header_end - 12])
    assert _message(j2k) == "has no pixel data"  # the batch adds "probably truncated"


# -- 9. 12-bit JPEG Extended ----------------------------------------------------------------------

def test_12bit_jpeg_extended_message_names_the_optional_plugin() -> None:
    reason = _message(_file("JPGExtended.dcm"))
    assert "pylibjpeg-libjpeg" in reason and "GPL" in reason and "yourself" in reason


def test_12bit_jpeg_extended_decodes_once_the_plugin_is_installed(monkeypatch) -> None:
    """Simulated install (the GPL plugin is never a dependency): libjpeg importable and a
    pylibjpeg decoder available to pydicom for the syntax; the app must use it."""
    import importlib.util

    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import JPEGExtended12Bit

    path = _file("JPGExtended.dcm")
    ds = pydicom.dcmread(path)
    decoder = get_decoder(JPEGExtended12Bit)
    calls: list[int] = []

    def fake_libjpeg(src: bytes, runner: object) -> bytearray:
        calls.append(len(src))
        return bytearray(int(ds.Rows) * int(ds.Columns) * 2)

    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return object() if name == "libjpeg" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setitem(decoder._available, "pylibjpeg", fake_libjpeg)
    decoded = dicomio.decode(path)
    assert calls and decoded.shape == (int(ds.Rows), int(ds.Columns))


# -- default window of an 8-bit film without VOI data -------------------------------------------

def test_8bit_image_without_voi_shows_its_stored_values(tmp_path: Path) -> None:
    """No VOI: identity (PS3.4), as dcmtk shows it; the PNG holds the stored values."""
    path = without_voi("vlut_04.dcm", tmp_path / "novoi.dcm")
    decoded = dicomio.decode(path)
    assert not decoded.windows and decoded.identity is not None
    window = render.choose_window(decoded)
    assert window.name == windowing.IDENTITY and (window.center, window.width) == (128, 256)
    stored = pydicom.pixels.pixel_array(pydicom.dcmread(path))
    np.testing.assert_array_equal(_render(path, tmp_path / "id.png"), stored)


def test_deeper_image_without_voi_keeps_auto() -> None:
    decoded = dicomio.decode(_file("MR_small.dcm"))
    assert decoded.identity is None
    no_voi = windowing.default_window(decoded.values, (), decoded.identity)
    assert no_voi.name == "Auto"


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.shared_data("dicom", n))
    for n in ("nhsx_nih_cxr.dcm", "txv_siim_cxr.dcm")])
def test_shared_8bit_chest_films_show_as_stored(name: str, tmp_path: Path) -> None:
    path = require("dicom", name)
    stored = pydicom.pixels.pixel_array(pydicom.dcmread(path))
    np.testing.assert_array_equal(_render(path, tmp_path / "film.png"), stored)


def test_the_fast_plugin_goes_first_and_decodes_the_same_values(tmp_path: Path) -> None:
    """pylibjpeg (RLE, OpenJPEG) before pydicom's numpy RLE and Pillow, gdcm still last; and
    every plugin gives the same stored values for the lossless files."""
    from pydicom.uid import JPEG2000Lossless, RLELossless

    from tests.support.dicom_factory import make_dataset

    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 4096, (300, 260), dtype=np.uint16)
    for syntax in (RLELossless, JPEG2000Lossless):
        ds = make_dataset(pixels, bits_stored=12)
        ds.compress(syntax)
        path = save(ds, tmp_path / f"{syntax.name.replace(' ', '_')}.dcm")
        full = dicomio.read_dataset(path)
        order = codecs.plugin_order(full)
        if "pylibjpeg" not in order:
            pytest.skip("pylibjpeg's plugins are not installed")
        assert order[0] == "pylibjpeg"
        assert "gdcm" not in order or order[-1] == "gdcm"
        for plugin in order:
            got = pydicom.pixels.pixel_array(full, decoding_plugin=plugin)
            np.testing.assert_array_equal(got, pixels)
        np.testing.assert_array_equal(codecs.decode_frame(full, 0), pixels)
