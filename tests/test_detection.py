"""ssd_core.detection: the book's prediction example, equality with the loop reference."""

import pytest
import torch

from ssd_core.anchors import multibox_prior
from ssd_core.detection import multibox_detection, nms
from tests.reference import ref_multibox_detection, ref_nms

BOOK_ANCHORS = torch.tensor(
    [
        [0.1, 0.08, 0.52, 0.92],
        [0.08, 0.2, 0.56, 0.95],
        [0.15, 0.3, 0.62, 0.91],
        [0.55, 0.2, 0.9, 0.88],
    ]
)
BOOK_PROBS = torch.tensor([[0] * 4, [0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]])


def test_book_detection_example():
    out = multibox_detection(BOOK_PROBS[None], torch.zeros(1, 16), BOOK_ANCHORS[None], 0.5)
    expected = torch.tensor(
        [
            [0, 0.9, 0.1, 0.08, 0.52, 0.92],
            [1, 0.9, 0.55, 0.2, 0.9, 0.88],
            [-1, 0.8, 0.08, 0.2, 0.56, 0.95],
            [-1, 0.7, 0.15, 0.3, 0.62, 0.91],
        ]
    )
    assert out.shape == (1, 4, 6)
    assert torch.allclose(out[0], expected, atol=1e-6)


def test_book_nms_example():
    assert nms(BOOK_ANCHORS, BOOK_PROBS[1:].max(0).values, 0.5).tolist() == [0, 3]


def _random_boxes(g, k, quantize):
    xy = torch.rand(k, 2, generator=g)
    wh = torch.rand(k, 2, generator=g) * 0.4
    wh[torch.rand(k, generator=g) < 0.05] = 0.0  # degenerate
    boxes = torch.cat((xy, xy + wh), dim=1)
    if quantize:
        boxes = (boxes * 10).round() / 10
    dup = torch.rand(k, generator=g) < 0.1  # exact duplicates
    if k:
        boxes[dup] = boxes[0].clone()
    return boxes


@pytest.mark.parametrize("seed", range(10))
def test_nms_matches_book_loop(seed):
    g = torch.Generator().manual_seed(seed)
    k = [0, 1, 2, 50, 300, 700][seed % 6]
    boxes = _random_boxes(g, k, quantize=seed % 2 == 0)
    scores = (torch.rand(k, generator=g) * 5).round() / 5  # many tied scores
    for threshold in (0.0, 0.3, 0.5, 0.9):
        got = nms(boxes, scores, threshold)
        assert got.dtype == torch.long
        assert torch.equal(got, ref_nms(boxes, scores, threshold))


def test_nms_long_suppression_chain_across_chunks():
    # Boxes sliding by a small step: each suppresses the next, so keeps alternate. 600 boxes
    # span several internal chunks.
    x = torch.arange(600, dtype=torch.float32) * 0.01
    boxes = torch.stack((x, torch.zeros_like(x), x + 0.05, torch.ones_like(x)), dim=1)
    scores = 1.0 - x / 10
    got = nms(boxes, scores, 0.5)
    assert torch.equal(got, ref_nms(boxes, scores, 0.5))
    assert got[:5].tolist() == [0, 2, 4, 6, 8]


def _anchors():
    return torch.cat(
        (
            multibox_prior(torch.zeros(1, 1, 8, 8), [0.2, 0.3], [1, 2, 0.5]),
            multibox_prior(torch.zeros(1, 1, 2, 2), [0.6, 0.8], [1, 2, 0.5]),
        ),
        dim=1,
    )


def _probs(g, batch, classes, n, trained_like):
    logits = torch.randn(batch, classes + 1, n, generator=g) * 3
    if trained_like:  # almost every anchor is confidently background
        logits[:, 0] += 9
        hot = torch.rand(batch, n, generator=g) < 0.05
        logits[:, 0][hot] -= 14
    probs = torch.softmax(logits, dim=1)
    return (probs * 20).round() / 20 if not trained_like else probs  # ties when rounded


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("per_class", [False, True])
def test_multibox_detection_matches_book_loop(seed, per_class):
    g = torch.Generator().manual_seed(seed)
    anchors = _anchors()
    n = anchors.shape[1]
    classes = [1, 3][seed % 2]
    probs = _probs(g, 3, classes, n, trained_like=seed % 4 < 2)
    offsets = torch.randn(3, n * 4, generator=g) * 0.5
    threshold = [0.5, 0.3, 0.7, 0.45][seed % 4]
    got = multibox_detection(probs, offsets, anchors, threshold, per_class=per_class)
    expected = ref_multibox_detection(probs, offsets, anchors, threshold, per_class=per_class)
    assert got.shape == (3, n, 6)
    assert torch.equal(got[..., :2], expected[..., :2])
    assert torch.allclose(got[..., 2:], expected[..., 2:], atol=1e-6)


@pytest.mark.parametrize("per_class", [False, True])
def test_exact_order_false_keeps_every_detection(per_class):
    g = torch.Generator().manual_seed(3)
    anchors = _anchors()
    n = anchors.shape[1]
    probs = _probs(g, 4, 3, n, trained_like=True)
    offsets = torch.randn(4, n * 4, generator=g) * 0.5
    fast = multibox_detection(probs, offsets, anchors, per_class=per_class, exact_order=False)
    book = ref_multibox_detection(probs, offsets, anchors, per_class=per_class)
    for b in range(4):
        hits = book[b, :, 0] >= 0
        assert 0 < int(hits.sum()) < n
        # Detections are the leading rows, identical in content and order.
        assert torch.equal(fast[b, : int(hits.sum())], book[b, hits])
        assert torch.equal(fast[b, :, 0] >= 0, hits)
    # All rows are still there, only the class -1 rows may be ordered differently.
    assert torch.equal(fast[..., 1].sort(dim=1).values, book[..., 1].sort(dim=1).values)


def test_per_class_keeps_overlapping_boxes_of_different_classes():
    probs = torch.tensor([[[0.0, 0.0]], [[0.9, 0.1]], [[0.1, 0.8]]]).reshape(1, 3, 2)
    anchors = torch.tensor([[[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.52]]])
    agnostic = multibox_detection(probs, torch.zeros(1, 8), anchors)
    per_class = multibox_detection(probs, torch.zeros(1, 8), anchors, per_class=True)
    assert agnostic[0, :, 0].tolist() == [0, -1]
    assert per_class[0, :, 0].tolist() == [0, 1]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"boxes must have shape \(K, 4\)"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"scores must have shape \(K,\)"):
        nms(torch.zeros(3, 4), torch.zeros(4), 0.5)
    with pytest.raises(ValueError, match=r"cls_probs must have shape \(B, C\+1, N\)"):
        multibox_detection(BOOK_PROBS, torch.zeros(1, 16), BOOK_ANCHORS[None])
    with pytest.raises(ValueError, match=r"offset_preds must have shape \(B, N\*4\)"):
        multibox_detection(BOOK_PROBS[None], torch.zeros(1, 12), BOOK_ANCHORS[None])
    with pytest.raises(ValueError, match=r"anchors must have shape \(1, N, 4\)"):
        multibox_detection(BOOK_PROBS[None], torch.zeros(1, 16), BOOK_ANCHORS[None, :3])
