"""``--engine`` and ``--precision``: the same two options on ``flag``, ``view`` and
``--self-test`` (the values and the auto rules live in :mod:`pneumoview.core.engines.base`).

Both default to None (not given), so a setting can fill them before the built-in ``auto``.
"""

from __future__ import annotations

import argparse

from pneumoview.core.engines.base import ENGINE_CHOICES, PRECISION_CHOICES


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=ENGINE_CHOICES, default=None,
                        help="inference engine: auto (default: torch on a GPU, openvino on "
                             "the CPU when it is installed, torch otherwise), torch, openvino")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                        help="auto (default: bf16 where the CPU computes it natively, AMX or "
                             "AVX512-BF16, else f32), bf16 (openvino on such a CPU only), f32, "
                             "int8 (openvino, a model with an int8 graph: python -m training "
                             "quantize; never chosen by auto)")
