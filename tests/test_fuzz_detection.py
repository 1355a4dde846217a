"""Property tests of detection (``multibox_detection``): random class probabilities, offsets
and anchors (degenerate and tied ones too) give finite rows, kept detections first by score,
above the threshold and never overlapping beyond the NMS threshold, as the reference loops do;
invalid inputs raise ValueError. Hypothesis runs derandomized, so CI sees the same examples
every time.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssd_core.detection import multibox_detection
from tests.helpers import FUZZ, boxes
from tests.reference import ref_multibox_detection


@st.composite
def detection_inputs(draw, max_n=60):
    n = draw(st.integers(1, max_n))
    batch = draw(st.integers(1, 3))
    num_classes = draw(st.integers(1, 4))
    anchors = draw(boxes(n, degenerate=True))[None]
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 20.0]))
    logits = torch.randn(batch, num_classes + 1, n, generator=g) * scale
    if draw(st.booleans()):  # exact ties between anchors and classes
        logits = logits.round()
    probs = torch.softmax(logits, dim=1)
    offsets = (torch.rand(batch, 4 * n, generator=g) * 2 - 1) * draw(st.sampled_from([0, 1, 5]))
    nms_thr = draw(st.one_of(st.floats(0.01, 1.0), st.just(1.0), st.just(0.5)))
    pos_thr = draw(st.one_of(st.just(0.009), st.floats(0.0, 1.0)))
    per_class, exact = draw(st.booleans()), draw(st.booleans())
    return probs, offsets, anchors, nms_thr, pos_thr, per_class, exact, num_classes


def _iou_matrix(b):
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area[:, None] + area[None, :] - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


@settings(FUZZ, max_examples=200)
@given(detection_inputs())
def test_multibox_detection_properties(case):
    probs, offsets, anchors, nms_thr, pos_thr, per_class, exact, num_classes = case
    batch, n = probs.shape[0], probs.shape[2]
    out = multibox_detection(probs, offsets, anchors, nms_threshold=nms_thr,
                             pos_threshold=pos_thr, per_class=per_class, exact_order=exact)
    assert out.shape == (batch, n, 6)
    assert bool(torch.isfinite(out).all())
    cls, score = out[..., 0], out[..., 1]
    assert bool((cls == cls.round()).all())
    assert bool(((cls >= -1) & (cls <= num_classes - 1)).all())
    assert bool(((score >= 0) & (score <= 1)).all())
    for b in range(batch):
        kept = out[b][out[b, :, 0] >= 0]
        # Detections come first, by descending score, and all pass the score threshold.
        assert bool((out[b, : len(kept), 0] >= 0).all())
        assert bool((kept[1:, 1] <= kept[:-1, 1]).all())
        assert bool((kept[:, 1] >= pos_thr).all())
        iou = _iou_matrix(kept[:, 2:])
        iou.fill_diagonal_(0)
        if per_class:
            iou = iou * (kept[:, None, 0] == kept[None, :, 0])
        assert bool((iou <= nms_thr + 1e-6).all()), (iou.max(), nms_thr)


@settings(FUZZ, max_examples=60)
@given(detection_inputs(max_n=30))
def test_multibox_detection_matches_reference_loops(case):
    probs, offsets, anchors, nms_thr, pos_thr, per_class, exact, _ = case
    got = multibox_detection(probs, offsets, anchors, nms_threshold=nms_thr,
                             pos_threshold=pos_thr, per_class=per_class, exact_order=exact)
    want = ref_multibox_detection(probs, offsets, anchors, nms_thr, pos_thr, per_class)
    if exact:
        assert torch.allclose(got, want, atol=1e-5), (got, want)
    else:  # the detections and their order are the book's; only background rows may move
        for g, w in zip(got, want):
            assert torch.allclose(g[g[:, 0] >= 0], w[w[:, 0] >= 0], atol=1e-5)


@st.composite
def bad_detection_inputs(draw):
    probs, offsets, anchors, nms_thr, pos_thr, *_ = draw(detection_inputs(max_n=10))
    kind = draw(st.sampled_from(["probs-shape", "offset-shape", "anchor-shape", "nan-probs",
                                 "nan-offsets", "nan-anchors", "inf-offsets", "nms-threshold",
                                 "pos-threshold", "anchors-list", "offsets-list"]))
    if kind == "probs-shape":
        probs = torch.zeros(draw(st.lists(st.integers(0, 3), max_size=4)))
        if probs.dim() == 3 and probs.shape[1] >= 2:
            probs = probs[:, :1]
    elif kind == "offset-shape":
        offsets = offsets[:, :-1]
    elif kind == "anchor-shape":
        anchors = anchors[:, :-1] if draw(st.booleans()) else anchors[..., :3]
    elif kind == "anchors-list":
        anchors = anchors.tolist()
    elif kind == "offsets-list":
        offsets = offsets.tolist()
    elif kind == "nms-threshold":
        nms_thr = draw(st.sampled_from([-0.1, 1.5, math.nan]))
    elif kind == "pos-threshold":
        pos_thr = draw(st.sampled_from([-0.1, 1.5, math.nan]))
    else:
        t = {"nan-probs": probs, "nan-offsets": offsets, "nan-anchors": anchors,
             "inf-offsets": offsets}[kind].clone()
        t.view(-1)[draw(st.integers(0, t.numel() - 1))] = (
            math.inf if kind == "inf-offsets" else math.nan)
        probs, offsets, anchors = (t if kind == "nan-probs" else probs,
                                   t if kind in ("nan-offsets", "inf-offsets") else offsets,
                                   t if kind == "nan-anchors" else anchors)
    return kind, probs, offsets, anchors, nms_thr, pos_thr


@settings(FUZZ, max_examples=150)
@given(bad_detection_inputs())
def test_multibox_detection_invalid_inputs_raise_value_error(case):
    kind, probs, offsets, anchors, nms_thr, pos_thr = case
    with pytest.raises(ValueError):
        multibox_detection(probs, offsets, anchors, nms_threshold=nms_thr,
                           pos_threshold=pos_thr)
