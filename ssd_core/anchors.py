"""Anchor boxes: the book's ``multibox_prior``, TinySSD's per-scale sizes and ratios, and the one
walk over the anchor layout (which scale, cell and shape each anchor index belongs to)."""

import math
from typing import NamedTuple

import numpy as np
import torch

from ssd_core.errors import ConfigError

# TinySSD's five scales (book): sizes grow linearly from 0.2 to 0.88, the second size of each
# scale is sqrt(s_i * s_{i+1}); every scale uses ratios 1, 2 and 0.5 -> 4 anchors per pixel.
TINYSSD_SIZES = [[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79], [0.88, 0.961]]
TINYSSD_RATIOS = [[1, 2, 0.5]] * 5


def anchors_per_pixel(sizes, ratios):
    """Number of anchors centred on each pixel: ``len(sizes) + len(ratios) - 1``."""
    return len(sizes) + len(ratios) - 1


def _check_spec(sizes, ratios):
    if len(sizes) == 0 or len(ratios) == 0:
        raise ValueError(
            f"multibox_prior needs at least one size and one ratio, got sizes={list(sizes)} "
            f"and ratios={list(ratios)}"
        )
    bad = [v for v in (*sizes, *ratios) if not (math.isfinite(float(v)) and float(v) > 0)]
    if bad:
        raise ValueError(
            f"multibox_prior: sizes and ratios must be positive finite numbers, got {bad}"
        )


def multibox_prior(data, sizes, ratios):
    """Anchors for feature map ``data (B, C, H, W)`` -> ``(1, H*W*(n+m-1), 4)`` corners.

    Per pixel (row-major), first every size with ``ratios[0]``, then ``sizes[0]`` with each of
    ``ratios[1:]``; widths are scaled by ``H / W`` as in the book. Float32, on ``data``'s device.
    """
    if data.dim() < 2:
        raise ValueError(
            "multibox_prior: data must be a feature map (B, C, H, W), "
            f"got shape {tuple(data.shape)}"
        )
    _check_spec(sizes, ratios)
    in_height, in_width = data.shape[-2:]
    device = data.device
    per_pixel = anchors_per_pixel(sizes, ratios)
    size_tensor = torch.tensor(sizes, dtype=torch.float32, device=device)
    ratio_tensor = torch.tensor(ratios, dtype=torch.float32, device=device)

    # Pixel centres in normalized coordinates.
    center_h = (torch.arange(in_height, device=device, dtype=torch.float32) + 0.5) / in_height
    center_w = (torch.arange(in_width, device=device, dtype=torch.float32) + 0.5) / in_width
    shift_y, shift_x = torch.meshgrid(center_h, center_w, indexing="ij")
    shift_y, shift_x = shift_y.reshape(-1), shift_x.reshape(-1)

    # The book multiplies widths by in_height / in_width so a ratio-1 anchor is square in pixels.
    w = torch.cat(
        (size_tensor * torch.sqrt(ratio_tensor[0]), size_tensor[0] * torch.sqrt(ratio_tensor[1:]))
    ) * in_height / in_width
    h = torch.cat(
        (size_tensor / torch.sqrt(ratio_tensor[0]), size_tensor[0] / torch.sqrt(ratio_tensor[1:]))
    )
    half = torch.stack((-w, -h, w, h), dim=1) / 2  # (per_pixel, 4)
    grid = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)  # (H*W, 4)
    anchors = grid[:, None, :] + half[None, :, :]
    return anchors.reshape(1, in_height * in_width * per_pixel, 4)


# ---------------------------------------------------------------- the layout of TinySSD's anchors

NUM_SCALES = 5  # TinySSD's blocks, each predicting at one scale


def check_input_size(size: int) -> int:
    """Raise ConfigError unless ``size`` is an int multiple of 32 and at least 64."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 64 or size % 32:
        raise ConfigError(
            f"TinySSD input size must be a multiple of 32 and at least 64 pixels, got {size!r}; "
            "resize the images to e.g. 256 (the book's size), 320 or 384."
        )
    return size


def feature_map_sizes(input_size: int = 256) -> list[int]:
    """Side length of each block's output for a square input: [32, 16, 8, 4, 1] for 256."""
    s = check_input_size(input_size) // 8
    sizes = [s]
    for _ in range(NUM_SCALES - 2):
        s //= 2
        sizes.append(s)
    return sizes + [1]  # the last block is global max pooling


