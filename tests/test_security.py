"""Security and privacy: no network, model files verified and never unpickled, no patient data
in logs, DICOMDIR paths confined to their folder, exports never overwrite without asking.

The network test runs each program (viewer start-up with a folder and the model, ``info``,
``render``, inference with Grad-CAM, ``pneumoview flag``) in a subprocess whose ``sitecustomize``
installs an audit hook (``sys.addaudithook``): any connect or send on an internet socket, any
bind to a non-loopback address and any name lookup, in that process or in any Python process it
starts (batch decode workers included), is written to a log the test reads. A control run proves
the hook sees them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.support.dicom_factory import make_dataset, sample_file, save

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

PHI = {"PatientName": "Zebedee^Quintessa", "PatientID": "PHI-98765-XYZ",
       "PatientBirthDate": "19610203", "AccessionNumber": "ACC55501234"}
PHI_NEEDLES = ("Zebedee", "Quintessa", "PHI-98765-XYZ", "19610203", "1961-02-03",
               "ACC55501234")


def _chest() -> np.ndarray:
    path = sample_file("RG1_UNCI.dcm")
    if path:
        import pydicom

        arr = pydicom.dcmread(path).pixel_array[::8, ::8].astype(np.float32)
        return ((arr - arr.min()) / max(1.0, float(np.ptp(arr))) * 255).astype(np.uint8)
    y, x = np.mgrid[0:256, 0:256]
    return (128 + 90 * np.sin(x / 9.0) * np.cos(y / 7.0)).astype(np.uint8)


@pytest.fixture(scope="module")
def phi_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small folder: two chest images carrying recognisable patient data, a lateral, junk."""
    folder = tmp_path_factory.mktemp("phi")
    img = _chest()
    for i in range(2):
        ds = make_dataset(img if i == 0 else 255 - img, BodyPartExamined="CHEST",
                          ViewPosition="PA", **PHI)
        ds.PatientName = PHI["PatientName"]
        ds.PatientID = PHI["PatientID"]
        save(ds, folder / f"img{i}.dcm")
    save(make_dataset(img, ViewPosition="LL", **PHI), folder / "lateral.dcm")
    (folder / "notes.txt").write_text("not a DICOM file\n")
    return folder




# --------------------------------------------------------------------------------------------
# No network

SITECUSTOMIZE = '''
import os, sys
_LOG = os.environ.get("PV_NET_AUDIT_LOG")
if _LOG:
    _INET = {2, 10}  # AF_INET, AF_INET6

    def _record(event, detail):
        with open(_LOG, "a") as fh:
            fh.write(f"{os.getpid()} {event} {detail}\\n")

    _LOOPBACK = {"127.0.0.1", "::1", "localhost"}

    def _hook(event, args):
        # Creating a socket is not network use: urllib3 (imported by requests, which pydicom's
        # data manager imports when installed) probes IPv6 support at import time by binding a
        # socket to ('::1', 0) and closing it. What counts is talking to an address (connect,
        # send), a bind that is not to loopback, and name lookups.
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            family = getattr(args[0], "family", None)
            if family is None or int(family) in _INET:
                _record(event, repr(args[1:])[:200])
        elif event == "socket.bind":
            family = getattr(args[0], "family", None)
            address = args[1] if len(args) > 1 else None
            host = address[0] if isinstance(address, tuple) and address else None
            if (family is None or int(family) in _INET) and host not in _LOOPBACK:
                _record(event, repr(args[1:])[:200])
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                       "socket.gethostbyaddr", "urllib.Request", "http.client.connect",
                       "ftplib.connect", "smtplib.connect", "webbrowser.open"):
            _record(event, repr(args)[:200])

    sys.addaudithook(_hook)
'''


@pytest.fixture(scope="module")
def audit_env(tmp_path_factory: pytest.TempPathFactory):
    site = tmp_path_factory.mktemp("audit-site")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = site / "network.log"

    def env() -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "PV_NET_AUDIT_LOG": str(log), "OMP_NUM_THREADS": "1",
            "PNEUMOVIEW_TORCH_THREADS": "1", "QT_QPA_PLATFORM": "offscreen"}

    return env, log


def _run_audited(audit_env, args: list[str], timeout: float = 240) -> tuple[str, str]:
    env, log = audit_env
    if log.exists():
        log.unlink()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env(),
                          cwd=str(REPO))
    assert proc.returncode == 0, f"{args[:4]} failed:\n{proc.stderr[-3000:]}"
    return (log.read_text() if log.exists() else ""), proc.stderr


