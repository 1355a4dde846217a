"""ssd_core.matching: the book's labeling example, equality with the book's own functions and
with the loop oracles, errors."""

import pytest
import torch

from ssd_core import matching
from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES, multibox_prior
from ssd_core.book import book_assign_anchor_to_bbox, book_multibox_target
from ssd_core.errors import AnnotationError
from ssd_core.matching import (
    assign_anchor_to_bbox,
    hard_negative_mask,
    match_anchors,
    multibox_target,
)
from tests.reference import (
    ref_assign_anchor_to_bbox,
    ref_hard_negative_mask,
    ref_multibox_target,
)


@pytest.fixture(params=["lists", "tensors"])
def greedy_loop(request, monkeypatch):
    """Run a test once with the greedy step on Python lists (a few images on the CPU) and once
    with the batched tensor loop (many images, or a GPU)."""
    monkeypatch.setattr(matching, "_FEW_ROWS", 10**9 if request.param == "lists" else -1)
    return request.param


BOOK_GT = torch.tensor([[0, 0.1, 0.08, 0.52, 0.92], [1, 0.55, 0.2, 0.9, 0.88]])
BOOK_ANCHORS = torch.tensor(
    [
        [0, 0.1, 0.2, 0.3],
        [0.15, 0.2, 0.4, 0.4],
        [0.63, 0.05, 0.88, 0.98],
        [0.66, 0.45, 0.8, 0.8],
        [0.57, 0.3, 0.92, 0.9],
    ]
)


def assert_the_chapters_labeling_example(offsets, mask, cls):
    """The chapter's printed targets for its 5 anchors and 2 ground truths."""
    assert torch.equal(cls, torch.tensor([[0, 1, 2, 0, 2]]))
    assert torch.equal(mask, torch.tensor([[0.0] * 4 + [1.0] * 8 + [0.0] * 4 + [1.0] * 4]))
    expected = torch.tensor(
        [[0, 0, 0, 0, 1.4, 10.0, 2.594, 7.1754, -1.2, 0.2688, 1.6824, -1.5655]
         + [0, 0, 0, 0, -0.5714, -1.0, 0.0, 0.6258]]
    )
    assert torch.allclose(offsets, expected, atol=1e-4)


def test_book_labeling_example():
    assert_the_chapters_labeling_example(
        *multibox_target(BOOK_ANCHORS.unsqueeze(0), BOOK_GT.unsqueeze(0)))


def test_book_assign_anchor_to_bbox_signature():
    out = assign_anchor_to_bbox(BOOK_GT[:, 1:], BOOK_ANCHORS, "cpu")
    assert out.dtype == torch.long
    assert torch.equal(out, torch.tensor([-1, 0, 1, -1, 1]))


def test_match_anchors_fields():
    labels = torch.cat((BOOK_GT, torch.full((1, 5), -1.0)))[None]  # one padding row
    match = match_anchors(BOOK_ANCHORS, labels)
    assert torch.equal(match.gt_index, torch.tensor([[-1, 0, 1, -1, 1]]))
    # Greedy picks: anchor 4 for the cat, then anchor 1 for the dog; anchor 2 is a threshold
    # match (IoU >= 0.5 with the cat).
    assert torch.equal(match.greedy, torch.tensor([[False, True, False, False, True]]))
    assert match.iou.shape == (1, 5, 3)
    assert torch.equal(match.iou[0, :, 2], torch.zeros(5))


def _random_labels(g, batch, slots, quantize):
    """Labels with padding rows anywhere, degenerate, duplicate and overlapping boxes."""
    xy = torch.rand(batch, slots, 2, generator=g)
    wh = torch.rand(batch, slots, 2, generator=g) * 0.6
    wh[torch.rand(batch, slots, generator=g) < 0.1] = 0.0  # degenerate boxes
    boxes = torch.cat((xy, (xy + wh).clamp(max=1.0)), dim=-1)
    if quantize:  # coarse grid -> exact IoU ties
        boxes = (boxes * 8).floor() / 8
    if slots > 1:  # duplicates: heavy overlap and tied IoUs
        dup = torch.rand(batch, slots, generator=g) < 0.15
        boxes[dup] = boxes[:, :1].expand(-1, slots, -1)[dup]
    cls = torch.randint(0, 3, (batch, slots), generator=g).float()
    labels = torch.cat((cls[..., None], boxes), dim=-1)
    pad = torch.rand(batch, slots, generator=g) < 0.3
    labels[pad] = -1.0
    return labels


