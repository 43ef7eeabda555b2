"""The viewer numbers frames from 1 ("Frame 1/3"), the command line from 0 (``render --frame``):
the frame line says so on hover (issue 12, item 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_frame_line_has_a_tooltip_saying_dicom_counts_from_1(qtbot, tmp_path: Path) -> None:
    from PySide6.QtCore import QEvent, QPoint, QPointF
    from PySide6.QtGui import QHelpEvent
    from PySide6.QtWidgets import QApplication, QToolTip

    from pneumoview.core import dicomio
    from pneumoview.qt.radiographview import RadiographView
    from tests.support.dicom_factory import make_dataset, save

    frames = np.stack([np.full((32, 32), v, np.uint8) for v in (10, 120, 240)])
    multi = save(make_dataset(frames), tmp_path / "multi.dcm")
    single = save(make_dataset(frames[0]), tmp_path / "single.dcm")
    view = RadiographView()
    qtbot.addWidget(view)
    view.resize(640, 480)
    view.show()
    qtbot.waitExposed(view)
    view.set_image(dicomio.decode(multi, 1))
    label = view._corners["tr"]
    assert "Frame 2/3" in label.text()
    assert "numbered from 1" in label.toolTip() and "--frame counts from 0" in label.toolTip()
    # the label lets the mouse through (drags start anywhere); hovering it shows the tooltip
    centre = label.geometry().center()
    viewport = view.graphics.viewport()
    local = viewport.mapFrom(view.graphics, centre)
    event = QHelpEvent(QEvent.Type.ToolTip, local, viewport.mapToGlobal(local))
    QApplication.sendEvent(viewport, event)
    assert view.corner_tooltip(QPointF(centre)) == label.toolTip()
    qtbot.waitUntil(lambda: QToolTip.isVisible() and "numbered from 1" in QToolTip.text(),
                    timeout=2000)
    QToolTip.hideText()
    assert view.corner_tooltip(QPointF(QPoint(2, 470))) == ""
    view.set_image(dicomio.decode(single))
    assert label.toolTip() == ""