def test_audit_hook_sees_a_real_socket(audit_env) -> None:
    """Control: the hook (in the subprocess and its children) sees a connect and a non-loopback
    bind, and lets a loopback probe (what urllib3 does at import) pass."""
    log_text, _ = _run_audited(audit_env, [PY, "-c", textwrap.dedent("""
        import socket, subprocess, sys
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        probe.bind(("::1", 0)); probe.close()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.connect(("127.0.0.1", 9))  # discard port: refused, but attempted
        except OSError:
            pass
        s.close()
        subprocess.run([sys.executable, "-c", "import socket; s = socket.socket(); "
                        "s.bind(('0.0.0.0', 0)); s.close()"], check=True)
    """)])
    assert log_text.count("socket.connect") == 1, log_text
    assert log_text.count("socket.bind") == 1 and "0.0.0.0" in log_text, log_text


def test_no_network_viewer_startup_with_folder_and_model(audit_env, phi_folder, model_dir,
                                                         tmp_path) -> None:
    shot = tmp_path / "shot.png"
    log_text, stderr = _run_audited(audit_env, [
        PY, "-m", "pneumoview", "view", str(phi_folder), "--model", str(model_dir),
        "--screenshot", str(shot)])
    assert shot.is_file()
    assert not log_text, f"the viewer opened a socket:\n{log_text}"
    for needle in PHI_NEEDLES:  # the viewer logs at INFO on stderr by default
        assert needle not in stderr, f"patient data {needle!r} in the viewer's log"


def test_no_network_decode_info_render(audit_env, phi_folder, tmp_path) -> None:
    img = str(phi_folder / "img0.dcm")
    log_text, _ = _run_audited(audit_env, [PY, "-m", "pneumoview", "info", img])
    assert not log_text, log_text
    log_text, _ = _run_audited(audit_env, [PY, "-m", "pneumoview", "render", img, "--output",
                                           str(tmp_path / "r.png")])
    assert not log_text, log_text


def test_no_network_inference_with_cam(audit_env, phi_folder, model_dir) -> None:
    log_text, _ = _run_audited(audit_env, [PY, "-c", textwrap.dedent(f"""
        from pneumoview.core import dicomio
        from pneumoview.core.inference import Engine
        engine = Engine({str(model_dir)!r}, device="cpu")
        engine.load()
        decoded = dicomio.decode({str(phi_folder / "img0.dcm")!r})
        pred = engine.score(decoded)
        assert pred.status == "scored", pred
        cam = engine.cam(decoded)
        assert cam.shape == decoded.shape
    """)])
    assert not log_text, f"inference opened a socket:\n{log_text}"


def test_no_network_batch_flag(audit_env, phi_folder, model_dir, tmp_path) -> None:
    out = tmp_path / "report.csv"
    log_text, stderr = _run_audited(audit_env, [
        PY, "-m", "pneumoview", "flag", str(phi_folder), "--output", str(out), "--model",
        str(model_dir), "--device", "cpu", "--workers", "1", "-q"])
    assert out.is_file()
    assert not log_text, f"the batch opened a socket:\n{log_text}"
    for needle in PHI_NEEDLES:  # the report holds PatientID by design; stderr must not
        assert needle not in stderr


# --------------------------------------------------------------------------------------------
# Model files