@pytest.mark.parametrize("seed", range(12))
def test_multibox_target_matches_reference(seed, greedy_loop):
    g = torch.Generator().manual_seed(seed)
    anchors = torch.cat(
        (
            multibox_prior(torch.zeros(1, 1, 6, 6), [0.2, 0.3], [1, 2, 0.5]),
            multibox_prior(torch.zeros(1, 1, 2, 2), [0.6], [1, 2]),
        ),
        dim=1,
    )
    slots = [0, 1, 3, 8, 20][seed % 5]
    labels = _random_labels(g, 4, slots, quantize=seed % 2 == 0)
    if slots:
        labels[0] = -1.0  # an image without objects
    threshold = [0.5, 0.3, 0.7][seed % 3]
    offsets, mask, cls = multibox_target(anchors, labels, threshold)
    r_offsets, r_mask, r_cls = ref_multibox_target(anchors, labels, threshold)
    assert torch.equal(cls, r_cls)
    assert torch.equal(mask, r_mask)
    assert torch.allclose(offsets, r_offsets, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(offsets).all()
    if slots:
        assert not cls[0].any() and not mask[0].any()
    match = match_anchors(anchors, labels, threshold)
    for b in range(labels.shape[0]):
        valid = torch.nonzero(labels[b, :, 0] >= 0).reshape(-1)
        assigned, greedy = ref_assign_anchor_to_bbox(labels[b, valid, 1:], anchors[0], threshold)
        lookup = torch.cat((valid, torch.tensor([-1])))  # ref index -> original slot
        expected = lookup[assigned]
        assert torch.equal(match.gt_index[b], expected)
        assert torch.equal(match.greedy[b], greedy)
        # Every real object gets exactly one greedy anchor.
        assert int(greedy.sum()) == len(valid)


def test_fewer_anchors_than_objects():
    anchors = BOOK_ANCHORS[:1]
    labels = torch.cat((BOOK_GT, BOOK_GT))[None]
    match = match_anchors(anchors, labels)
    assert match.gt_index.tolist() == [[0]] and match.greedy.tolist() == [[True]]


@pytest.mark.parametrize("seed", range(6))
def test_hard_negative_mask_matches_reference(seed):
    g = torch.Generator().manual_seed(seed)
    cls = torch.randint(0, 3, (4, 60), generator=g) * (torch.rand(4, 60, generator=g) < 0.1)
    cls[0] = 0  # no positives: keeps neg_ratio negatives
    loss = (torch.rand(4, 60, generator=g) * 4).round()  # ties
    for ratio in (0, 1, 3, 100):
        got = hard_negative_mask(loss, cls, ratio)
        assert torch.equal(got, ref_hard_negative_mask(loss, cls, ratio))
    got = hard_negative_mask(loss, cls, 3)
    assert int(got[0].sum()) == 3 and not (got & (cls > 0)).any()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"labels must have shape \(B, M, 5\)"):
        multibox_target(BOOK_ANCHORS, BOOK_GT)
    with pytest.raises(ValueError, match=r"anchors must have shape \(N, 4\)"):
        multibox_target(BOOK_ANCHORS[:, :3], BOOK_GT[None])
    flipped = BOOK_GT.clone()
    flipped[0, 1], flipped[0, 3] = 0.52, 0.1
    with pytest.raises(AnnotationError, match="x2 < x1"):
        multibox_target(BOOK_ANCHORS, flipped[None])
    nan = BOOK_GT.clone()
    nan[1, 2] = float("nan")
    with pytest.raises(AnnotationError, match="NaN"):
        match_anchors(BOOK_ANCHORS, nan[None])
    with pytest.raises(ValueError, match="iou_threshold"):
        multibox_target(BOOK_ANCHORS, BOOK_GT[None], iou_threshold=0)
    with pytest.raises(ValueError, match=r"ground_truth must have shape \(M, 4\)"):
        assign_anchor_to_bbox(BOOK_GT, BOOK_ANCHORS, "cpu")
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        hard_negative_mask(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.long))
    # Padding rows may hold anything as long as their class is negative.
    padded = torch.cat((BOOK_GT, torch.tensor([[-1, 0.9, 0.9, 0.1, 0.1]])))[None]
    assert multibox_target(BOOK_ANCHORS, padded)[2].tolist() == [[0, 1, 2, 0, 2]]


# ------------------------------------------------ equal to the book's own functions, bit for bit


