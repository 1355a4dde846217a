"""TinySSD: the chapter's small SSD network (PyTorch edition of the book), plus describe().

The names are the book's: ``down_sample_blk``, ``base_net``, ``get_blk``, ``blk_forward``,
``cls_predictor``, ``bbox_predictor``, ``flatten_pred``, ``concat_preds``, ``TinySSD``.
Differences from the book, all invisible in the outputs: blocks live in ``nn.ModuleList``s
instead of ``setattr``, channel widths are configurable, and the anchors (which depend only on
the feature-map sizes) are computed once per input size/device/dtype and cached.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ssd_core.anchors import (
    NUM_SCALES,
    TINYSSD_RATIOS,
    TINYSSD_SIZES,
    anchor_layout,
    anchors_per_pixel,
    check_input_size,
    feature_map_sizes,
    layout_anchors,
    multibox_prior,
)
from ssd_core.errors import ConfigError
from ssd_core.seeding import INIT, torch_generator

NUM_BLOCKS = NUM_SCALES


def cls_predictor(num_inputs: int, num_anchors: int, num_classes: int) -> nn.Conv2d:
    """Class head: (B, num_inputs, h, w) -> (B, num_anchors*(num_classes+1), h, w)."""
    return nn.Conv2d(num_inputs, num_anchors * (num_classes + 1), kernel_size=3, padding=1)


def bbox_predictor(num_inputs: int, num_anchors: int) -> nn.Conv2d:
    """Offset head: (B, num_inputs, h, w) -> (B, num_anchors*4, h, w)."""
    return nn.Conv2d(num_inputs, num_anchors * 4, kernel_size=3, padding=1)


def flatten_pred(pred: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h*w*C), channels last so one anchor's predictions stay together."""
    return torch.flatten(pred.permute(0, 2, 3, 1), start_dim=1)


def concat_preds(preds: list[torch.Tensor]) -> torch.Tensor:
    """List of (B, C_i, h_i, w_i) -> (B, sum_i h_i*w_i*C_i)."""
    return torch.cat([flatten_pred(p) for p in preds], dim=1)


class DownSampleBlk(nn.Sequential):
    """The book's layers in the book's order, run with the last ReLU after the pooling.

    ReLU is monotone, so max(relu(x)) == relu(max(x)) bit for bit, and both orders send the
    gradient to the same element (the first maximum; nothing where the maximum is <= 0). After
    the pooling the last ReLU touches a quarter of the values: ~2.5% of a CPU training step."""

    def forward(self, X):
        *body, relu, pool = self
        for layer in body:
            X = layer(X)
        return relu(pool(X))


def down_sample_blk(in_channels: int, out_channels: int) -> nn.Sequential:
    """2x [conv3x3 pad 1, BatchNorm, ReLU] + MaxPool2d(2): (B, in, h, w) -> (B, out, h/2, w/2)."""
    blk: list[nn.Module] = []
    for _ in range(2):
        blk.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        blk.append(nn.BatchNorm2d(out_channels))
        blk.append(nn.ReLU())
        in_channels = out_channels
    blk.append(nn.MaxPool2d(2))
    return DownSampleBlk(*blk)


def base_net(channels=(16, 32, 64), in_channels: int = 3) -> nn.Sequential:
    """Three down-sample blocks: (B, 3, H, W) -> (B, channels[-1], H/8, W/8)."""
    num_filters = [in_channels, *channels]
    return nn.Sequential(
        *[down_sample_blk(num_filters[i], num_filters[i + 1]) for i in range(len(channels))]
    )


def get_blk(i: int, base_channels=(16, 32, 64), channels: int = 128) -> nn.Module:
    """Block i of TinySSD: 0 base net, 1-3 down-sample blocks, 4 global max pooling."""
    if i == 0:
        return base_net(base_channels)
    if i == 1:
        return down_sample_blk(base_channels[-1], channels)
    if i == 4:
        return nn.AdaptiveMaxPool2d((1, 1))
    return down_sample_blk(channels, channels)


def blk_forward(X, blk, size, ratio, cls_predictor, bbox_predictor):
    """The book's per-block step: returns (Y, anchors (1, h*w*a, 4), cls_preds, bbox_preds).

    TinySSD.forward does the same but takes the anchors from its cache.
    """
    Y = blk(X)
    anchors = multibox_prior(Y, sizes=size, ratios=ratio)
    return (Y, anchors, cls_predictor(Y), bbox_predictor(Y))