def _copy_model(src: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for f in src.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


def test_tampered_weights_are_refused(model_dir, tmp_path, phi_folder) -> None:
    from pneumoview.core.errors import PneumoViewError
    from pneumoview.core.inference import Engine

    bad = _copy_model(model_dir, tmp_path / "tampered")
    weights = bytearray((bad / "model.safetensors").read_bytes())
    weights[-100] ^= 0x01  # one bit of one weight
    (bad / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(PneumoViewError, match="altered or corrupt"):
        Engine(bad, device="cpu").load()
    proc = subprocess.run([PY, "-m", "pneumoview", "flag", str(phi_folder), "--output",
                           str(tmp_path / "r.csv"), "--model", str(bad), "-q"],
                          capture_output=True, text=True, timeout=240, cwd=str(REPO),
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1 and "altered or corrupt" in proc.stderr
    assert not (tmp_path / "r.csv").exists()


def test_metadata_pointing_elsewhere_is_refused(model_dir, tmp_path) -> None:
    """Metadata cannot redirect the loader: extra path fields are ignored (only the folder's
    own model.safetensors is read) and a digest of another file is a mismatch."""
    from pneumoview.core.errors import PneumoViewError
    from pneumoview.core.inference import Engine
    from pneumoview.core.model import sha256_file
    from tests.support.model_fixture import make_random_model_dir

    other = make_random_model_dir(tmp_path / "other", seed=7)
    redirected = _copy_model(model_dir, tmp_path / "redirected")
    meta = json.loads((redirected / "metadata.json").read_text())
    meta["weights_sha256"] = sha256_file(other / "model.safetensors")
    for key in ("weights", "weights_file", "weights_path", "path", "url"):
        meta[key] = str(other / "model.safetensors")
    meta["url"] = "https://example.com/model.safetensors"
    (redirected / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PneumoViewError, match="altered or corrupt"):
        Engine(redirected, device="cpu").load()
    # with its own digest back, the same redirecting fields are simply ignored
    meta["weights_sha256"] = sha256_file(redirected / "model.safetensors")
    (redirected / "metadata.json").write_text(json.dumps(meta))
    engine = Engine(redirected, device="cpu")
    engine.load()
    reference = Engine(model_dir, device="cpu")
    reference.load()
    x = [np.full((224, 224), 0.3, np.float32)]
    assert np.array_equal(engine.logits(x), reference.logits(x))


class _Boom:
    """A pickle payload that would create a marker file if it were ever unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_is_never_used(model_dir, tmp_path, phi_folder, monkeypatch) -> None:
    """A pickled 'model' whose digest matches is still refused without being unpickled; and
    loading and scoring a good model never calls torch.load or the pickle module."""
    import pickle

    import torch

    from pneumoview.core import dicomio
    from pneumoview.core.errors import PneumoViewError
    from pneumoview.core.inference import Engine
    from pneumoview.core.model import sha256_file

    marker = tmp_path / "unpickled.marker"
    evil = _copy_model(model_dir, tmp_path / "evil")
    torch.save({"conv1.weight": _Boom(str(marker))}, evil / "model.safetensors")
    meta = json.loads((evil / "metadata.json").read_text())
    meta["weights_sha256"] = sha256_file(evil / "model.safetensors")
    (evil / "metadata.json").write_text(json.dumps(meta))

    calls: list[str] = []

    def forbidden(name: str):
        def fn(*a, **k):
            calls.append(name)
            raise AssertionError(f"{name} called")
        return fn

    monkeypatch.setattr(torch, "load", forbidden("torch.load"))
    monkeypatch.setattr(pickle, "load", forbidden("pickle.load"))
    monkeypatch.setattr(pickle, "loads", forbidden("pickle.loads"))
    monkeypatch.setattr(pickle, "Unpickler", forbidden("pickle.Unpickler"))
    with pytest.raises(PneumoViewError):
        Engine(evil, device="cpu").load()
    assert not marker.exists(), "the pickle payload ran"
    engine = Engine(model_dir, device="cpu")
    engine.load()
    pred = engine.score(dicomio.decode(phi_folder / "img0.dcm"))
    assert pred.status == "scored"
    assert not calls, calls
    # and nowhere in the package is torch.load or pickle loading written
    for path in (REPO / "pneumoview").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "torch.load(" not in text, path
        assert "pickle.load" not in text and "import pickle" not in text, path


# --------------------------------------------------------------------------------------------
# Privacy: logs at DEBUG never carry patient data


def test_no_patient_data_in_debug_logs(phi_folder, model_dir, tmp_path, caplog) -> None:
    from pneumoview.core import dicomio, indexer
    from pneumoview.core.batch import BatchOptions, run_batch
    from pneumoview.core.inference import Engine

    caplog.set_level(logging.DEBUG)
    broken = tmp_path / "broken"
    broken.mkdir()
    data = (phi_folder / "img0.dcm").read_bytes()
    (broken / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (broken / "header_only.dcm").write_bytes(data[:900])
    for folder in (phi_folder, broken):
        indexer.index_folder(folder, cache=False)
        for f in sorted(folder.iterdir()):
            for fn in (indexer.read_instance, dicomio.decode, dicomio.read_header):
                try:
                    fn(str(f))
                except Exception:  # errors are expected; their text is checked
                    logging.getLogger("test").debug("error", exc_info=True)
    engine = Engine(model_dir, device="cpu")
    engine.load()
    engine.score(dicomio.decode(phi_folder / "img0.dcm"))
    run_batch(BatchOptions(root=phi_folder, output=tmp_path / "r.csv", model_dir=model_dir,
                           device="cpu", workers=1), engine=engine)
    text = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert caplog.records, "nothing was logged: the test would prove nothing"
    for needle in PHI_NEEDLES:
        assert needle not in text, f"patient data {needle!r} in the logs"


# --------------------------------------------------------------------------------------------
# DICOMDIR confinement


def test_dicomdir_paths_cannot_escape_its_folder(tmp_path) -> None:
    import pydicom
    from pydicom.fileset import FileSet

    from pneumoview.core import indexer

    media = tmp_path / "media"
    fs = FileSet()
    ds = make_dataset(_chest()[:64, :64], StudyDate="20200101", StudyTime="1200",
                      StudyID="1", SeriesNumber=1)
    fs.add(ds)
    fs.write(media)
    secret = tmp_path / "secret.dcm"  # outside the media folder
    save(make_dataset(_chest()[:32, :32]), secret)
    (media / "LINK").symlink_to(secret)
    dd = pydicom.dcmread(media / "DICOMDIR")
    images = [r for r in dd.DirectoryRecordSequence if "ReferencedFileID" in r]
    assert images
    template = images[0]
    escapes = [["..", "secret.dcm"], ["LINK"], ["SUB", "..", "..", "secret.dcm"],
               [str(secret)], ["C:", "secret.dcm"]]
    for parts in escapes:
        rec = pydicom.Dataset()
        rec.update(template)
        rec.ReferencedFileID = parts if len(parts) > 1 else parts[0]
        dd.DirectoryRecordSequence.append(rec)
    dd.save_as(media / "DICOMDIR", enforce_file_format=True)
    res = indexer.index_folder(media, cache=False, follow_symlinks=False)
    paths = [os.path.realpath(i.path) for i in res.instances]
    assert os.path.realpath(secret) not in paths, "a DICOMDIR reference escaped its folder"
    refused = [m for p, m in res.errors if "outside its folder" in m]
    assert len(refused) == len(escapes), res.errors
    assert ds.SOPInstanceUID in [i.sop_instance_uid for i in res.instances]


# --------------------------------------------------------------------------------------------
# Exports never overwrite without asking


def test_batch_report_is_not_overwritten_without_asking(phi_folder, model_dir, tmp_path) -> None:
    out = tmp_path / "report.csv"
    out.write_text("precious\n")
    proc = subprocess.run([PY, "-m", "pneumoview", "flag", str(phi_folder), "--output",
                           str(out), "--model", str(model_dir), "-q"], capture_output=True,
                          text=True, timeout=240, cwd=str(REPO),
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1 and "--overwrite" in proc.stderr
    assert out.read_text() == "precious\n"


@pytest.mark.gui
def test_gui_export_asks_before_overwriting(qtbot, tmp_path, monkeypatch) -> None:
    """File -> Export Image: the save dialog confirms overwriting the name it returns; when the
    '.png' suffix is added afterwards, the file that would be replaced must be asked about."""
    export_image = pytest.importorskip("pneumoview.qt.export_image")
    from PySide6.QtWidgets import QDialog, QFileDialog, QLabel, QMessageBox

    existing = tmp_path / "scan.png"
    existing.write_bytes(b"precious")
    view = QLabel("image")
    view.resize(64, 64)
    qtbot.addWidget(view)
    asked: list[str] = []
    monkeypatch.setattr(export_image.ExportDialog, "exec",
                        lambda self: QDialog.DialogCode.Accepted)
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(tmp_path / "scan"), "")))

    def answer_no(*args, **kwargs):
        asked.append(" ".join(str(a) for a in args))
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", staticmethod(answer_no))
    out = export_image.ask_and_export(None, view, ["caption"], "scan.png")
    assert asked, "scan.png was replaced without asking"
    assert out is None and existing.read_bytes() == b"precious"
    # a new name is written without a question
    asked.clear()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(tmp_path / "new.png"), "")))
    out = export_image.ask_and_export(None, view, ["caption"], "new.png")
    assert out == tmp_path / "new.png" and out.is_file() and not asked
