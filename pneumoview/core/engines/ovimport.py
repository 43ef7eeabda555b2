"""The one way PneumoView imports openvino: with its usage telemetry blocked.

``import openvino`` imports the model converter (``openvino.tools.ovc``), which starts
``openvino_telemetry``: without a consent file it counts as consent, writes a client id and
usage counts under ``~/intel`` and keeps a sender thread, and the converter would send events
to Google Analytics. A clinical viewer must not write into the user's home behind their back
nor talk to the internet. ``openvino.tools.ovc`` falls back to its built-in stub when
``openvino_telemetry`` cannot be imported, which a ``None`` entry in :data:`sys.modules` makes
so for this process (PneumoView never calls the converter; the graph is built directly).
"""

from __future__ import annotations

import sys
from typing import Any


def import_openvino() -> Any:
    """The ``openvino`` module, imported with telemetry blocked (see the module docstring)."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino
