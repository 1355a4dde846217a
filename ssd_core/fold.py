"""BatchNorm folded into the convolution before it, for inference: ``fold_batchnorm(model)``.

In eval mode a BatchNorm is an affine map per channel, ``y = (x - mean) / sqrt(var + eps) *
gamma + beta``; after a convolution it can be folded into that convolution's weights and bias,
so inference runs one pass over each activation instead of two. The folded copy computes the
eval-mode model's function (equal up to float rounding; tests/test_fold.py bounds it).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["fold_batchnorm", "fold_conv_bn"]


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d computing ``bn(conv(x))`` with ``bn`` in eval mode (running statistics).
    The arithmetic runs in float64, then is cast back to the convolution's dtype."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_conv_bn: the BatchNorm tracks no running statistics "
                         "(track_running_stats=False), so eval mode uses batch statistics and "
                         "cannot be folded")
    if conv.out_channels != bn.num_features:
        raise ValueError(f"fold_conv_bn: the convolution has {conv.out_channels} output "
                         f"channels, the BatchNorm {bn.num_features} features")
    dtype = conv.weight.dtype
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    bias = (bias - bn.running_mean.double()) * scale
    if bn.bias is not None:
        bias = bias + bn.bias.double()
    folded = copy.deepcopy(conv)
    folded.weight = nn.Parameter(
        (conv.weight.double() * scale.view(-1, 1, 1, 1)).to(dtype), requires_grad=False)
    folded.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
    return folded


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode inference copy of ``model`` with every ``Conv2d -> BatchNorm2d`` pair inside
    an ``nn.Sequential`` (every BatchNorm of a TinySSD) folded into the convolution; the
    BatchNorm's slot becomes an ``nn.Identity`` so layer indices stay the same. ``model`` is
    left untouched. Raises ValueError for a BatchNorm that does not follow a convolution."""
    folded = copy.deepcopy(model).eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        layers = list(seq)
        for i, layer in enumerate(layers):
            if not isinstance(layer, nn.modules.batchnorm._BatchNorm):
                continue
            prev = layers[i - 1] if i > 0 else None
            if not isinstance(prev, nn.Conv2d) or not isinstance(layer, nn.BatchNorm2d):
                raise ValueError(f"fold_batchnorm: {type(layer).__name__} at position {i} of a "
                                 "Sequential does not follow a Conv2d, so it cannot be folded")
            seq[i - 1] = fold_conv_bn(prev, layer)
            seq[i] = nn.Identity()
    leftover = [type(m).__name__ for m in folded.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if leftover:
        raise ValueError(f"fold_batchnorm: {len(leftover)} BatchNorm layers outside an "
                         "nn.Sequential could not be folded")
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded
