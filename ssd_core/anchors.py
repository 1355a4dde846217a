"""Anchor boxes: the book's ``multibox_prior`` and TinySSD's per-scale sizes and ratios."""

import math

import torch

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
