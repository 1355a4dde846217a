"""What a photo set holds (Box, ImageEntry) and the one check a box passes before it is kept.

Boxes are corners in pixels of the stored image, rounded to 1/1000 pixel (so COCO's x + width
gives the same number back), at least MIN_BOX_SIDE wide and high after clipping to the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ssd_core.errors import ConfigError
from ssd_core.userdata.names import _clean_label

MIN_BOX_SIDE = 1.0  # pixels
DECIMALS = 3  # box corners are kept to 1/1000 pixel


@dataclass(frozen=True)
class Box:
    """One object: its class name and corners in pixels of the stored image."""

    label: str
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class ImageEntry:
    """One photo: its id (never reused in a set), file under images/, size and boxes."""

    id: int
    file: str
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)


def _round(v: float) -> float:
    return round(float(v), DECIMALS)


def _check_box(box: Box, width: int, height: int, where: str) -> Box:
    """The box clipped to the image and rounded; ConfigError naming it when unusable."""
    label = _clean_label(box.label, where)
    try:
        vals = [float(v) for v in (box.x1, box.y1, box.x2, box.y2)]
    except (TypeError, ValueError):
        raise ConfigError(f"{where} ({label!r}): its corners must be numbers.",
                          field="boxes") from None
    shown = "[" + ", ".join(f"{v:g}" for v in vals) + "]"
    if not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"{where} ({label!r}) {shown}: a corner is not a finite number.",
                          field="boxes")
    x1, y1, x2, y2 = vals
    x1, x2 = min(x1, x2), max(x1, x2)  # a box dragged up or left has its corners swapped
    y1, y2 = min(y1, y2), max(y1, y2)
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise ConfigError(f"{where} ({label!r}) {shown} lies outside the {width}x{height} "
                          "image; draw it on the photo.", field="boxes")
    x1, y1 = _round(max(x1, 0.0)), _round(max(y1, 0.0))
    x2, y2 = _round(min(x2, float(width))), _round(min(y2, float(height)))
    if x2 - x1 < MIN_BOX_SIDE or y2 - y1 < MIN_BOX_SIDE:
        what = "has no area" if x2 <= x1 or y2 <= y1 else (
            f"is narrower than {MIN_BOX_SIDE:g} pixel")
        raise ConfigError(f"{where} ({label!r}) {shown} {what} inside the {width}x{height} "
                          "image; drag a larger box around the object.", field="boxes")
    return Box(label, x1, y1, x2, y2)


def _as_box(b, where: str) -> Box:
    """A Box, or a (label, x1, y1, x2, y2) sequence, or a dict with those keys."""
    if isinstance(b, Box):
        return b
    if isinstance(b, dict):
        try:
            return Box(b["label"], b["x1"], b["y1"], b["x2"], b["y2"])
        except KeyError as e:
            raise ConfigError(f"{where}: missing {e.args[0]!r}; a box needs label, x1, y1, "
                              "x2, y2.", field="boxes") from None
    if isinstance(b, (list, tuple)) and len(b) == 5:
        return Box(*b)
    raise ConfigError(f"{where}: {b!r} is not a box; give Box(label, x1, y1, x2, y2).",
                      field="boxes")
