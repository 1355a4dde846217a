"""ssd_core.detection: the book's prediction example, equality with the book's own functions and
with the loop oracles."""

import pytest
import torch

from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES, multibox_prior
from ssd_core.book import book_multibox_detection, book_nms
from ssd_core.boxes import offset_inverse
from ssd_core.detection import multibox_detection, nms
from tests.reference import ref_multibox_detection, ref_nms, ref_per_class_nms

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


def _tinyssd_anchors():
    maps = [32, 16, 8, 4, 1]
    return torch.cat([multibox_prior(torch.zeros(1, 1, s, s), TINYSSD_SIZES[i], TINYSSD_RATIOS[i])
                      for i, s in enumerate(maps)], dim=1)


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


# ------------------------------------------------ equal to the book's own functions, bit for bit


def test_book_functions_give_the_chapters_prediction_example():
    book = book_multibox_detection(BOOK_PROBS[None], torch.zeros(1, 16), BOOK_ANCHORS[None], 0.5)
    expected = torch.tensor([[0, 0.9, 0.1, 0.08, 0.52, 0.92], [1, 0.9, 0.55, 0.2, 0.9, 0.88],
                             [-1, 0.8, 0.08, 0.2, 0.56, 0.95], [-1, 0.7, 0.15, 0.3, 0.62, 0.91]])
    assert torch.allclose(book[0], expected, atol=1e-6)
    mine = multibox_detection(BOOK_PROBS[None], torch.zeros(1, 16), BOOK_ANCHORS[None], 0.5,
                              pos_threshold=0.009999999)
    assert torch.equal(mine, book)
    scores = BOOK_PROBS[1:].max(0).values
    assert torch.equal(nms(BOOK_ANCHORS, scores, 0.5), book_nms(BOOK_ANCHORS, scores, 0.5))


def _distinct(scores):
    """Nudge tied scores apart (the book's argsort is not stable, so ties have no one order)."""
    order = torch.argsort(scores, stable=True)
    s = scores[order]
    while bool((s[1:] == s[:-1]).any()):
        tie = torch.cat((torch.tensor([False]), s[1:] == s[:-1]))
        s = torch.where(tie, torch.nextafter(s, torch.tensor(2.0)), s)
    return torch.empty_like(scores).scatter_(0, order, s)


def _book_inputs(g, batch, classes, n, trained_like):
    probs = _probs(g, batch, classes, n, trained_like)
    for b in range(batch):  # the anchors' best class scores all differ
        conf, cls = probs[b, 1:].max(dim=0)
        probs[b, 1:].scatter_(0, cls[None], _distinct(conf)[None])
    return probs, torch.randn(batch, n * 4, generator=g) * 0.3


@pytest.mark.parametrize("seed", range(6))
def test_nms_equals_the_books(seed):
    g = torch.Generator().manual_seed(seed)
    anchors = _tinyssd_anchors()[0] if seed < 2 else _anchors()[0]
    n = anchors.shape[0]
    boxes = offset_inverse(anchors, torch.randn(n, 4, generator=g) * 0.5)
    scores = _distinct(torch.rand(n, generator=g))
    for threshold in (0.5, 0.3, 0.7, 0.0, 1.0):
        assert torch.equal(nms(boxes, scores, threshold), book_nms(boxes, scores, threshold))


@pytest.mark.parametrize("seed", range(6))
def test_multibox_detection_equals_the_books(seed):
    g = torch.Generator().manual_seed(seed)
    anchors = _tinyssd_anchors() if seed < 2 else _anchors()
    n = anchors.shape[1]
    probs, offsets = _book_inputs(g, 3, [1, 3][seed % 2], n, trained_like=seed % 3 != 2)
    threshold = [0.5, 0.3, 0.7][seed % 3]
    pos = [0.009999999, 0.009, 0.2][seed % 3]
    got = multibox_detection(probs, offsets, anchors, threshold, pos_threshold=pos)
    assert torch.equal(got, book_multibox_detection(probs, offsets, anchors, threshold, pos))


def test_nms_groups_is_per_class_nms():
    g = torch.Generator().manual_seed(9)
    boxes = _random_boxes(g, 300, quantize=False)
    scores = (torch.rand(300, generator=g) * 5).round() / 5
    labels = torch.randint(0, 3, (300,), generator=g)
    assert torch.equal(nms(boxes, scores, 0.5, groups=labels),
                       ref_per_class_nms(boxes, scores, labels, 0.5))


def test_descending_order_is_the_stable_argsort():
    """The keyed sort behind nms and multibox_detection: ties, negatives, -0.0 and +0.0."""
    from ssd_core.ordering import descending_order, top_k_first

    g = torch.Generator().manual_seed(3)
    values = (torch.randn(4, 3000, generator=g) * 4).round() / 4  # many exact ties
    values[0, :10] = torch.tensor([0.0, -0.0, 0.0, -0.0, 1e-45, -1e-45, 3e38, -3e38, 0.5, -0.5])
    values[1] = 0.0
    for v in (values, values[0], values.double(), values.half(), values.bfloat16()):
        stable = torch.argsort(v, dim=-1, descending=True, stable=True)
        assert torch.equal(descending_order(v), stable)
        assert torch.equal(top_k_first(v, 50), stable[..., :50])  # the matching's top-k
