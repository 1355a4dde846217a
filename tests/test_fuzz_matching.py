"""Property tests of anchor labeling (``multibox_target``): random anchors and ground truths,
degenerate boxes and padding rows give finite offsets, a mask exactly on the positive anchors,
the book's greedy assignment and the reference loops' result; invalid inputs raise ValueError.
Hypothesis runs derandomized, so CI sees the same examples every time.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssd_core.detection import multibox_detection
from ssd_core.matching import match_anchors, multibox_target
from tests.helpers import FUZZ, boxes
from tests.reference import ref_multibox_target


@st.composite
def target_inputs(draw, max_n=60):
    """anchors (1, N, 4) with positive sides, labels (B, M, 5) with padding rows (class -1)
    anywhere, degenerate ground truths allowed, a class count and an IoU threshold."""
    n = draw(st.integers(1, max_n))
    batch = draw(st.integers(1, 3))
    m = draw(st.integers(0, 6))
    num_classes = draw(st.integers(1, 4))
    anchors = draw(boxes(n, degenerate=False, min_side=0.01))[None]
    rows = []
    for _ in range(batch):
        gt = draw(boxes(m))
        cls = [float(draw(st.one_of(st.integers(0, num_classes - 1), st.just(-1))))
               for _ in range(m)]
        rows.append(torch.cat([torch.tensor(cls).reshape(m, 1), gt], dim=1))
    labels = torch.stack(rows) if m else torch.zeros(batch, 0, 5)
    thr = draw(st.one_of(st.floats(0.01, 1.0), st.just(1.0), st.just(0.5)))
    return anchors, labels, num_classes, thr


@settings(FUZZ, max_examples=200)
@given(target_inputs())
def test_multibox_target_properties(case):
    anchors, labels, num_classes, thr = case
    batch, n = labels.shape[0], anchors.shape[1]
    offset, mask, cls = multibox_target(anchors, labels, thr)
    assert offset.shape == (batch, 4 * n) and mask.shape == (batch, 4 * n)
    assert cls.shape == (batch, n) and cls.dtype == torch.int64
    assert bool(torch.isfinite(offset).all()), offset
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert bool(((cls >= 0) & (cls <= num_classes)).all())
    # The mask is 1 exactly on the 4 offsets of positive anchors; other offsets are 0.
    assert torch.equal(mask.reshape(batch, n, 4), (cls > 0)[..., None].expand(-1, -1, 4).float())
    assert bool((offset[mask == 0] == 0).all())
    # Greedy step of the book: every real object gets at least one anchor while anchors last.
    gt_index = match_anchors(anchors, labels, thr).gt_index
    for b in range(batch):
        real = torch.nonzero(labels[b, :, 0] >= 0).reshape(-1).tolist()
        got = set(gt_index[b][gt_index[b] >= 0].tolist())
        if len(real) <= n:
            assert set(real) <= got, (real, got)
        assert got <= set(real)


@settings(FUZZ, max_examples=60)
@given(target_inputs(max_n=25))
def test_multibox_target_matches_reference_loops(case):
    anchors, labels, _, thr = case
    got = multibox_target(anchors, labels, thr)
    want = ref_multibox_target(anchors, labels, thr)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert torch.allclose(g.float(), w.float(), atol=1e-4, rtol=1e-4), (g, w)


@st.composite
def bad_target_inputs(draw):
    anchors, labels, _, thr = draw(target_inputs(max_n=10))
    kind = draw(st.sampled_from(["anchor-shape", "label-shape", "nan-anchor", "inf-anchor",
                                 "nan-box", "nan-class", "inf-class", "huge-class", "flipped-box",
                                 "zero-anchor", "threshold", "not-tensor", "empty-anchors"]))
    if kind == "anchor-shape":
        shape = draw(st.lists(st.integers(0, 4), max_size=4))
        if shape and shape[-1] == 4:
            shape[-1] = 3
        anchors = torch.rand(shape)
    elif kind == "label-shape":
        shape = draw(st.lists(st.integers(0, 5), max_size=4))
        if shape and shape[-1] == 5:
            shape[-1] = 4
        labels = torch.zeros(shape)
    elif kind in ("nan-anchor", "inf-anchor"):
        anchors = anchors.clone()
        anchors[0, draw(st.integers(0, anchors.shape[1] - 1)), draw(st.integers(0, 3))] = (
            math.nan if kind == "nan-anchor" else math.inf)
    elif kind == "zero-anchor":
        anchors = anchors.clone()
        i = draw(st.integers(0, anchors.shape[1] - 1))
        anchors[0, i, 2] = anchors[0, i, 0]
    elif kind == "threshold":
        thr = draw(st.sampled_from([0.0, -0.5, 1.5, math.nan, math.inf]))
    elif kind == "not-tensor":
        anchors = anchors.tolist()
    elif kind == "empty-anchors":
        anchors = torch.zeros(1, 0, 4)
    else:
        labels = torch.cat([labels, torch.tensor([[[0, .1, .1, .5, .5]]]).expand(
            labels.shape[0], 1, 5)], dim=1).clone()
        row = labels[:, -1]
        if kind == "nan-box":
            row[:, 2] = math.nan
        elif kind == "nan-class":
            row[:, 0] = math.nan
        elif kind == "inf-class":
            row[:, 0] = math.inf
        elif kind == "huge-class":
            row[:, 0] = 1e30
        else:  # flipped: x2 < x1
            row[:, 3] = 0.05
    return kind, anchors, labels, thr


@settings(FUZZ, max_examples=150)
@given(bad_target_inputs())
def test_multibox_target_invalid_inputs_raise_value_error(case):
    kind, anchors, labels, thr = case
    with pytest.raises(ValueError):
        multibox_target(anchors, labels, thr)


def test_empty_batch_and_no_slots():
    """B = 0 images and M = 0 label slots are valid, just empty."""
    anchors = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9]]])
    offset, mask, cls = multibox_target(anchors, torch.zeros(0, 3, 5))
    assert offset.shape == (0, 8) and mask.shape == (0, 8) and cls.shape == (0, 2)
    offset, mask, cls = multibox_target(anchors, torch.zeros(2, 0, 5))
    assert cls.shape == (2, 2) and not bool(cls.any()) and not bool(mask.any())
    out = multibox_detection(torch.zeros(0, 2, 2), torch.zeros(0, 8), anchors)
    assert out.shape == (0, 2, 6)
