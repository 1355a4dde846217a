"""Figures of the Teach page: small thumbnails of the photos with their boxes (the photo that
takes boxes by mouse is app/box_editor.py)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ssd_core.drawing import colour


def thumbnail(image: Image.Image, boxes, labels, class_names, side: int = 200) -> Image.Image:
    """A copy of ``image`` no larger than ``side`` px with its boxes (pixel corners of the full
    image) drawn in their class colours."""
    out = image.convert("RGB").copy()
    scale = min(1.0, side / max(out.size))
    out = out.resize((max(1, round(out.width * scale)), max(1, round(out.height * scale))))
    draw = ImageDraw.Draw(out)
    for (x1, y1, x2, y2), lab in zip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), labels):
        c = colour(class_names.index(lab)) if lab in class_names else "white"
        draw.rectangle([x1 * scale, y1 * scale, x2 * scale, y2 * scale], outline=c, width=3)
    return out
