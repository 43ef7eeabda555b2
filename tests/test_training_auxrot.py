"""training/auxrot.py: the orientation auxiliary task (turns, losses, the training-only head)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from pneumoview.core.model import build_model  # noqa: E402
from training.auxrot import (  # noqa: E402
    TURNS,
    RotationTask,
    WithRotationHead,
    features,
    rotation_accuracy,
    turn,
)


def _marked() -> torch.Tensor:
    x = torch.zeros(1, 1, 4, 4)
    x[..., 0, 0] = 1.0  # top left
    return x


def test_turn_is_clockwise():
    assert turn(_marked(), 1)[0, 0, 0, 3] == 1.0  # top left -> top right
    assert turn(_marked(), 2)[0, 0, 3, 3] == 1.0
    assert turn(_marked(), 3)[0, 0, 3, 0] == 1.0
    torch.testing.assert_close(turn(_marked(), 4), _marked())


def test_draw_turns_about_the_share_and_never_out_of_range():
    torch.manual_seed(0)
    k = RotationTask(share=0.25).draw(20000, torch.device("cpu"))
    assert 0.23 < float((k > 0).float().mean()) < 0.27
    assert set(k.unique().tolist()) == {0, 1, 2, 3}


def test_apply_turns_each_image_by_its_own_count():
    x = _marked().repeat(4, 1, 1, 1)
    out = RotationTask().apply(x, torch.arange(TURNS))
    for c in range(TURNS):
        torch.testing.assert_close(out[c], turn(x[c], c))
    torch.testing.assert_close(x, _marked().repeat(4, 1, 1, 1))  # the input is not changed


def test_pneumonia_loss_ignores_turned_images():
    task = RotationTask(share=0.5, weight=0.5)
    crit = torch.nn.BCEWithLogitsLoss()
    k = torch.tensor([0, 0, 2, 3])
    rot = torch.randn(4, TURNS)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0])
    a = task.loss(torch.tensor([2.0, -1.0, 5.0, 5.0]), rot, target, k, crit)
    b = task.loss(torch.tensor([2.0, -1.0, -9.0, 9.0]), rot, target, k, crit)
    torch.testing.assert_close(a, b)
    want = crit(torch.tensor([2.0, -1.0]), target[:2]) + 0.5 * torch.nn.functional.cross_entropy(
        rot, k)
    torch.testing.assert_close(a, want)


def test_all_turned_batch_has_only_the_rotation_loss():
    k = torch.tensor([1, 2])
    rot = torch.randn(2, TURNS)
    loss = RotationTask(weight=2.0).loss(torch.zeros(2), rot, torch.ones(2), k,
                                         torch.nn.BCEWithLogitsLoss())
    torch.testing.assert_close(loss, 2.0 * torch.nn.functional.cross_entropy(rot, k))


@pytest.mark.parametrize("share,weight", [(0.0, 0.5), (1.0, 0.5), (0.25, 0.0)])
def test_bad_settings_are_refused(share, weight):
    with pytest.raises(ValueError):
        RotationTask(share, weight)


def test_head_shares_the_networks_forward():
    torch.manual_seed(0)
    net = build_model().eval()
    wrapped = WithRotationHead(net).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        logit, rot = wrapped(x)
        torch.testing.assert_close(logit, net(x))
        assert features(net, x).shape == (2, 512)
    assert rot.shape == (2, TURNS)
    assert set(wrapped.state_dict()) - set(net.state_dict()) == {
        "net." + k for k in net.state_dict()} | {"head.weight", "head.bias"}


def test_rotation_accuracy_counts_each_turn():
    class Oracle(torch.nn.Module):
        """Names the turn from where the bright corner is (images are marked top left)."""

        def forward(self, x):
            corners = torch.stack([x[:, 0, 0, 0], x[:, 0, 0, -1], x[:, 0, -1, -1],
                                   x[:, 0, -1, 0]], 1)
            return torch.zeros(len(x), 1), corners

    x = _marked().repeat(3, 1, 1, 1)
    loader = [(x, torch.zeros(3), torch.arange(3))]
    acc = rotation_accuracy(Oracle(), loader, torch.device("cpu"), 0.0, 1.0)
    assert acc["val_rotation_acc"] == 1.0
    assert acc["val_rotated_taken_upright"] == 0.0
    assert {acc[f"val_rotation_acc_{d}"] for d in (0, 90, 180, 270)} == {1.0}