class ScaleLayout(NamedTuple):
    """One scale's share of the concatenated anchors: indices ``start:stop``, per cell
    ``per_pixel`` anchors in multibox_prior's order."""

    scale: int
    height: int
    width: int
    sizes: list
    ratios: list
    per_pixel: int
    start: int
    stop: int


def anchor_layout(feature_shapes=None, sizes=None, ratios=None, input_size=256):
    """The layout of anchors over TinySSD's scales -> list of :class:`ScaleLayout`.

    ``feature_shapes``: each scale's (h, w); default the square maps of ``input_size``.
    ``sizes`` / ``ratios``: one list per scale (default the book's TINYSSD_SIZES / _RATIOS).
    """
    if feature_shapes is None:
        feature_shapes = [(s, s) for s in feature_map_sizes(input_size)]
    sizes = TINYSSD_SIZES if sizes is None else sizes
    ratios = TINYSSD_RATIOS if ratios is None else ratios
    layout, start = [], 0
    for scale, ((h, w), s, r) in enumerate(zip(feature_shapes, sizes, ratios)):
        per_pixel = anchors_per_pixel(s, r)
        stop = start + int(h) * int(w) * per_pixel
        layout.append(ScaleLayout(scale, int(h), int(w), list(s), list(r), per_pixel, start,
                                  stop))
        start = stop
    return layout


def layout_anchors(layout, device=None, dtype=torch.float32) -> torch.Tensor:
    """All anchors of a layout, concatenated scale by scale as TinySSD does -> (1, N, 4)."""
    parts = [
        # multibox_prior only reads the shape and device of its input.
        multibox_prior(torch.empty((1, 1, s.height, s.width), device=device), s.sizes, s.ratios)
        for s in layout
    ]
    return torch.cat(parts, dim=1).to(dtype)


def locate_anchor(layout, index: int) -> dict:
    """Which scale, feature-map cell and anchor shape the anchor ``index`` belongs to ->
    {"scale", "feature_map", "row", "col", "shape", "size", "ratio"}."""
    index = int(index)
    for s in layout:
        if s.start <= index < s.stop:
            cell, shape = divmod(index - s.start, s.per_pixel)
            size, ratio = pixel_shapes(s.sizes, s.ratios)[shape]
            return {"scale": s.scale, "feature_map": s.width, "row": cell // s.width,
                    "col": cell % s.width, "shape": shape, "size": size, "ratio": ratio}
    total = layout[-1].stop if layout else 0
    raise IndexError(f"anchor index {index} is out of range: the layout has {total} anchors")


def pixel_shapes(sizes, ratios) -> list[tuple[float, float]]:
    """``(size, ratio)`` of each anchor of one cell in ``multibox_prior``'s order: every size with
    ``ratios[0]``, then ``sizes[0]`` with each of ``ratios[1:]``."""
    return [(s, ratios[0]) for s in sizes] + [(sizes[0], r) for r in ratios[1:]]


def cell_slice(s: ScaleLayout, row: int, col: int) -> slice:
    """Indices (into the layout's concatenated anchors) of one cell's ``per_pixel`` anchors."""
    start = s.start + (row * s.width + col) * s.per_pixel
    return slice(start, start + s.per_pixel)


def shape_slice(s: ScaleLayout, shape: int) -> slice:
    """Indices of one anchor shape (``pixel_shapes``' ``shape``-th) in every cell of a scale."""
    return slice(s.start + shape, s.stop, s.per_pixel)


def cell_centres(s: ScaleLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A scale's cell centres as ``multibox_prior`` places them -> (centres (H*W, 2) normalized
    ``(x, y)``, rows (H*W,), cols (H*W,)), row-major."""
    rows, cols = np.divmod(np.arange(s.height * s.width), s.width)
    return np.stack([(cols + 0.5) / s.width, (rows + 0.5) / s.height], axis=1), rows, cols
