"""The display item overrides private parts of pyqtgraph's ImageItem: fail loudly if they go.

:class:`pneumoview.qt.radiographview.DisplayImageItem` replaces ``render`` / ``paint`` /
``viewTransformChanged`` and reads or sets ``_computeDownsampleFactors``, ``_renderRequired``,
``_unrenderable``, ``_lastDownsample``, ``qimage``, ``paintMode`` and ``border``. A pyqtgraph
release that renames one would leave the viewer drawing nothing or drawing stale pixels, so
pyproject pins pyqtgraph below the next minor version and this test is what to run before
raising the pin.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

import pyqtgraph as pg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OVERRIDDEN = ("render", "paint", "viewTransformChanged", "setImage", "_computeDownsampleFactors")
STATE = ("_renderRequired", "_unrenderable", "_lastDownsample", "qimage", "paintMode", "border",
         "autoDownsample", "image")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def test_pyqtgraph_is_pinned_below_the_next_minor_and_installed_inside_the_pin() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.replace(" ", "").startswith("pyqtgraph"))
    upper = re.search(r"<\s*([\d.]+)", spec)
    assert upper, f"pyqtgraph must have an upper bound while ImageItem internals are used: {spec}"
    assert _version(pg.__version__) < _version(upper.group(1))
    major, minor = _version(pg.__version__)[:2]
    assert _version(upper.group(1)) <= (major, minor + 1), \
        f"the pin must stop below the minor after the tested {pg.__version__}: {spec}"


def test_image_item_still_has_the_methods_the_display_item_overrides() -> None:
    for name in OVERRIDDEN:
        assert callable(getattr(pg.ImageItem, name, None)), f"pg.ImageItem.{name} is gone"


def test_image_item_still_keeps_the_render_state_the_display_item_reads(qtbot) -> None:
    item = pg.ImageItem()
    item.setImage(np.arange(64, dtype=np.uint16).reshape(8, 8), autoLevels=False,
                  levels=(0, 63))
    for name in STATE:
        assert hasattr(item, name), f"pg.ImageItem lost {name!r}"
    assert item._renderRequired is True  # a new image asks for a render...
    item.render()
    assert item.qimage is not None and not item._unrenderable  # ...which makes the QImage
    assert len(item._computeDownsampleFactors()) == 2


def test_the_display_item_renders_through_those_internals(qtbot) -> None:
    from pneumoview.qt.radiographview import DisplayImageItem

    view = pg.GraphicsView()
    vb = pg.ViewBox(lockAspect=True, invertY=True)
    view.setCentralItem(vb)
    view.resize(100, 100)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    item = DisplayImageItem(axisOrder="row-major", autoDownsample=True)
    vb.addItem(item)
    item.setImage(np.arange(400 * 400, dtype=np.uint16).reshape(400, 400), autoLevels=False,
                  levels=(0, 400 * 400))
    vb.autoRange(padding=0)
    item.render()  # zoomed out about 4x: the display item's own downsampling path
    assert item.qimage is not None
    assert item._lastDownsample == item._computeDownsampleFactors() != (1, 1)
    assert item._target.width() > 0
