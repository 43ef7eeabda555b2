"""Which of OpenVINO's shared libraries the bundle needs, and which of them no hook finds.

OpenVINO's Python extension links ``libopenvino`` (and through it TBB), so PyInstaller's
dependency analysis collects those. The device plugins and TBB's optional helpers are opened by
path at run time, from the folder ``libopenvino`` lives in: nothing links them, so the spec must
collect them by name (:data:`LOADED_BY_PATH`). Only the CPU plugin: the engine compiles for
"CPU"; the GPU and NPU plugins (~50 MB) stay out. Of the model-file frontends only the IR one:
the f32/bf16 graph is built in memory from the verified weights, but ``--precision int8`` reads
the model folder's checked ``int8.xml``/``int8.bin`` (OpenVINO IR); ONNX, TensorFlow, Paddle...
are never read.

``tests/test_packaging_openvino.py`` runs the engine and checks that every OpenVINO library the
process then has open is linked by another one it has open (so the analysis finds it) or is
in :data:`LOADED_BY_PATH`.
"""

from __future__ import annotations

from fnmatch import fnmatch

#: Opened by path at run time (``collect_dynamic_libs`` patterns; Linux, Windows, macOS names).
#: The auto-batching plugin is opened whenever a model is compiled for the CPU, the IR frontend
#: whenever the int8 graph is read.
LOADED_BY_PATH = ("*openvino_intel_cpu_plugin*", "*openvino_auto_batch_plugin*", "*tbbbind*",
                  "*tbbmalloc*", "*openvino_ir_frontend*")


def loaded_by_path(name: str) -> bool:
    """True when the spec collects a library file called ``name`` by name."""
    return any(fnmatch(name, p) for p in LOADED_BY_PATH)