class TinySSD(nn.Module):
    """The chapter's TinySSD.

    forward(X (B, 3, S, S)) -> (anchors (1, N, 4), cls_preds (B, N, C+1), bbox_preds (B, N*4)),
    N = sum over the 5 blocks of h_i*w_i*a_i (5444 for S=256 and 4 anchors per pixel).
    """

    def __init__(
        self,
        num_classes: int,
        sizes=TINYSSD_SIZES,
        ratios=TINYSSD_RATIOS,
        base_channels=(16, 32, 64),
        channels: int = 128,
    ):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}.")
        if len(sizes) != NUM_BLOCKS or len(ratios) != NUM_BLOCKS:
            raise ConfigError(
                f"TinySSD has {NUM_BLOCKS} blocks: give {NUM_BLOCKS} lists of sizes and of ratios "
                f"(got {len(sizes)} and {len(ratios)})."
            )
        for s, r in zip(sizes, ratios):
            if not len(s) or not len(r) or min(s) <= 0 or min(r) <= 0:
                raise ConfigError(
                    f"Anchor sizes and ratios must be non-empty lists of positive numbers, "
                    f"got sizes={s!r}, ratios={r!r}."
                )
        self.num_classes = num_classes
        self.sizes = [list(s) for s in sizes]
        self.ratios = [list(r) for r in ratios]
        self.base_channels = tuple(base_channels)
        self.channels = channels
        in_channels = [self.base_channels[-1]] + [channels] * (NUM_BLOCKS - 1)
        self.num_anchors = [anchors_per_pixel(s, r) for s, r in zip(self.sizes, self.ratios)]
        self.blks = nn.ModuleList(
            get_blk(i, self.base_channels, channels) for i in range(NUM_BLOCKS)
        )
        self.cls_predictors = nn.ModuleList(
            cls_predictor(c, a, num_classes) for c, a in zip(in_channels, self.num_anchors)
        )
        self.bbox_predictors = nn.ModuleList(
            bbox_predictor(c, a) for c, a in zip(in_channels, self.num_anchors)
        )
        # Not a buffer: anchors are a pure function of the feature-map sizes, never saved.
        self._anchor_cache: dict[tuple, torch.Tensor] = {}

    def _check_input(self, X: torch.Tensor) -> None:
        if X.dim() != 4 or X.shape[1] != 3:
            raise ConfigError(
                f"TinySSD expects a batch of RGB images shaped (B, 3, H, W), got {tuple(X.shape)}."
            )
        for side in X.shape[-2:]:
            check_input_size(int(side))

    def layout(self, feature_shapes=None, input_size=256):
        """This model's anchor layout (ssd_core.anchors.anchor_layout with its sizes/ratios)."""
        return anchor_layout(feature_shapes, self.sizes, self.ratios, input_size)

    def anchors_for(self, feature_shapes, device, dtype=torch.float32) -> torch.Tensor:
        """Anchors (1, N, 4) for blocks whose outputs have the given (h, w); cached."""
        key = (tuple(tuple(s) for s in feature_shapes), str(device), dtype)
        anchors = self._anchor_cache.get(key)
        if anchors is None:
            anchors = layout_anchors(self.layout(feature_shapes), device, dtype)
            self._anchor_cache[key] = anchors
        return anchors

    def feature_maps(self, X: torch.Tensor) -> list[torch.Tensor]:
        """Each block's output for X (B, 3, S, S): shapes (B, C_i, h_i, w_i), i = 0..4."""
        self._check_input(X)
        outs = []
        for blk in self.blks:
            X = blk(X)
            outs.append(X)
        return outs

    def forward(self, X: torch.Tensor):
        self._check_input(X)
        # The input's dtype, not the features': under autocast those are half precision, and
        # anchors stored in bf16 would shift boxes by up to ~0.4%.
        device, dtype = X.device, X.dtype
        cls_preds, bbox_preds, shapes = [], [], []
        for blk, cls_head, bbox_head in zip(self.blks, self.cls_predictors, self.bbox_predictors):
            X = blk(X)
            shapes.append(tuple(X.shape[-2:]))
            cls_preds.append(cls_head(X))
            bbox_preds.append(bbox_head(X))
        anchors = self.anchors_for(shapes, device, dtype)
        cls_preds = concat_preds(cls_preds)
        cls_preds = cls_preds.reshape(cls_preds.shape[0], -1, self.num_classes + 1)
        return anchors, cls_preds, concat_preds(bbox_preds)


