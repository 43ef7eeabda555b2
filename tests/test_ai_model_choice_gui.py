"""The viewer and the GUI batch use one model choice: the model the AI panel scores with."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytestmark = [pytest.mark.gui, pytest.mark.slow]

from batch_support import build_small_folder  # noqa: E402

from pneumoview.core import report as rep  # noqa: E402

TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.support.model_fixture import make_random_model_dir

    root = tmp_path_factory.mktemp("choice")
    return (make_random_model_dir(root / "model-a", seed=1),
            make_random_model_dir(root / "model-b", seed=2))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_folder(tmp_path_factory.mktemp("choice") / "data", 4, size=64)


def test_batch_after_load_model_flags_with_the_model_the_viewer_scores_with(
        qtbot, make_viewer_window, two_models: tuple[Path, Path], folder: Path,
        tmp_path: Path) -> None:
    """`--model A`, then File > Load Model B: the viewer scores with B, and a batch started
    afterwards must flag with B too (it used to flag with A, the command line's model, which
    took precedence over the choice the user had just made)."""
    model_a, model_b = two_models
    win = make_viewer_window(model=model_a)
    qtbot.waitUntil(lambda: win.ai.info is not None or bool(win.ai.error), timeout=TIMEOUT_MS)
    assert win.ai.info is not None, win.ai.error
    id_a = win.ai.info.model_id
    win.ai.load_model(str(model_b))
    qtbot.waitUntil(lambda: win.ai.info.model_id != id_a or bool(win.ai.error),
                    timeout=TIMEOUT_MS)
    id_b = win.ai.info.model_id
    assert id_b != id_a and not win.ai.error
    # a threshold the user set for B in the AI panel is the one the batch flags at
    win.ai.panel.spin.setValue(37.5)
    with qtbot.waitSignal(win.batch.finished, timeout=TIMEOUT_MS) as done:
        win.batch.start(str(folder), workers=1, batch_size=4, out_dir=str(tmp_path / "r"))
    summary = done.args[0]
    assert summary is not None and summary.finished
    manifest = rep.read_manifest(summary.output)
    assert manifest["model_id"] == id_b
    assert manifest["threshold"] == pytest.approx(0.375)
    rows = rep.read_report(summary.output, allow_partial_tail=False)
    assert rows and {r["model_id"] for r in rows} == {id_b}
