"""Draw the application icon (a stylised chest radiograph) as PNG, ICO and ICNS with Pillow.

The icons are committed under ``packaging/icons/``; run this only to remake them::

    .venv/bin/python packaging/make_icons.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parent / "icons"
SIZE = 1024


def draw(size: int = SIZE) -> Image.Image:
    s = size / 256.0
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    # rounded dark plate (a light box)
    d.rounded_rectangle((8 * s, 8 * s, 248 * s, 248 * s), radius=44 * s, fill=(18, 30, 48, 255))
    lungs = Image.new("L", (size, size), 0)
    ld = ImageDraw.Draw(lungs)
    # two lung fields, bright on dark like a radiograph shown MONOCHROME2
    ld.ellipse((44 * s, 52 * s, 122 * s, 214 * s), fill=205)
    ld.ellipse((134 * s, 52 * s, 212 * s, 214 * s), fill=205)
    # mediastinum and heart shadow darken the middle
    ld.rectangle((114 * s, 40 * s, 142 * s, 222 * s), fill=0)
    ld.ellipse((112 * s, 132 * s, 176 * s, 206 * s), fill=60)
    lungs = lungs.filter(ImageFilter.GaussianBlur(5 * s))
    grey = Image.new("RGBA", (size, size), (226, 236, 246, 255))
    img.paste(grey, (0, 0), lungs)
    # ribs
    for i in range(5):
        y = (78 + 26 * i) * s
        d.arc((36 * s, y - 20 * s, 124 * s, y + 30 * s), 200, 330, fill=(150, 168, 190, 255),
              width=max(1, int(4 * s)))
        d.arc((132 * s, y - 20 * s, 220 * s, y + 30 * s), 210, 340, fill=(150, 168, 190, 255),
              width=max(1, int(4 * s)))
    # spine
    d.rectangle((122 * s, 30 * s, 134 * s, 230 * s), fill=(196, 208, 222, 255))
    # the finding marker: an amber ring over the right lower zone
    d.ellipse((54 * s, 132 * s, 108 * s, 186 * s), outline=(255, 176, 32, 255),
              width=max(2, int(9 * s)))
    return img


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    img = draw()
    img.resize((256, 256), Image.LANCZOS).save(OUT / "pneumoview.png")
    img.save(OUT / "pneumoview.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64),
                                            (128, 128), (256, 256)])
    img.save(OUT / "pneumoview.icns")
    for p in sorted(OUT.iterdir()):
        print(f"{p.stat().st_size:8d}  {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
