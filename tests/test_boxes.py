"""ssd_core.boxes: conversions, IoU and offsets against hand-computed values, the loop oracles
and (bit for bit) the book's own functions."""

import pytest
import torch

from ssd_core.book import (
    book_box_center_to_corner,
    book_box_corner_to_center,
    book_box_iou,
    book_offset_boxes,
    book_offset_inverse,
)
from ssd_core.boxes import (
    box_center_to_corner,
    box_corner_to_center,
    box_iou,
    offset_boxes,
    offset_inverse,
)
from tests.reference import ref_box_iou, ref_offset_boxes, ref_offset_inverse


def test_corner_center_round_trip_book_boxes():
    # The book's dog and cat boxes (pixels).
    boxes = torch.tensor([[60.0, 45.0, 378.0, 516.0], [400.0, 112.0, 655.0, 493.0]])
    center = box_corner_to_center(boxes)
    assert torch.allclose(center[0], torch.tensor([219.0, 280.5, 318.0, 471.0]))
    assert torch.equal(box_center_to_corner(center), boxes)
    # Works batched on (..., 4).
    assert box_corner_to_center(boxes.expand(3, 2, 4)).shape == (3, 2, 4)


def test_box_iou_hand_values():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 1.0, 0.5], [0.5, 0.5, 1.5, 1.5], [2.0, 2.0, 3.0, 3.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[0.5, 0.25 / 1.75, 0.0]]))


def test_box_iou_degenerate_is_zero_not_nan():
    point = torch.tensor([[0.3, 0.3, 0.3, 0.3]])
    iou = box_iou(point, torch.cat((point, torch.tensor([[0.0, 0.0, 1.0, 1.0]]))))
    assert torch.equal(iou, torch.zeros(1, 2))


def test_box_iou_matches_reference_and_batches():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 30, 2, generator=g)
    boxes = torch.cat((xy, xy + torch.rand(2, 30, 2, generator=g) * 0.5), dim=-1)
    batched = box_iou(boxes[:, :20], boxes[:, 20:])
    assert batched.shape == (2, 20, 10)
    for i in range(2):
        assert torch.equal(batched[i], ref_box_iou(boxes[i, :20], boxes[i, 20:]))


def test_offsets_round_trip_and_reference():
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(50, 2, generator=g)
    anchors = torch.cat((xy, xy + 0.05 + torch.rand(50, 2, generator=g)), dim=1)
    xy = torch.rand(50, 2, generator=g)
    boxes = torch.cat((xy, xy + 0.05 + torch.rand(50, 2, generator=g)), dim=1)
    offsets = offset_boxes(anchors, boxes)
    pairs = zip(anchors.tolist(), boxes.tolist())
    expected = torch.tensor([ref_offset_boxes(a, b) for a, b in pairs])
    assert torch.allclose(offsets, expected, atol=1e-4, rtol=1e-5)
    assert torch.allclose(offset_inverse(anchors, offsets), boxes, atol=1e-5)
    assert torch.allclose(offset_inverse(anchors, offsets), ref_offset_inverse(anchors, offsets))
    assert torch.allclose(offset_inverse(anchors, torch.zeros(50, 4)), anchors, atol=1e-6)


# ------------------------------------------------ equal to the book's own functions, bit for bit


def _positive_boxes(g, n, quantize=False):
    xy = torch.rand(n, 2, generator=g)
    wh = 0.01 + torch.rand(n, 2, generator=g) * 0.6
    if quantize:  # a coarse grid: many equal IoUs
        xy, wh = (xy * 16).floor() / 16, (wh * 16).ceil() / 16
    return torch.cat((xy, xy + wh), dim=1)


@pytest.mark.parametrize("seed", range(4))
def test_box_iou_equals_the_books(seed):
    g = torch.Generator().manual_seed(seed)
    a, b = _positive_boxes(g, 300, seed % 2 == 1), _positive_boxes(g, 40, seed % 2 == 1)
    b[:5, 2] = b[:5, 0]  # a few degenerate boxes on one side: the book's IoU is 0, not NaN
    assert torch.equal(box_iou(a, b), book_box_iou(a, b))
    assert torch.equal(box_iou(b, a), book_box_iou(b, a))
    batched = box_iou(a[None, :100].expand(3, -1, -1), b[None].expand(3, -1, -1))
    assert torch.equal(batched, book_box_iou(a[:100], b).expand(3, -1, -1))


def test_box_iou_is_differentiable_like_the_books():
    """Inputs that require grad take the path without ``out=`` buffers: same values, and the
    gradient equals the book's."""
    g = torch.Generator().manual_seed(7)
    a, b = _positive_boxes(g, 50, False), _positive_boxes(g, 6, False)
    ours, theirs = a.clone().requires_grad_(), a.clone().requires_grad_()
    iou = box_iou(ours, b)
    assert torch.equal(iou.detach(), book_box_iou(a, b))
    iou.sum().backward()
    book_box_iou(theirs, b).sum().backward()
    assert torch.allclose(ours.grad, theirs.grad)
    assert ours.grad.abs().sum() > 0


def test_offsets_and_conversions_equal_the_books():
    g = torch.Generator().manual_seed(5)
    anchors, boxes = _positive_boxes(g, 1000), _positive_boxes(g, 1000)
    boxes[:10, 2] = boxes[:10, 0]  # zero-width boxes: the book's eps keeps the log finite
    assert torch.equal(box_corner_to_center(boxes), book_box_corner_to_center(boxes))
    center = box_corner_to_center(boxes)
    assert torch.equal(box_center_to_corner(center), book_box_center_to_corner(center))
    assert torch.equal(offset_boxes(anchors, boxes), book_offset_boxes(anchors, boxes))
    preds = torch.randn(1000, 4, generator=g)
    assert torch.equal(offset_inverse(anchors, preds), book_offset_inverse(anchors, preds))
    # Batched decoding equals the book's per-image decoding.
    batched = offset_inverse(anchors, preds.reshape(1, 1000, 4).expand(2, -1, -1))
    assert torch.equal(batched[1], book_offset_inverse(anchors, preds))
