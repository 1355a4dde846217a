"""The book's offset transform term by term: an anchor of the layout picked by (scale, cell,
shape), four offsets decoded into a box and a box encoded into offsets, with every intermediate
number the formula shows.

Decoding is ``ssd_core.boxes.offset_inverse`` and encoding ``offset_boxes`` (the same calls, so
the numbers agree with training and detection); this module only names the terms.
"""

from __future__ import annotations

import torch

from .boxes import (
    CENTER_SCALE,
    SIZE_SCALE,
    box_center_to_corner,
    box_corner_to_center,
    offset_boxes,
    offset_inverse,
)

# The book's sigmas: t_x = (x_b - x_a) / w_a / 0.1, t_w = log(w_b / w_a) / 0.2.
SIGMA_XY = 1.0 / CENTER_SCALE
SIGMA_WH = 1.0 / SIZE_SCALE


def anchor_index(layout, scale: int, row: int, col: int, shape: int) -> int:
    """The index of the anchor at ``(row, col)`` of ``scale`` with ``shape`` (0-based, in
    multibox_prior's order) in a layout (``ssd_core.anchors.anchor_layout``); the inverse of
    ``locate_anchor``."""
    s = layout[int(scale)]
    if not (0 <= row < s.height and 0 <= col < s.width and 0 <= shape < s.per_pixel):
        raise IndexError(f"scale {scale} has a {s.height}x{s.width} map with {s.per_pixel} "
                         f"shapes per cell; got row {row}, col {col}, shape {shape}")
    return s.start + (int(row) * s.width + int(col)) * s.per_pixel + int(shape)


def _centers(boxes) -> dict:
    cx, cy, w, h = box_corner_to_center(boxes).unbind(-1)
    return {"cx": cx, "cy": cy, "w": w, "h": h}


def decode_terms(anchors, offsets) -> dict:
    """Offsets ``(..., 4)`` ``(t_x, t_y, t_w, t_h)`` against ``anchors (..., 4)`` -> dict of
    ``(...,)`` tensors: ``anchor`` and ``box`` centres/sizes (``cx, cy, w, h``), the shifts
    ``dx = t_x * 0.1 * w_a``, ``dy``, the scale factors ``kw = exp(t_w * 0.2)``, ``kh``, and
    ``corners (..., 4)`` = ``offset_inverse(anchors, offsets)``."""
    corners = offset_inverse(anchors, offsets)
    a, b = _centers(anchors), _centers(corners)
    return {"anchor": a, "box": b, "corners": corners,
            "dx": b["cx"] - a["cx"], "dy": b["cy"] - a["cy"],
            "kw": b["w"] / a["w"], "kh": b["h"] / a["h"]}


def encode_terms(anchors, boxes) -> dict:
    """A box ``(..., 4)`` corners against ``anchors (..., 4)`` -> dict: ``offsets (..., 4)`` =
    ``offset_boxes(anchors, boxes)``, ``anchor`` and ``box`` centres/sizes (``(...,)`` each)."""
    return {"offsets": offset_boxes(anchors, boxes), "anchor": _centers(anchors),
            "box": _centers(boxes)}


def center_box(cx, cy, w, h) -> torch.Tensor:
    """A corner box ``(4,)`` float32 from its centre and size (normalized)."""
    return box_center_to_corner(torch.tensor([cx, cy, w, h], dtype=torch.float32))
