"""The torch backend: today's eager float32 network (CPU, CUDA or MPS) behind the engine seam.

It is also the reference: the grad-cam package's methods run on its module
(:attr:`TorchBackend.loaded`), and the tests compare the other backends with it.
"""

from __future__ import annotations

import numpy as np

from pneumoview.core.engines.base import EngineName, Forward, Precision
from pneumoview.core.threads import apply_torch_threads


class TorchBackend:
    """A :class:`pneumoview.core.model.LoadedModel` seen as a backend."""

    engine = EngineName.TORCH
    precision = Precision.F32

    def __init__(self, loaded) -> None:  # noqa: ANN001 - a model.LoadedModel (imports torch)
        self.loaded = loaded
        self.info = loaded.info
        self.gate_tensors = loaded.gate_tensors
        fc = loaded.module.fc
        self.fc_weight = fc.weight.detach().to("cpu").float().numpy().reshape(-1).copy()
        self.fc_bias = float(fc.bias.detach().to("cpu").reshape(-1)[0])

    @property
    def device(self) -> str:
        return str(self.loaded.device)

    def forward(self, batch: np.ndarray) -> Forward:
        """Logits and A for a contract step-5 batch (N, 1, S, S) float32."""
        import torch

        from pneumoview.core.model import predict_activations

        if self.loaded.device.type == "cpu":
            apply_torch_threads()
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        logits, acts = predict_activations(self.loaded,
                                           x.contiguous(memory_format=torch.channels_last))
        return Forward(logits=logits, activations=acts)

    def close(self) -> None:
        self.loaded = None
