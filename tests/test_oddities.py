"""Real-world oddities, generated here: each ends in an image or a clear error naming the file.

Every fixture goes through the same entry points a user's file does: the indexer
(``read_instance``), the decoder, the model-input contract and the batch worker task. "Clear" means
a :class:`PneumoViewError` whose message names the file and says what is wrong.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian

from pneumoview.core import batch, contract, dicomio, indexer, windowing
from pneumoview.core.errors import PneumoViewError
from tests.support.dicom_factory import make_dataset, sample_file, save


def _chest8(size: int = 64) -> np.ndarray:
    """Real chest pixels when available (small), else a smooth synthetic film."""
    path = sample_file("RG1_UNCI.dcm")
    if path:
        arr = pydicom.dcmread(path).pixel_array[::24, ::24][:size, :size].astype(np.float32)
        arr = (arr - arr.min()) / max(1.0, float(np.ptp(arr))) * 255
        return arr.astype(np.uint8)
    y, x = np.mgrid[0:size, 0:size]
    return (128 + 90 * np.sin(x / 9.0) * np.cos(y / 7.0)).astype(np.uint8)


def _expect_image(path: Path) -> dicomio.DecodedImage:
    inst = indexer.read_instance(str(path))
    assert inst.rows > 0 and inst.columns > 0
    decoded = dicomio.decode(path)
    assert decoded.values.dtype == np.float32 and np.isfinite(decoded.values).all()
    x = contract.model_input(decoded.values, decoded.invert)
    assert x.shape == (224, 224) and 0.0 <= x.min() and x.max() <= 1.0
    if not decoded.is_colour:
        w = windowing.default_window(decoded.values, decoded.windows)
        assert windowing.apply_window(decoded.values, w).shape == decoded.values.shape
    return decoded


def _expect_error(path: Path, *words: str) -> PneumoViewError:
    with pytest.raises(PneumoViewError) as info:
        dicomio.decode(path)
    err = info.value
    assert err.path == str(path) and str(path) in str(err)
    for w in words:
        assert w.lower() in err.reason.lower(), err.reason
    return err


def _task(path: Path) -> dict:
    return batch.decode_task({"path": str(path), "file_size": path.stat().st_size})


def test_no_preamble(tmp_path: Path) -> None:
    """A file written without the 128-byte preamble and 'DICM' (old equipment)."""
    full = save(make_dataset(_chest8(), BodyPartExamined="CHEST"), tmp_path / "full.dcm")
    raw = tmp_path / "no_preamble.dcm"
    raw.write_bytes(full.read_bytes()[132:])
    decoded = _expect_image(raw)
    assert np.array_equal(decoded.values, dicomio.decode(full).values)
    assert _task(raw)["status"] == "scored"


def test_dicomdir_is_not_an_image_and_its_images_are_indexed(tmp_path: Path) -> None:
    from pydicom.fileset import FileSet

    ds = make_dataset(_chest8(), StudyDate="20200101", StudyTime="120000", StudyID="1",
                      SeriesNumber=1, AccessionNumber="A1", PatientBirthDate="19700101")
    fs = FileSet()
    fs.add(ds)
    root = tmp_path / "media"
    fs.write(root)
    dicomdir = root / "DICOMDIR"
    assert dicomdir.is_file()
    _expect_error(dicomdir, "no image")
    task = _task(dicomdir)
    assert task["status"] in ("not_scored", "skipped"), task
    res = indexer.index_folder(root, cache=False)
    assert str(dicomdir) in res.dicomdirs
    assert [i.sop_instance_uid for i in res.instances] == [ds.SOPInstanceUID]
    assert not res.errors


def _sr_dataset() -> Dataset:
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "No pneumonia."
    return make_dataset(None, modality="SR", sop_class=BasicTextSRStorage, PatientID="SR001",
                        ValueType="CONTAINER", ContentSequence=[item])


def test_structured_report_has_no_pixels(tmp_path: Path) -> None:
    path = save(_sr_dataset(), tmp_path / "report.dcm")
    inst = indexer.read_instance(str(path))
    assert inst.modality == "SR" and inst.rows == 0
    _expect_error(path, "no image")
    task = _task(path)
    assert task["status"] == "not_scored" and task["message"], task


@pytest.mark.parametrize("name", ["rtplan.dcm", "rtstruct.dcm"])
def test_other_objects_without_pixels(name: str, tmp_path: Path) -> None:
    src = sample_file(name)
    if src is None:
        pytest.skip(f"pydicom test file {name} unavailable")
    path = tmp_path / name
    path.write_bytes(Path(src).read_bytes())
    _expect_error(path, "no image")
    assert _task(path)["status"] == "not_scored"


def test_one_by_one_image(tmp_path: Path) -> None:
    path = save(make_dataset(np.array([[200]], dtype=np.uint8)), tmp_path / "1x1.dcm")
    decoded = _expect_image(path)
    assert decoded.shape == (1, 1) and decoded.values[0, 0] == 200
    # a flat image has no contrast: the contract gives zeros, not NaN
    assert not contract.model_input(decoded.values, decoded.invert).any()


def test_16bit_signed_with_rescale(tmp_path: Path) -> None:
    stored = (np.arange(64 * 128, dtype=np.int32).reshape(64, 128) - 4096).astype(np.int16)
    path = save(make_dataset(stored, signed=True, RescaleSlope=0.25, RescaleIntercept=-1000),
                tmp_path / "signed.dcm")
    decoded = _expect_image(path)
    assert np.array_equal(decoded.values, stored.astype(np.float32) * 0.25 - 1000)


def _ybr422(grey: np.ndarray) -> bytes:
    """Uncompressed YBR_FULL_422: per pair of pixels Y1 Y2 Cb Cr (Cb = Cr = 128: a grey film)."""
    out = bytearray()
    for row in grey:
        for i in range(0, len(row), 2):
            out += bytes((int(row[i]), int(row[i + 1]), 128, 128))
    return bytes(out)


def test_ybr_full_422_grey_film_decodes_to_equal_channels(tmp_path: Path) -> None:
    grey = _chest8()
    ds = make_dataset(np.stack([grey] * 3, axis=-1))
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PixelData = _ybr422(grey)
    path = save(ds, tmp_path / "ybr422.dcm")
    decoded = _expect_image(path)
    assert decoded.is_colour
    for c in range(3):
        assert np.array_equal(decoded.values[..., c], grey.astype(np.float32))
    # a grey film in a colour wrapper is scored, and exactly like its grey twin
    task = _task(path)
    assert task["status"] == "scored", task
    twin = _task(save(make_dataset(grey), tmp_path / "grey.dcm"))
    assert np.allclose(task["input"], twin["input"], atol=1e-6)


def test_grey_film_in_rgb_with_per_channel_codec_noise_is_scored(tmp_path: Path) -> None:
    """JPEG-LS near-lossless codes R, G and B separately: a grey film in an RGB wrapper comes
    back with channels a few grey levels apart. It is still grey, and scores like its twin."""
    from pydicom.uid import JPEGLSNearLossless

    grey = _chest8(128)
    ds = make_dataset(np.stack([grey] * 3, axis=-1))
    ds.compress(JPEGLSNearLossless, jls_error=3)
    path = save(ds, tmp_path / "rgb_near_lossless.dcm")
    decoded = _expect_image(path)
    assert decoded.is_colour
    assert not np.array_equal(decoded.values[..., 0], decoded.values[..., 1])
    task = _task(path)
    assert task["status"] == "scored", task
    twin = _task(save(make_dataset(grey), tmp_path / "grey.dcm"))
    assert np.abs(task["input"] - twin["input"]).max() < 0.05


@pytest.mark.parametrize("name", ["SC_rgb.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm",
                                  "SC_ybr_full_422_uncompressed.dcm"])
def test_true_colour_sample_files_are_not_scored(name: str) -> None:
    src = sample_file(name)
    if src is None:
        pytest.skip(f"pydicom test file {name} unavailable")
    task = _task(Path(src))
    assert task["status"] == "not_scored" and "colour image" in task["message"], task


def test_ybr_full_422_sample_file() -> None:
    src = sample_file("SC_ybr_full_422_uncompressed.dcm")
    if src is None:
        pytest.skip("pydicom test file unavailable")
    decoded = dicomio.decode(src)
    assert decoded.is_colour and decoded.values.shape[-1] == 3
    ref = sample_file("SC_rgb.dcm")
    if ref is not None:  # the same picture stored as RGB; chroma is subsampled 2:1
        diff = np.abs(decoded.values - dicomio.decode(ref).values)
        assert diff.mean() < 1.0 and diff.max() <= 8, (diff.mean(), diff.max())


def test_multi_frame(tmp_path: Path) -> None:
    frames = np.stack([_chest8(), 255 - _chest8(), _chest8() // 2])
    path = save(make_dataset(frames), tmp_path / "multi.dcm")
    for i in range(3):
        assert np.array_equal(dicomio.decode(path, frame=i).values, frames[i])
    err = pytest.raises(PneumoViewError, dicomio.decode, path, frame=3).value
    assert err.path == str(path) and "frame 3" in err.reason
    task = _task(path)
    assert task["status"] == "not_scored" and "multi-frame" in task["message"]


@pytest.mark.parametrize("bits", [10, 13])
def test_odd_bits_stored_in_16(bits: int, tmp_path: Path) -> None:
    """10 or 13 bits stored in 16, with garbage above the high bit (overlay bits in old files):
    only the stored bits count."""
    top = (1 << bits) - 1
    values = (np.arange(64 * 64).reshape(64, 64) * 7 % (top + 1)).astype(np.uint16)
    garbage = values | np.uint16(0xFFFF ^ top)
    path = save(make_dataset(garbage, bits_stored=bits), tmp_path / f"b{bits}.dcm")
    decoded = _expect_image(path)
    assert np.array_equal(decoded.values, values.astype(np.float32))


def test_odd_bits_stored_signed_13(tmp_path: Path) -> None:
    """13-bit two's complement without sign extension in a 16-bit word."""
    want = (np.arange(64 * 128).reshape(64, 128) % 8192 - 4096).astype(np.int16)
    raw = (want.astype(np.int32) & 0x1FFF).astype(np.uint16).view(np.int16)
    path = save(make_dataset(raw, bits_stored=13, signed=True), tmp_path / "s13.dcm")
    decoded = _expect_image(path)
    assert np.array_equal(decoded.values, want.astype(np.float32))


