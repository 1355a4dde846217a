"""Receptive fields of TinySSD's feature-map cells, in input pixels, and the anchors centred on
a cell.

Coordinates are continuous input pixels: pixel ``i`` covers ``[i, i + 1)``, so its centre is
``i + 0.5``. Each layer with kernel ``k``, stride ``s`` and padding ``p`` maps
``rf -> rf + (k - 1) * jump``, ``start -> start + ((k - 1) / 2 - p) * jump`` and
``jump -> jump * s`` (``start`` is the centre of cell 0, ``jump`` the distance between cell
centres); global max pooling is a kernel as large as its input map.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ssd_core.anchors import check_input_size, layout_anchors, locate_anchor


class BlockField(NamedTuple):
    """One block's output cells: receptive field ``rf`` and ``jump`` (input pixels), ``start``
    (centre of cell (0, 0) in input pixels) and the map's ``side``."""

    rf: int
    jump: int
    start: float
    side: int


def _pair(v) -> int:
    return int(v[0] if isinstance(v, tuple) else v)


def _layer(m: nn.Module, f: BlockField) -> BlockField:
    """One layer's effect on (rf, jump, start, side); layers without a kernel pass it on."""
    if isinstance(m, nn.AdaptiveMaxPool2d):
        k, s, p = f.side, f.side, 0
    elif isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
        k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
    else:
        return f
    return BlockField(f.rf + (k - 1) * f.jump, f.jump * s, f.start + ((k - 1) / 2 - p) * f.jump,
                      (f.side + 2 * p - k) // s + 1)


def block_fields(model, input_size: int = 256) -> list[BlockField]:
    """Each of ``model.blks``' output cells for a square ``input_size`` input -> one
    :class:`BlockField` per block (rf and jump equal ``describe()``'s receptive_field and
    stride)."""
    f = BlockField(1, 1, 0.5, check_input_size(input_size))
    out = []
    for blk in model.blks:
        for m in blk.modules():
            f = _layer(m, f)
        out.append(f)
    return out


def cell_field(model, scale: int, row: int, col: int, input_size: int = 256) -> dict:
    """Feature-map cell ``(row, col)`` of block ``scale`` -> its receptive field and anchors.

    Returns {"box": (x1, y1, x2, y2) the receptive field in input pixels (may reach past the
    image: that part is zero padding), "clipped": the box inside the image, "centre": (x, y),
    "rf", "jump", "side", "anchor_index" (a,) long, "anchors" (a, 4) pixel corners,
    "shapes": [(size, ratio)] per anchor}. IndexError for a cell outside the map.
    """
    fields = block_fields(model, input_size)
    if not 0 <= int(scale) < len(fields):
        raise IndexError(f"scale {scale} out of range: TinySSD has {len(fields)} blocks")
    f = fields[int(scale)]
    if not (0 <= int(row) < f.side and 0 <= int(col) < f.side):
        raise IndexError(f"cell ({row}, {col}) is outside block {scale}'s {f.side}×{f.side} map")
    cx, cy = f.start + int(col) * f.jump, f.start + int(row) * f.jump
    half = f.rf / 2
    box = (cx - half, cy - half, cx + half, cy + half)
    clipped = tuple(min(max(v, 0.0), float(input_size)) for v in box)
    layout = model.layout(input_size=input_size)
    s = layout[int(scale)]
    first = (int(row) * s.width + int(col)) * s.per_pixel
    index = torch.arange(s.start + first, s.start + first + s.per_pixel)
    anchors = layout_anchors([s])[0, first:first + s.per_pixel] * float(input_size)
    shapes = []
    for i in index.tolist():
        info = locate_anchor(layout, i)
        shapes.append((info["size"], info["ratio"]))
    return {"box": box, "clipped": clipped, "centre": (cx, cy), "rf": f.rf, "jump": f.jump,
            "side": f.side, "anchor_index": index, "anchors": anchors, "shapes": shapes}
