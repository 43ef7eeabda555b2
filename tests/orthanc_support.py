"""A real PACS for tests: Orthanc (Debian packages ``orthanc`` and ``orthanc-dicomweb``)
started on loopback with a temporary configuration and storage, on free ports, stopped after.

Tests skip with a reason where Orthanc or its DICOMweb plugin is not installed. The tests talk
to 127.0.0.1 only; Orthanc's HTTP server refuses remote clients (RemoteAccessAllowed false).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ORTHANC_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
DICOMWEB_PLUGIN_CANDIDATES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                              "/usr/lib/orthanc/plugins/libOrthancDicomWeb.so")
AE_TITLE = "ORTHANCTEST"
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _first(paths: tuple[str, ...]) -> str | None:
    found = [p for p in paths if os.path.exists(p)]
    return found[0] if found else shutil.which(Path(paths[0]).name) if paths else None


@dataclass
class Orthanc:
    process: subprocess.Popen
    dicom_port: int
    http_port: int
    folder: Path

    @property
    def dimse_url(self) -> str:
        return f"dicom://{AE_TITLE}@127.0.0.1:{self.dicom_port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.http_base}/dicom-web"

    def rest(self, path: str) -> object:
        import requests

        response = requests.get(self.http_base + path, timeout=30)
        response.raise_for_status()
        return response.json()

    def instance_files(self) -> dict[str, bytes]:
        """SOP Instance UID -> the stored file, for every instance Orthanc holds."""
        import requests

        out = {}
        for oid in self.rest("/instances"):  # type: ignore[union-attr]
            tags = self.rest(f"/instances/{oid}/simplified-tags")
            data = requests.get(f"{self.http_base}/instances/{oid}/file", timeout=30).content
            out[tags["SOPInstanceUID"]] = data  # type: ignore[index]
        return out

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_orthanc(folder: Path, *, calling_peers: dict[str, tuple[str, int]] | None = None
                  ) -> Orthanc:
    exe = _first(ORTHANC_CANDIDATES)
    plugin = _first(DICOMWEB_PLUGIN_CANDIDATES)
    if exe is None:
        pytest.skip("Orthanc is not installed (Debian package orthanc)")
    if plugin is None:
        pytest.skip("Orthanc's DICOMweb plugin is not installed (Debian package "
                    "orthanc-dicomweb)")
    dicom_port, http_port = free_port(), free_port()
    storage = folder / "storage"
    storage.mkdir(parents=True)
    config = {
        "Name": "pneumoview-test", "StorageDirectory": str(storage),
        "IndexDirectory": str(storage), "DicomAet": AE_TITLE, "DicomPort": dicom_port,
        "HttpPort": http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True, "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True, "SaveJobs": False,
        "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomModalities": {name: [ae, "127.0.0.1", port]
                            for name, (ae, port) in (calling_peers or {}).items()},
        "StorageCompression": False, "HttpTimeout": 30, "DicomScuTimeout": 10,
    }
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")  # closed with the process
    proc = subprocess.Popen([exe, str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                            cwd=folder, start_new_session=True)
    log.close()
    server = Orthanc(proc, dicom_port, http_port, folder)
    _wait_ready(server)
    return server


def _wait_ready(server: Orthanc) -> None:
    import requests

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = (server.folder / "orthanc.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"Orthanc exited at start (status {server.process.returncode}):\n{tail}")
        try:
            if requests.get(server.http_base + "/system", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    server.stop()
    pytest.fail(f"Orthanc did not answer within {START_TIMEOUT_S} s")
