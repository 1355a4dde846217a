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
        draw.text((tx, ty), text, fill="black")
    return out
