"""ssd_core.anchors: the book's anchor values and TinySSD's anchor count."""

import pytest
import torch
from torch import nn

from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES, anchors_per_pixel, multibox_prior
from tests.reference import ref_multibox_prior


def test_book_anchor_example():
    # d2l "Anchor Boxes": a 561 x 728 image, sizes [0.75, 0.5, 0.25], ratios [1, 2, 0.5].
    h, w = 561, 728
    Y = multibox_prior(torch.rand(1, 3, h, w), sizes=[0.75, 0.5, 0.25], ratios=[1, 2, 0.5])
    assert Y.shape == (1, 2042040, 4)
    assert Y.dtype == torch.float32
    boxes = Y.reshape(h, w, 5, 4)
    assert torch.allclose(boxes[250, 250, 0, :], torch.tensor([0.06, 0.07, 0.63, 0.82]), atol=6e-3)


def test_order_matches_reference_loop():
    sizes, ratios = [0.3, 0.6, 0.1], [1, 3, 0.25, 2]
    Y = multibox_prior(torch.zeros(2, 5, 3, 4), sizes, ratios)
    assert Y.shape == (1, 3 * 4 * 6, 4)
    assert torch.allclose(Y[0], torch.tensor(ref_multibox_prior(3, 4, sizes, ratios)), atol=1e-6)


def test_tinyssd_has_5444_anchors_for_256_input():
    maps = [32, 16, 8, 4, 1]
    per_scale = [
        multibox_prior(torch.zeros(1, 8, s, s), TINYSSD_SIZES[i], TINYSSD_RATIOS[i])
        for i, s in enumerate(maps)
    ]
    assert [a.shape[1] for a in per_scale] == [4096, 1024, 256, 64, 4]
    assert torch.cat(per_scale, dim=1).shape == (1, 5444, 4)
    assert all(anchors_per_pixel(s, r) == 4 for s, r in zip(TINYSSD_SIZES, TINYSSD_RATIOS))


def test_keeps_device_of_data():
    data = torch.zeros(1, 1, 2, 2, device="meta")
    assert multibox_prior(data, [0.5], [1]).device.type == "meta"


def test_prediction_concatenation_shapes_from_chapter():
    # The chapter's example with a local class predictor (3x3 conv, num_anchors*(C+1) channels).
    def cls_predictor(in_c, num_anchors, num_classes):
        return nn.Conv2d(in_c, num_anchors * (num_classes + 1), kernel_size=3, padding=1)

    Y1 = cls_predictor(8, 5, 10)(torch.zeros(2, 8, 20, 20))
    Y2 = cls_predictor(16, 3, 10)(torch.zeros(2, 16, 10, 10))
    assert (Y1.shape, Y2.shape) == ((2, 55, 20, 20), (2, 33, 10, 10))
    flat = torch.cat([torch.flatten(p.permute(0, 2, 3, 1), start_dim=1) for p in (Y1, Y2)], 1)
    assert flat.shape == (2, 25300)


@pytest.mark.parametrize(
    "sizes, ratios",
    [([], [1]), ([0.5], []), ([0.5, -0.1], [1]), ([0.5], [0]), ([float("nan")], [1])],
)
def test_bad_sizes_or_ratios_raise(sizes, ratios):
    with pytest.raises(ValueError, match="multibox_prior"):
        multibox_prior(torch.zeros(1, 1, 4, 4), sizes, ratios)