def init_parameters(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Initialize every parameter of ``model`` as PyTorch's layer defaults do, drawing only from
    ``generator`` (on the parameters' device): convolutions and linear layers get Kaiming-uniform
    weights (a=sqrt(5)) and uniform biases of bound 1/sqrt(fan_in); BatchNorm gets ones, zeros
    and fresh running statistics. Returns ``model``."""
    for m in model.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, nn.modules.batchnorm._NormBase):
            m.reset_parameters()  # no random draws
        elif next(m.parameters(recurse=False), None) is not None:
            raise TypeError(f"init_parameters does not know how to initialize {type(m).__name__}")
    return model


def seeded(make: Callable[[], nn.Module], generator: torch.Generator) -> nn.Module:
    """``make()`` built on the meta device (so nothing is drawn from torch's process-wide
    generator), then materialized on ``generator``'s device and initialized from it."""
    with torch.device("meta"):
        model = make()
    model.to_empty(device=generator.device)
    return init_parameters(model, generator)


def seeded_tinyssd(num_classes: int, seed: int = 0, **kwargs) -> TinySSD:
    """A TinySSD with the random weights a run of this ``seed`` starts from (the run's own
    generator, stream INIT); the same seed gives the same weights in any thread."""
    return seeded(lambda: TinySSD(num_classes, **kwargs), torch_generator(seed, INIT))


BLOCK_NAMES = ["base_net", "down_sample_blk_1", "down_sample_blk_2", "down_sample_blk_3",
               "global_max_pool"]


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _receptive_field(blk: nn.Module, rf: int, jump: int, size: int) -> tuple[int, int, int]:
    """Walk one block's convs and pools: (rf, jump, size) in -> (rf, jump, size) out.

    rf grows by (k-1)*jump at each layer and jump multiplies by the stride; global pooling sees
    the whole feature map, i.e. a kernel as large as the map.
    """
    for m in blk.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            k = m.kernel_size if isinstance(m, nn.MaxPool2d) else m.kernel_size[0]
            s = m.stride if isinstance(m, nn.MaxPool2d) else m.stride[0]
            k = k[0] if isinstance(k, tuple) else k
            s = s[0] if isinstance(s, tuple) else s
            rf += (k - 1) * jump
            jump *= s
            size //= s
        elif isinstance(m, nn.AdaptiveMaxPool2d):
            rf += (size - 1) * jump
            jump *= size
            size = 1
    return rf, jump, size


def describe(model: TinySSD, input_size: int = 256) -> list[dict]:
    """One dict per block of ``model`` at ``input_size`` (no forward pass needed).

    Keys: name, output_shape (C, H, W), anchors_per_pixel, num_anchors (h*w*a), sizes, ratios,
    receptive_field (pixels of the input that one output element sees; may exceed the image,
    the excess is padding), stride (input pixels between neighbouring elements),
    params (block + its two predictors), block_params, cls_params, bbox_params.
    Sum of ``params`` over the blocks == sum(p.numel() for p in model.parameters()).
    """
    feature_map_sizes(input_size)  # validates input_size
    rf, jump, size = 1, 1, input_size
    channels = 3
    rows = []
    for i, blk in enumerate(model.blks):
        rf, jump, size = _receptive_field(blk, rf, jump, size)
        convs = [m for m in blk.modules() if isinstance(m, nn.Conv2d)]
        if convs:
            channels = convs[-1].out_channels
        a = model.num_anchors[i]
        block_params = _count(blk)
        cls_params = _count(model.cls_predictors[i])
        bbox_params = _count(model.bbox_predictors[i])
        rows.append(
            {
                "name": BLOCK_NAMES[i],
                "output_shape": (channels, size, size),
                "anchors_per_pixel": a,
                "num_anchors": size * size * a,
                "sizes": list(model.sizes[i]),
                "ratios": list(model.ratios[i]),
                "receptive_field": rf,
                "stride": jump,
                "params": block_params + cls_params + bbox_params,
                "block_params": block_params,
                "cls_params": cls_params,
                "bbox_params": bbox_params,
            }
        )
    return rows
