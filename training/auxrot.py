"""Orientation as an auxiliary training task: the backbone learns which way up a film is.

The input gate refuses rotated films with a linear head on the backbone's pooled features.
A backbone trained for pneumonia alone carries too little orientation in its last block to tell
a heavily degraded upright film from an upside-down one (``docs/gate-orientation.md``), and a
frozen head cannot add it. Training with a second head that names the rotation makes the last
block carry it. The labels are free: any training film turned by a quarter turn is a rotated
example.

The head exists only during training. The exported network is the pneumonia ResNet18,
unchanged (same keys, same contract), so the app, the gate's own heads and every loader are
untouched. The pneumonia loss sees only the upright films of a batch: a turned film's label
says nothing about what the model should answer for a turned film (the gate refuses it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Quarter turns clockwise: class ``c`` is a film turned ``90 * c`` degrees clockwise.
TURNS = 4


def turn(x: torch.Tensor, quarter_turns_cw: int) -> torch.Tensor:
    """``x`` (..., H, W) turned ``quarter_turns_cw`` quarter turns clockwise (square images)."""
    return torch.rot90(x, -int(quarter_turns_cw) % TURNS, dims=(-2, -1))


def features(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The pooled 512-d features of a torchvision ResNet (its ``forward`` up to ``fc``)."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return torch.flatten(net.avgpool(x), 1)


class WithRotationHead(torch.nn.Module):
    """The pneumonia network plus a training-only rotation head on the same pooled features.

    ``forward`` returns (pneumonia logit (N, 1), rotation logits (N, 4)): one backbone pass
    serves both losses.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.head = torch.nn.Linear(net.fc.in_features, TURNS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = features(self.net, x)
        return self.net.fc(f), self.head(f)


@dataclass(frozen=True)
class RotationTask:
    """How a batch is turned and how the two losses are combined.

    ``share``: the expected fraction of a batch turned (90, 180 and 270 degrees equally
    likely); ``weight``: the rotation loss's weight next to the pneumonia loss.
    """

    share: float = 0.25
    weight: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.share < 1.0:
            raise ValueError("the rotated share of a batch must be between 0 and 1")
        if self.weight <= 0.0:
            raise ValueError("the rotation loss weight must be positive")

    def draw(self, n: int, device: torch.device) -> torch.Tensor:
        """Each image's quarter turns (0 with probability ``1 - share``), from torch's global
        generator, so a resumed run re-seeded per epoch draws the same turns."""
        turned = torch.rand(n) < self.share
        k = torch.randint(1, TURNS, (n,)) * turned
        return k.to(device)

    def apply(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        for c in range(1, TURNS):
            m = k == c
            if bool(m.any()):
                out[m] = turn(x[m], c)
        return out

    def loss(self, logit: torch.Tensor, rot_logits: torch.Tensor, target: torch.Tensor,
             k: torch.Tensor, criterion: torch.nn.Module) -> torch.Tensor:
        """Pneumonia loss on the upright images plus ``weight`` x rotation cross-entropy on
        all of them."""
        rot = torch.nn.functional.cross_entropy(rot_logits, k)
        upright = k == 0
        if not bool(upright.any()):
            return self.weight * rot
        return criterion(logit[upright], target[upright]) + self.weight * rot


@torch.inference_mode()
def rotation_accuracy(model: WithRotationHead, loader: torch.utils.data.DataLoader,
                      device: torch.device, mean: float, std: float,
                      bf16: bool = False) -> dict[str, float]:
    """The head's accuracy on every image of ``loader`` at each of the four turns, and the
    share of turned images it takes for upright (the error the gate cannot afford)."""
    model.eval()
    correct = torch.zeros(TURNS)
    as_upright = 0
    n = 0
    for x, _, _ in loader:
        x = x.to(device)
        for c in range(TURNS):
            xr = ((turn(x, c) - mean) / std).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                _, r = model(xr)
            pred = r.float().argmax(1).cpu()
            correct[c] += float((pred == c).sum())
            if c:
                as_upright += int((pred == 0).sum())
        n += len(x)
    n = max(n, 1)
    out = {f"val_rotation_acc_{90 * c}": float(correct[c]) / n for c in range(TURNS)}
    out["val_rotation_acc"] = float(correct.sum()) / (TURNS * n)
    out["val_rotated_taken_upright"] = as_upright / (3 * n)
    return out