def test_book_functions_give_the_chapters_labeling_example():
    offsets, mask, cls = book_multibox_target(BOOK_ANCHORS[None], BOOK_GT[None])
    assert_the_chapters_labeling_example(offsets, mask, cls)
    for got, book in zip(multibox_target(BOOK_ANCHORS[None], BOOK_GT[None]),
                         (offsets, mask, cls)):
        assert torch.equal(got, book)
    assigned = book_assign_anchor_to_bbox(BOOK_GT[:, 1:], BOOK_ANCHORS, "cpu")
    assert torch.equal(assign_anchor_to_bbox(BOOK_GT[:, 1:], BOOK_ANCHORS, "cpu"), assigned)


def _tinyssd_anchors():
    maps = [32, 16, 8, 4, 1]
    return torch.cat([multibox_prior(torch.zeros(1, 1, s, s), TINYSSD_SIZES[i], TINYSSD_RATIOS[i])
                      for i, s in enumerate(maps)], dim=1)


def _objects(g, batch, slots, quantize):
    """``(batch, slots, 5)`` objects, no padding: overlapping, duplicate, tiny and zero-width
    boxes (the book's IoU is finite for them because every anchor has a positive area)."""
    xy = torch.rand(batch, slots, 2, generator=g) * 0.8
    wh = torch.rand(batch, slots, 2, generator=g) * 0.5
    wh[torch.rand(batch, slots, generator=g) < 0.05] = 0.0
    boxes = torch.cat((xy, xy + wh), dim=-1)
    if quantize:  # a coarse grid: exact IoU ties between anchors and between objects
        boxes = (boxes * 8).floor() / 8
    if slots > 1:
        dup = torch.rand(batch, slots, generator=g) < 0.15
        boxes[dup] = boxes[:, :1].expand(-1, slots, -1)[dup]
    cls = torch.randint(0, 3, (batch, slots, 1), generator=g).float()
    return torch.cat((cls, boxes), dim=-1)


@pytest.mark.parametrize("seed", range(10))
def test_multibox_target_equals_the_books(seed, greedy_loop):
    g = torch.Generator().manual_seed(seed)
    anchors = _tinyssd_anchors() if seed < 3 else torch.cat(
        (multibox_prior(torch.zeros(1, 1, 6, 6), [0.2, 0.3], [1, 2, 0.5]),
         multibox_prior(torch.zeros(1, 1, 2, 2), [0.6], [1, 2])), dim=1)
    slots = [1, 2, 5, 8, 13][seed % 5]
    labels = _objects(g, 8 if seed < 3 else 4, slots, quantize=seed % 2 == 1)
    book = book_multibox_target(anchors, labels)
    for got, want in zip(multibox_target(anchors, labels), book):
        assert got.dtype == want.dtype and torch.equal(got, want)
    for threshold in (0.5, 0.3, 0.7):
        for b in range(labels.shape[0]):
            want = book_assign_anchor_to_bbox(labels[b, :, 1:], anchors[0], "cpu", threshold)
            got = assign_anchor_to_bbox(labels[b, :, 1:], anchors[0], "cpu", threshold)
            assert torch.equal(got, want)


@pytest.mark.parametrize("seed", range(4))
def test_padded_multibox_target_equals_the_book_on_each_images_objects(seed, greedy_loop):
    """The book takes no padding rows: each image's real objects, one image at a time."""
    g = torch.Generator().manual_seed(100 + seed)
    anchors = _tinyssd_anchors()
    labels = _objects(g, 6, 8, quantize=seed % 2 == 1)
    counts = torch.randint(1, 9, (6,), generator=g)
    counts[0] = 8
    for b, m in enumerate(counts.tolist()):
        labels[b, m:] = -1.0
    labels[1] = labels[1, torch.randperm(8, generator=g)]  # padding rows anywhere
    got = multibox_target(anchors, labels)
    for b in range(6):
        real = labels[b : b + 1, labels[b, :, 0] >= 0]
        for mine, book in zip(got, book_multibox_target(anchors, real)):
            assert torch.equal(mine[b : b + 1], book)


@pytest.mark.parametrize("length", [1, 7, 256, 257, 320, 5444])
def test_blockwise_argmax_is_torch_argmax_with_ties(length):
    """The block argmax used on (B, M, N) IoUs: first position on ties, short last block."""
    from ssd_core.matching import _argmax_last

    g = torch.Generator().manual_seed(length)
    values = (torch.rand(6, 5, length, generator=g) * 4).floor() / 4  # many exact ties
    values[0, 0] = 0.0  # all tied
    values[1, 0, -1] = 2.0  # the maximum alone in the last (possibly short) block
    values[2, 1, :] = -1.0
    assert torch.equal(_argmax_last(values), values.argmax(dim=-1))
