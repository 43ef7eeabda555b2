"""The screen-resolution copy of the radiograph: same pixels as drawing directly, reused only
while nothing that decides them has changed."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from PySide6.QtCore import QRectF  # noqa: E402
from PySide6.QtGui import QColor, QImage, QPainter, QTransform  # noqa: E402

from pneumoview.qt.screenimage import ScreenImage  # noqa: E402


def _film(h: int = 300, w: int = 260) -> QImage:
    rng = np.random.default_rng(0)
    grey = (rng.random((h, w)) * 255).astype(np.uint8)
    img = QImage(grey.data, w, h, w, QImage.Format.Format_Indexed8).copy()
    img.setColorTable([0xFF000000 | (i * 0x010101) for i in range(256)])
    return img


def _paint(draw, transform: QTransform, size=(240, 200), smooth: bool = True) -> np.ndarray:
    out = QImage(*size, QImage.Format.Format_RGB32)
    out.fill(QColor(20, 30, 40))
    p = QPainter(out)
    try:
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        p.setTransform(transform)
        draw(p)
    finally:
        p.end()
    ptr = out.constBits()
    return np.frombuffer(ptr, np.uint8).reshape(size[1], out.bytesPerLine())[:, :size[0] * 4] \
        .copy()


TARGET = QRectF(0, 0, 260, 300)
# shrinking, with an offset that is not a whole pixel
SHRINK = QTransform(0.61, 0, 0, 0.61, 7.3, 4.6)


@pytest.mark.parametrize("transform, smooth, copied", [
    (SHRINK, True, True),
    (QTransform(-0.61, 0, 0, 0.61, 200.4, 3.0), True, True),  # flipped left-right
    (QTransform(0.9, 0, 0, 0.9, -60.5, -40.25), True, True),  # panned partly out of view
    (QTransform(2.5, 0, 0, 2.5, -100.25, -80.5), False, False),  # magnified: drawn directly
])
def test_the_copy_has_the_pixels_direct_drawing_makes(qapp, transform, smooth, copied) -> None:
    film = _film()
    direct = _paint(lambda p: p.drawImage(TARGET, film), transform, smooth=smooth)
    cache = ScreenImage()
    via = _paint(lambda p: cache.draw(p, TARGET, film, 1, smooth), transform, smooth=smooth)
    assert (cache._pixels is not None) == copied
    diff = np.abs(direct.astype(int) - via.astype(int))
    assert diff.max() <= 1, f"up to {diff.max()} grey levels apart"


def test_a_repaint_reuses_the_copy_until_the_image_or_the_scale_changes(qapp) -> None:
    film, cache = _film(), ScreenImage()

    def draw(transform: QTransform, generation: int) -> np.ndarray:
        return _paint(lambda p: cache.draw(p, TARGET, film, generation, True), transform)

    first = draw(SHRINK, 1)
    assert cache.hits == 0
    assert np.array_equal(draw(SHRINK, 1), first) and cache.hits == 1
    # a pan by whole pixels keeps the copy, and moves the picture with it
    panned = draw(SHRINK * QTransform.fromTranslate(5, 3), 1)
    assert cache.hits == 2
    assert np.array_equal(panned[3:, 5 * 4:], first[:-3, :-5 * 4])
    direct = _paint(lambda p: p.drawImage(TARGET, film), SHRINK * QTransform.fromTranslate(5, 3))
    assert np.abs(direct.astype(int) - panned.astype(int)).max() <= 1
    draw(SHRINK, 2)  # a new render (window, LUT): resampled again
    assert cache.hits == 2
    draw(QTransform(0.5, 0, 0, 0.5, 7.3, 4.6), 2)  # zoomed
    assert cache.hits == 2
    draw(QTransform(0.5, 0, 0, 0.5, 7.55, 4.6), 2)  # moved by part of a pixel
    assert cache.hits == 2


def test_rotation_draws_directly(qapp) -> None:
    film, cache = _film(), ScreenImage()
    rotated = QTransform().translate(200, 0).rotate(90).scale(0.6, 0.6)
    direct = _paint(lambda p: p.drawImage(TARGET, film), rotated)
    via = _paint(lambda p: cache.draw(p, TARGET, film, 1, True), rotated)
    assert cache._pixels is None
    assert np.array_equal(direct, via)



def test_the_view_repaints_an_unchanged_film_from_its_copy(qtbot, tmp_path) -> None:
    """Hiding a layer over the film (the AI map, when the reader moves on) repaints the view;
    the film is not resampled again, and what is on screen is what direct drawing shows."""
    import pyqtgraph as pg

    from pneumoview.core.dicomio import decode
    from pneumoview.qt.radiographview import RadiographView
    from tests.support.dicom_factory import make_dataset, save

    pixels = (np.random.default_rng(1).random((700, 640)) * 4000).astype(np.uint16)
    path = save(make_dataset(pixels, bits_stored=12), tmp_path / "film.dcm")
    view = RadiographView()
    qtbot.addWidget(view)
    view.resize(500, 420)
    view.show()
    qtbot.waitExposed(view)
    view.set_image(decode(path))
    layer = pg.ImageItem(np.ones((700, 640), np.float32))
    view.add_layer(layer)
    item = view.image_item
    qtbot.waitUntil(lambda: item.screen._pixels is not None)
    before = item.screen.hits
    layer.setVisible(False)
    view.graphics.viewport().repaint()
    assert item.screen.hits > before
    shown = view.graphics.grab().toImage()
    item.screen = _Direct()
    view.graphics.viewport().update()
    direct = view.graphics.grab().toImage()
    assert shown == direct
    view.clear()  # the view lets go of its copy with its film
    assert view.image_item.screen._pixels is None


class _Direct(ScreenImage):
    """Draws as the display item did before the copy existed."""

    def draw(self, painter, target, image, generation, smooth) -> None:  # noqa: ANN001
        painter.drawImage(target, image)
