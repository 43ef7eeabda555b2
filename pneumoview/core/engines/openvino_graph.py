"""The bundled architecture (``resnet18-1ch-1logit``) as an OpenVINO graph, built directly from
the verified state dict's numpy arrays.

Building the graph from the weights (instead of tracing the torch module with
``openvino.convert_model``) takes milliseconds, needs no torch in the process and leaves no
converted file on disk that would itself have to be trusted: what runs is derived only from
the sha256-verified weights, at every load. Batch norms are folded into the convolutions
(inference-mode statistics; torchvision's eps 1e-5). The graph has a dynamic batch and
spatial size and two outputs: the logit (N,) and the last block's activations A (N, 512, h, w).
The layer layout mirrors torchvision's ResNet18 (BasicBlock, [2, 2, 2, 2]); the tests compare
both outputs with the torch module's on real films.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pneumoview.core.engines.ovimport import import_openvino

BN_EPS = 1e-5
LAYERS = ((1, 64, 1), (2, 128, 2), (3, 256, 2), (4, 512, 2))  # (index, channels, first stride)
BLOCKS_PER_LAYER = 2


class GraphWeightsError(ValueError):
    """The state dict does not hold the tensors of this architecture."""


def _tensor(state: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    try:
        return np.asarray(state[key], dtype=np.float32)
    except KeyError:
        raise GraphWeightsError(f"the weights lack tensor {key!r}") from None


def fold_batch_norm(weight: np.ndarray, state: Mapping[str, np.ndarray],
                    bn: str) -> tuple[np.ndarray, np.ndarray]:
    """A convolution's weight followed by batch norm ``bn`` as one weight and bias."""
    gamma, beta = _tensor(state, f"{bn}.weight"), _tensor(state, f"{bn}.bias")
    mean, var = _tensor(state, f"{bn}.running_mean"), _tensor(state, f"{bn}.running_var")
    scale = gamma / np.sqrt(var.astype(np.float64) + BN_EPS).astype(np.float32)
    if weight.shape[0] != scale.shape[0]:
        raise GraphWeightsError(f"{bn} has {scale.shape[0]} channels for a convolution with "
                                f"{weight.shape[0]}")
    folded = weight * scale[:, None, None, None]
    return folded.astype(np.float32), (beta - mean * scale).astype(np.float32)


class _Builder:
    """Adds nodes for the network's parts; each method is one step of the ResNet."""

    def __init__(self, state: Mapping[str, np.ndarray]) -> None:
        import_openvino()
        import openvino.opset15 as ops

        self.ops = ops
        self.state = state

    def conv_bn(self, x: Any, conv: str, bn: str, stride: int, relu: bool) -> Any:
        ops = self.ops
        weight = _tensor(self.state, f"{conv}.weight")
        folded, bias = fold_batch_norm(weight, self.state, bn)
        pad = weight.shape[-1] // 2
        y = ops.convolution(x, ops.constant(folded), [stride, stride], [pad, pad], [pad, pad],
                            [1, 1])
        y = ops.add(y, ops.constant(bias.reshape(1, -1, 1, 1)))
        return ops.relu(y) if relu else y

    def stem(self, x: Any) -> Any:
        y = self.conv_bn(x, "conv1", "bn1", 2, relu=True)
        return self.ops.max_pool(y, [2, 2], [1, 1], [1, 1], [1, 1], [3, 3]).output(0)

    def block(self, x: Any, name: str, stride: int) -> Any:
        y = self.conv_bn(x, f"{name}.conv1", f"{name}.bn1", stride, relu=True)
        y = self.conv_bn(y, f"{name}.conv2", f"{name}.bn2", 1, relu=False)
        if f"{name}.downsample.0.weight" in self.state:
            x = self.conv_bn(x, f"{name}.downsample.0", f"{name}.downsample.1", stride,
                             relu=False)
        return self.ops.relu(self.ops.add(y, x))

    def body(self, x: Any) -> Any:
        for index, _channels, first_stride in LAYERS:
            for b in range(BLOCKS_PER_LAYER):
                x = self.block(x, f"layer{index}.{b}", first_stride if b == 0 else 1)
        return x

    def head(self, activations: Any) -> Any:
        ops = self.ops
        weight, bias = _tensor(self.state, "fc.weight"), _tensor(self.state, "fc.bias")
        if weight.shape != (1, 512) or bias.shape != (1,):
            raise GraphWeightsError(f"fc has shape {weight.shape}; this architecture has one "
                                    "logit over 512 channels")
        pooled = ops.reduce_mean(activations, ops.constant(np.array([2, 3], np.int64)), False)
        logit = ops.add(ops.matmul(pooled, ops.constant(weight), False, True),
                        ops.constant(bias))
        return ops.reshape(logit, ops.constant(np.array([-1], np.int64)), False)


def build_resnet18(state: Mapping[str, np.ndarray]) -> Any:
    """An ``openvino.Model`` with input ``x`` (N, 1, H, W) float32 (contract step 5) and
    outputs ``logit`` (N,) and ``activations`` (N, 512, h, w)."""
    ov = import_openvino()
    builder = _Builder(state)
    ops = builder.ops
    x = ops.parameter(ov.PartialShape([-1, 1, -1, -1]), ov.Type.f32, name="x")
    activations = builder.body(builder.stem(x))
    logit = builder.head(activations)
    logit.output(0).get_tensor().set_names({"logit"})
    activations.output(0).get_tensor().set_names({"activations"})
    return ov.Model([logit, activations], [x], "pneumoview-resnet18")
