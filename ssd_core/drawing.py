"""Detections drawn onto an image (PIL): the one routine for an annotated image (``detect
--draw`` among its users), with one palette, so a class has one colour everywhere."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# Colour-blind-friendly qualitative palette (Okabe-Ito, then Tableau extras).
PALETTE = [
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
    "#17BECF", "#BCBD22", "#8C564B",
]


def colour(i: int) -> str:
    """The i-th palette colour (cycles)."""
    return PALETTE[i % len(PALETTE)]


def _luminance(hex_colour: str) -> float:
    """WCAG relative luminance of "#RRGGBB" (0 black .. 1 white)."""
    rgb = [int(hex_colour.lstrip("#")[k:k + 2], 16) / 255 for k in (0, 2, 4)]
    lin = [v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def text_colour(background: str) -> str:
    """"black" or "white", whichever contrasts more with a caption's ``background`` colour."""
    lum = _luminance(background)
    return "black" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "white"


def draw_detections(image: Image.Image, boxes, scores, labels, class_names,
                    width: int | None = None) -> Image.Image:
    """A copy of ``image`` (RGB) with boxes ``(K, 4)`` (pixel corners) drawn in their class
    colours, each captioned "class score". ``width`` default: about 1/150 of the short side."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    if width is None:
        width = max(2, round(min(out.size) / 150))
    for (x1, y1, x2, y2), s, c in zip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                                      np.asarray(scores).reshape(-1),
                                      np.asarray(labels).reshape(-1)):
        col = colour(int(c))
        draw.rectangle([x1, y1, x2, y2], outline=col, width=width)
        name = class_names[int(c)] if 0 <= int(c) < len(class_names) else str(int(c))
        text = f"{name} {float(s):.2f}"
        tx, ty = x1 + 2, max(0.0, y1 - 12)
        l, t, r, b = draw.textbbox((tx, ty), text)
        draw.rectangle([l - 1, t - 1, r + 1, b + 1], fill=col)
        draw.text((tx, ty), text, fill=text_colour(col))
    return out
