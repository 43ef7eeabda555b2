"""The bundle's share of OpenVINO (packaging/openvino_parts.py): after the engine has compiled
and run the model (f32 built in memory, and the bundled int8 graph read from its file), every
OpenVINO library the process has open must be one the spec collects.

A library that OpenVINO opens by path (its CPU plugin, TBB's helpers) is invisible to
PyInstaller's analysis; if a new OpenVINO release opens another one, a frozen build would fail
only on a user's machine ("cannot load plugin"). Reading the process's memory map is Linux only.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packaging"))

import openvino_parts  # noqa: E402

if importlib.util.find_spec("openvino") is None:  # not importorskip: see engines.ovimport
    pytest.skip("openvino is not installed", allow_module_level=True)
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc/self/maps")

#: Run in a child: load a random model of the bundled architecture into the OpenVINO engine and
#: score one batch, then print the OpenVINO package's folder and every shared library mapped.
_CHILD = r"""
import sys, tempfile, numpy as np
from pathlib import Path
from pneumoview.core.engines.loader import load_backend
from pneumoview.core.engines.ovimport import import_openvino
from tests.support.model_fixture import make_random_model_dir
model_dir = make_random_model_dir(Path(tempfile.mkdtemp()) / "m")
backend = load_backend(model_dir, device="cpu", engine="openvino", precision="f32").backend
backend.forward(np.zeros((2, 1, 224, 224), np.float32))
# the int8 graph is read from its file (the IR frontend): the bundled model's, when it has one
from pneumoview.core.modelinfo import read_model_info
from pneumoview.core.resources import bundled_model_dir
if (bundled_model_dir() / "metadata.json").is_file() and read_model_info(None).raw.get("int8"):
    int8 = load_backend(None, device="cpu", engine="openvino", precision="int8").backend
    int8.forward(np.zeros((1, 1, 224, 224), np.float32))
print("OPENVINO", Path(import_openvino().__file__).parent)
mapped = {line.split()[-1] for line in open("/proc/self/maps") if "/" in line}
for path in sorted(mapped):
    if ".so" in Path(path).name:
        print(path)
"""


class Mapped:
    """The shared libraries the child had open: OpenVINO's (relative to its package) and the
    sonames every open library links (what PyInstaller's dependency analysis follows)."""

    def __init__(self, lines: list[str]) -> None:
        package = Path(lines[0].split(" ", 1)[1])
        paths = [Path(p) for p in lines[1:]]
        self.openvino = [p.relative_to(package).as_posix() for p in paths
                         if p.is_relative_to(package)]
        self.needed: set[str] = set()
        for path in paths:
            dyn = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True,
                                 check=False).stdout
            self.needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn))


@pytest.fixture(scope="module")
def mapped() -> Mapped:
    if shutil.which("readelf") is None:
        pytest.skip("readelf (binutils) is not installed")
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                         cwd=ROOT, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return Mapped(out.stdout.splitlines())


def test_the_cpu_plugin_is_opened_from_openvinos_own_folder(mapped: Mapped) -> None:
    plugins = [p for p in mapped.openvino if "openvino_intel_cpu_plugin" in p]
    assert plugins, mapped.openvino
    assert all(p.startswith("libs/") for p in plugins), plugins
    assert "libopenvino_intel_cpu_plugin.so" not in mapped.needed  # opened by path


def test_every_library_openvino_opens_by_path_is_collected(mapped: Mapped) -> None:
    by_path = [p for p in mapped.openvino
               if Path(p).name not in mapped.needed and p.startswith("libs/")]
    missing = [p for p in by_path if not openvino_parts.loaded_by_path(Path(p).name)]
    assert not missing, f"OpenVINO opened libraries by path that the bundle leaves out: {missing}"


def test_the_plugins_the_engine_never_uses_stay_out() -> None:
    for name in ("libopenvino_intel_gpu_plugin.so", "libopenvino_intel_npu_plugin.so",
                 "libopenvino_auto_plugin.so", "libopenvino_onnx_frontend.so.2641"):
        assert not openvino_parts.loaded_by_path(name), name
    assert openvino_parts.loaded_by_path("libopenvino_intel_cpu_plugin.so")
    assert openvino_parts.loaded_by_path("openvino_intel_cpu_plugin.dll")
