"""training/: real (tiny) training runs on PneumoniaMNIST: learning, exact resume, torchrun."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.support.shared_data import require  # noqa: E402
from training import sources  # noqa: E402
from training.prepare import prepare  # noqa: E402
from training.train import get_args_parser, load_checkpoint, main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NPZ = ("pneumoniamnist", "pneumoniamnist.npz")
pytestmark = pytest.mark.shared_data(*NPZ)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def mnist_cache(tmp_path_factory) -> Path:
    """600 PneumoniaMNIST images as PNG + manifest, prepared at 28 px."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("pmnist")
    d = np.load(require(*NPZ))
    x, y = d["train_images"], d["train_labels"].reshape(-1)
    rng = np.random.default_rng(0)
    idx = rng.choice(len(x), 600, replace=False)
    (tmp / "img").mkdir()
    with open(tmp / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label"])
        for i in idx:
            Image.fromarray(x[i]).save(tmp / "img" / f"{i}.png")
            w.writerow([f"img/{i}.png", int(y[i])])
    items = sources.read_manifest(tmp / "labels.csv", "pmnist")
    prepare(items, tmp / "cache", size=28, fractions=(0.7, 0.15, 0.15), seed=0)
    return tmp / "cache"


def _args(cache: Path, out: Path, *extra: str):
    return get_args_parser().parse_args([
        "--data", str(cache), "--output-dir", str(out), "--threads", "1", "--device", "cpu",
        "--batch-size", "32", "--opt", "adamw", "--lr", "2e-3", "--lr-scheduler", "cosine",
        "--print-freq", "1000", *extra])


def _log(out: Path) -> list[dict]:
    with open(out / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_tiny_run_learns(mnist_cache, tmp_path):
    res = main(_args(mnist_cache, tmp_path / "run", "--epochs", "3"))
    rows = _log(tmp_path / "run")
    assert len(rows) == 3
    for col in ("train_loss", "val_loss", "val_auroc", "val_ap", "val_f1", "val_sensitivity",
                "val_specificity", "val_precision", "val_accuracy", "val_tp", "val_fp",
                "val_tn", "val_fn"):
        assert col in rows[0]
    assert res["best_auroc"] > 0.8, rows
    assert (tmp_path / "run" / "checkpoint_best.pth").is_file()


def test_resume_continues_exactly(mnist_cache, tmp_path):
    common = ("--epochs", "2", "--max-steps", "6", "--balance", "class", "--lr-warmup-epochs",
              "0.5")
    main(_args(mnist_cache, tmp_path / "a", *common))
    main(_args(mnist_cache, tmp_path / "b", *common, "--stop-after-epoch", "0"))
    assert len(_log(tmp_path / "b")) == 1
    main(_args(mnist_cache, tmp_path / "b", *common, "--resume", "auto"))
    a, b = _log(tmp_path / "a"), _log(tmp_path / "b")
    assert len(b) == 2
    for ra, rb in zip(a, b, strict=True):
        for k in ("train_loss", "val_loss", "val_auroc", "lr"):
            assert float(ra[k]) == pytest.approx(float(rb[k]), rel=1e-6, abs=1e-9), k
    ma = load_checkpoint(tmp_path / "a" / "checkpoint.pth")["model"]
    mb = load_checkpoint(tmp_path / "b" / "checkpoint.pth")["model"]
    for k in ma:
        torch.testing.assert_close(ma[k], mb[k], rtol=1e-5, atol=1e-6)


def test_torchrun_two_processes_gloo(mnist_cache, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "training", "train", "--data", str(mnist_cache), "--output-dir", str(out),
           "--epochs", "1", "--max-steps", "3", "--threads", "1", "--device", "cpu",
           "--batch-size", "16"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stderr
    rows = _log(out)
    assert len(rows) == 1 and 0.0 <= float(rows[0]["val_auroc"]) <= 1.0


def test_init_from_torchvision_state_dict(mnist_cache, tmp_path):
    """--init accepts an RGB torchvision ResNet18 state_dict (conv1 summed, fc dropped)."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    tv = resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "rn18.pth")
    main(_args(mnist_cache, tmp_path / "run", "--epochs", "1", "--max-steps", "1", "--lr", "0",
               "--init", str(tmp_path / "rn18.pth")))
    m = load_checkpoint(tmp_path / "run" / "checkpoint.pth")["model"]
    torch.testing.assert_close(m["conv1.weight"], tv.state_dict()["conv1.weight"].sum(1, True))
    torch.testing.assert_close(m["layer1.0.conv1.weight"],
                               tv.state_dict()["layer1.0.conv1.weight"])


def test_rotation_task_learns_orientation_and_exports_the_plain_network(mnist_cache, tmp_path):
    main(_args(mnist_cache, tmp_path / "rot", "--epochs", "3", "--aux-rotation", "0.5",
               "--aux-rotation-share", "0.5"))
    rows = _log(tmp_path / "rot")
    assert float(rows[-1]["val_rotation_acc"]) > 0.6, rows[-1]
    assert float(rows[-1]["val_auroc"]) > 0.8, rows[-1]
    ck = load_checkpoint(tmp_path / "rot" / "checkpoint.pth")
    from pneumoview.core.model import build_model

    assert set(ck["model"]) == set(build_model().state_dict())  # no head in what is exported
    assert set(ck["rotation_head"]) == {"weight", "bias"}


def test_resume_with_rotation_task_continues_exactly(mnist_cache, tmp_path):
    common = ("--epochs", "2", "--max-steps", "5", "--aux-rotation", "0.5", "--freeze", "stem")
    main(_args(mnist_cache, tmp_path / "a", *common))
    main(_args(mnist_cache, tmp_path / "b", *common, "--stop-after-epoch", "0"))
    main(_args(mnist_cache, tmp_path / "b", *common, "--resume", "auto"))
    a, b = _log(tmp_path / "a"), _log(tmp_path / "b")
    for ra, rb in zip(a, b, strict=True):
        for k in ("train_loss", "val_auroc", "val_rotation_acc"):
            assert float(ra[k]) == pytest.approx(float(rb[k]), rel=1e-6, abs=1e-9), k
    ha = load_checkpoint(tmp_path / "a" / "checkpoint.pth")["rotation_head"]
    hb = load_checkpoint(tmp_path / "b" / "checkpoint.pth")["rotation_head"]
    torch.testing.assert_close(ha["weight"], hb["weight"], rtol=1e-5, atol=1e-6)
