"""Decoding on real files and on variants built from them: every display-relevant path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from pneumoview.core import contract, dicomio, windowing
from pneumoview.core.errors import PneumoViewError
from tests.support.dicom_factory import (
    make_dataset,
    monochrome1_twin,
    reencode,
    rescaled_12bit_twin,
    sample_file,
    save,
)
from tests.support.shared_data import require


def _need(name: str) -> str:
    path = sample_file(name)
    if path is None:
        pytest.skip(f"pydicom-data file {name} is not installed (pip install pydicom-data)")
    return path


@pytest.mark.shared_data("dicom")
@pytest.mark.parametrize("name", ["pydicomdata_RG1_UNCI.dcm", "pydicomdata_RG1_J2KR.dcm",
                                  "txv_siim_cxr.dcm", "nhsx_nih_cxr.dcm"])
def test_shared_chest_files_decode(name: str) -> None:
    decoded = dicomio.decode(require("dicom", name))
    assert decoded.values.dtype == np.float32
    assert decoded.values.ndim == 2 and min(decoded.shape) >= 1024
    assert np.ptp(decoded.values) > 100
    if "RG1" in name:
        assert decoded.photometric == "MONOCHROME1" and decoded.invert
        assert decoded.windows[0].center == 15000 and decoded.windows[0].width == 30000
    else:
        assert not decoded.invert


def test_jpeg2000_lossless_equals_uncompressed_original() -> None:
    j2k = dicomio.decode(_need("RG1_J2KR.dcm"))
    original = dicomio.decode(_need("RG1_UNCR.dcm"))
    np.testing.assert_array_equal(j2k.values, original.values)


@pytest.mark.parametrize(("compressed", "original"), [
    ("MR_small_RLE.dcm", "MR_small.dcm"),
    ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),
    ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm"),
    ("SC_rgb_rle.dcm", "SC_rgb.dcm"),
])
def test_compressed_samples_equal_their_originals(compressed: str, original: str) -> None:
    a = dicomio.decode(_need(compressed))
    b = dicomio.decode(_need(original))
    np.testing.assert_array_equal(a.values, b.values)


def test_multiframe_frames_and_bounds() -> None:
    path = _need("emri_small.dcm")
    first = dicomio.decode(path, frame=0)
    last = dicomio.decode(path, frame=first.n_frames - 1)
    assert first.n_frames == 10 and first.values.shape == (64, 64)
    assert not np.array_equal(first.values, last.values)
    full = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(last.values, full[-1].astype(np.float32))
    with pytest.raises(PneumoViewError, match="frame 10 does not exist"):
        dicomio.decode(path, frame=10)


def test_colour_ybr_is_converted_to_rgb() -> None:
    ybr = dicomio.decode(_need("SC_ybr_full_422_uncompressed.dcm"))
    rgb = dicomio.decode(_need("SC_rgb.dcm"))
    assert ybr.is_colour and ybr.values.shape == (100, 100, 3)
    # lossy chroma subsampling: colours close, not equal
    assert np.abs(ybr.values - rgb.values).mean() < 8


def test_ct_rescale_to_hounsfield_and_ct_presets() -> None:
    decoded = dicomio.decode(_need("CT_small.dcm"))
    raw = pydicom.dcmread(_need("CT_small.dcm"))
    expected = raw.pixel_array * float(raw.RescaleSlope) + float(raw.RescaleIntercept)
    np.testing.assert_allclose(decoded.values, expected)
    names = [w.name for w in windowing.presets(decoded.values, decoded.windows, "CT")]
    assert "Lung" in names
    xr = [w.name for w in windowing.presets(decoded.values, decoded.windows, "CR")]
    assert "Lung" not in xr and "Full range" in xr


@pytest.fixture(scope="module")
def chest8(shared_data: Path | None) -> np.ndarray:
    """A real 8-bit chest radiograph (or a real CR reduced to 8 bits when shared data is absent)."""
    real = shared_data / "dicom" / "nhsx_nih_cxr.dcm" if shared_data else None
    if real is not None and real.is_file():
        return pydicom.dcmread(real).pixel_array.astype(np.uint8)
    arr = pydicom.dcmread(_need("RG1_UNCR.dcm")).pixel_array
    return (arr >> 7).astype(np.uint8)[:1024, :1024]


def test_monochrome1_twin_displays_and_scores_the_same(tmp_path: Path, chest8: np.ndarray) -> None:
    arr = chest8.astype(np.uint16) * 64  # 14-bit range, MONOCHROME2
    original = make_dataset(arr, bits_stored=14, WindowCenter=8000, WindowWidth=12000)
    a = dicomio.decode(save(original, tmp_path / "m2.dcm"))
    b = dicomio.decode(save(monochrome1_twin(original), tmp_path / "m1.dcm"))
    assert b.invert and not a.invert
    shown_a = windowing.apply_window(a.values, a.windows[0], a.invert)
    shown_b = windowing.apply_window(b.values, b.windows[0], b.invert)
    assert np.abs(shown_a.astype(int) - shown_b.astype(int)).max() <= 1
    np.testing.assert_allclose(contract.model_input(a.values, a.invert),
                               contract.model_input(b.values, b.invert), atol=1e-5)


def test_presentation_lut_inverse_inverts_once(tmp_path: Path, chest8: np.ndarray) -> None:
    arr = chest8[:64, :64]
    m2_inverse = make_dataset(arr, PresentationLUTShape="INVERSE")
    m1_inverse = make_dataset(arr, photometric="MONOCHROME1", PresentationLUTShape="INVERSE")
    m1_identity = make_dataset(arr, photometric="MONOCHROME1", PresentationLUTShape="IDENTITY")
    assert dicomio.decode(save(m2_inverse, tmp_path / "a.dcm")).invert
    assert dicomio.decode(save(m1_inverse, tmp_path / "b.dcm")).invert
    assert dicomio.decode(save(m1_identity, tmp_path / "c.dcm")).invert
    assert not dicomio.decode(save(make_dataset(arr), tmp_path / "d.dcm")).invert


def test_12bit_rescaled_twin_has_identical_modality_values(tmp_path: Path,
                                                           chest8: np.ndarray) -> None:
    arr = chest8
    a = dicomio.decode(save(make_dataset(arr), tmp_path / "8.dcm"))
    b = dicomio.decode(save(rescaled_12bit_twin(arr), tmp_path / "12.dcm"))
    np.testing.assert_array_equal(a.values, b.values)


def test_signed_data_with_rescale(tmp_path: Path) -> None:
    arr = np.array([[-2000, -1], [0, 2047]], dtype=np.int16)
    ds = make_dataset(arr, signed=True, bits_stored=12, RescaleSlope=2, RescaleIntercept=10)
    decoded = dicomio.decode(save(ds, tmp_path / "s.dcm"))
    np.testing.assert_array_equal(decoded.values, arr.astype(np.float32) * 2 + 10)


def test_modality_lut_sequence(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset

    arr = np.array([[0, 1], [2, 3]], dtype=np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 16]
    item.ModalityLUTType = "US"
    item.LUTData = np.array([100, 200, 300, 400], "<u2").tobytes()
    ds = make_dataset(arr, ModalityLUTSequence=[item])
    decoded = dicomio.decode(save(ds, tmp_path / "mlut.dcm"))
    np.testing.assert_array_equal(decoded.values, [[100, 200], [300, 400]])


def test_multi_valued_windows_become_named_presets(tmp_path: Path, chest8: np.ndarray) -> None:
    ds = make_dataset(chest8[:32, :32], WindowCenter=[100, 128], WindowWidth=[50, 256],
                      WindowCenterWidthExplanation=["Lungs", "Standard"])
    decoded = dicomio.decode(save(ds, tmp_path / "w.dcm"))
    assert [(w.name, w.center, w.width) for w in decoded.windows] == [
        ("Lungs", 100, 50), ("Standard", 128, 256)]
    names = [w.name for w in windowing.presets(decoded.values, decoded.windows, "DX")]
    assert names[:2] == ["Lungs", "Standard"] and "Auto" in names


@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_voi_lut_function_is_read(tmp_path: Path, function: str, chest8: np.ndarray) -> None:
    ds = make_dataset(chest8[:32, :32], WindowCenter=128, WindowWidth=100,
                      VOILUTFunction=function)
    decoded = dicomio.decode(save(ds, tmp_path / "f.dcm"))
    assert decoded.windows[0].function == function


def test_voi_lut_sequence_window(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset

    arr = np.array([[0, 1], [2, 3]], dtype=np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 8]
    item.LUTData = np.array([0, 10, 20, 255], "<u2").tobytes()
    item.LUTExplanation = "Curve"
    decoded = dicomio.decode(save(make_dataset(arr, VOILUTSequence=[item]), tmp_path / "v.dcm"))
    window = decoded.windows[0]
    assert window.name == "Curve" and window.lut is not None
    np.testing.assert_array_equal(windowing.apply_window(decoded.values, window),
                                  [[0, 10], [20, 255]])


def test_size_guard_refuses_before_decoding(tmp_path: Path) -> None:
    ds = make_dataset(np.zeros((4, 4), np.uint16))
    ds.Rows, ds.Columns = 60000, 60000  # declares 6.7 GiB; the data is only 32 bytes
    path = save(ds, tmp_path / "huge.dcm")
    with pytest.raises(PneumoViewError, match="too large to open safely") as info:
        dicomio.decode(path)
    assert str(path) in str(info.value)


def test_broken_and_non_dicom_files(tmp_path: Path, chest8: np.ndarray) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, not an image\n" * 20)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    good = save(make_dataset(chest8[:256, :256]), tmp_path / "good.dcm")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:5000])
    nopix = make_dataset(chest8[:8, :8])
    del nopix.PixelData
    nopix_path = save(nopix, tmp_path / "nopix.dcm")
    for path, pattern in [(text, "not a DICOM file"), (empty, "DICOM"),
                          (truncated, "cannot decode"), (nopix_path, "no pixel data"),
                          (tmp_path / "missing.dcm", "not found")]:
        with pytest.raises(PneumoViewError, match=pattern) as info:
            dicomio.decode(path)
        assert str(path) in str(info.value)


def test_twelve_bit_jpeg_extended_names_the_plugin() -> None:
    path = _need("JPGExtended.dcm")
    with pytest.raises(PneumoViewError, match="pylibjpeg-libjpeg") as info:
        dicomio.decode(path)
    assert "12-bit JPEG Extended" in str(info.value)


def test_no_preamble_file_is_read(tmp_path: Path, chest8: np.ndarray) -> None:
    good = save(make_dataset(chest8[:16, :16]), tmp_path / "good.dcm")
    raw = good.read_bytes()
    bare = tmp_path / "bare"
    # drop preamble, DICM and the file meta group: a bare implicit/explicit dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(good)
    del ds.file_meta
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, ds)
    bare.write_bytes(buf.getvalue())
    assert not bare.read_bytes()[128:132] == b"DICM" and raw[128:132] == b"DICM"
    decoded = dicomio.decode(bare)
    np.testing.assert_array_equal(decoded.values, chest8[:16, :16])


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_lossless_reencodings_decode_identically(tmp_path: Path, syntax: str,
                                                chest8: np.ndarray) -> None:
    original = make_dataset(chest8[:512, :512].astype(np.uint16) * 4, bits_stored=10)
    twin = reencode(original, syntax)
    a = dicomio.decode(save(original, tmp_path / "o.dcm"))
    b = dicomio.decode(save(twin, tmp_path / "t.dcm"))
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(contract.model_input(a.values, a.invert),
                                  contract.model_input(b.values, b.invert))


def test_source_files_are_not_modified(tmp_path: Path, chest8: np.ndarray) -> None:
    path = save(make_dataset(chest8[:64, :64]), tmp_path / "src.dcm")
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    dicomio.decode(path)
    dicomio.read_header(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_window_width_one_is_a_step_at_center_minus_half() -> None:
    """PS3.3 C.11.2.1.2.1: with width 1 values up to c - 0.5 are black, above are white."""
    window = windowing.Window(center=100.0, width=1.0, name="step")
    values = np.array([98.0, 99.5, 99.6, 100.0, 101.0])
    with np.errstate(all="raise"):
        shown = windowing.apply_window(values, window)
    assert shown.tolist() == [0, 0, 255, 255, 255]
