"""Inference backends behind one seam: each produces the logit and the last block's
activations A; the CAM, the gate and the atypicality are numpy on A (see :mod:`.base`).

Importing this package imports neither torch nor openvino.
"""

from pneumoview.core.engines.base import (
    ENGINE_CHOICES,
    PRECISION_CHOICES,
    Backend,
    EngineName,
    EngineUnavailable,
    Forward,
    Precision,
    describe,
    normalised_batch,
)

__all__ = ["ENGINE_CHOICES", "PRECISION_CHOICES", "Backend", "EngineName", "EngineUnavailable",
           "Forward", "Precision", "describe", "normalised_batch"]