@pytest.mark.parametrize("syntax,words", [
    ("1.2.3.4.5.6.7.8.9", ["transfer syntax", "not supported"]),  # unknown
    ("1.2.840.113619.5.2", ["transfer syntax", "not supported"]),  # GE private big endian
    ("1.2.840.10008.1.2.4.100", ["not supported"]),  # MPEG2 video
])
def test_private_or_unknown_transfer_syntax(syntax: str, words: list[str],
                                            tmp_path: Path) -> None:
    ds = make_dataset(_chest8())
    path = save(ds, tmp_path / "private.dcm")
    # rewrite the syntax UID in the file meta, keeping the dataset bytes as they are
    data = path.read_bytes()
    old = ExplicitVRLittleEndian.encode() + b"\0"
    assert old in data
    new = syntax.encode() + (b"\0" if len(syntax) % 2 else b"")
    at = data.index(old)
    length_at = at - 2
    assert struct.unpack_from("<H", data, length_at)[0] == len(old)
    data = data[:length_at] + struct.pack("<H", len(new)) + new + data[at + len(old):]
    group_len_at = data.index(b"\x02\x00\x00\x00UL") + 8
    (glen,) = struct.unpack_from("<I", data, group_len_at)
    data = data[:group_len_at] + struct.pack("<I", glen - len(old) + len(new)) + \
        data[group_len_at + 4:]
    path.write_bytes(data)
    assert indexer.read_instance(str(path)).transfer_syntax == syntax
    err = _expect_error(path)
    text = err.reason.lower()
    assert syntax in err.reason and any(w in text for w in words), err.reason
    assert _task(path)["status"] == "error"
