"""ssd_core's helpers for what the pages draw (they compute nothing themselves): one matching
pass for the Labeling page, the stand-in mining rule, normalized -> pixel boxes, the anchor
layout's cells and shapes, and the Evaluation page's per-chunk predictions."""

from __future__ import annotations

import numpy as np
import torch

from ssd_core.anchor_fit import (
    compare_sizes,
    dataset_labels,
    fit_anchor_set,
    fit_summary,
    object_wh,
)
from ssd_core.anchors import (
    anchor_layout,
    cell_centres,
    cell_slice,
    layout_anchors,
    locate_anchor,
    multibox_prior,
    pixel_shapes,
    shape_slice,
)
from ssd_core.boxes import box_iou, max_iou, to_pixels
from ssd_core.data import SyntheticDetection
from ssd_core.evaluate import evaluate_detections, evaluate_model, predict_range
from ssd_core.matching import hard_negative_mask, label_anchors, match_anchors, multibox_target
from ssd_core.mining import iou_negatives
from ssd_core.model import TinySSD


def _labels():
    return torch.tensor([[[0, 0.1, 0.1, 0.4, 0.5], [2, 0.5, 0.2, 0.9, 0.8]]])


def test_label_anchors_is_match_anchors_and_multibox_target_in_one_pass():
    anchors = layout_anchors(anchor_layout(input_size=128))[0]
    labels = _labels()
    lab = label_anchors(anchors, labels, 0.4)
    match = match_anchors(anchors, labels, 0.4)
    offset, _, cls_labels = multibox_target(anchors, labels, 0.4)
    assert torch.equal(lab.gt_index, match.gt_index) and torch.equal(lab.greedy, match.greedy)
    assert torch.equal(lab.iou, match.iou) and torch.equal(lab.cls_labels, cls_labels)
    assert torch.equal(lab.offsets.reshape(1, -1), offset)


def test_label_anchors_without_objects_is_all_background():
    anchors = layout_anchors(anchor_layout(input_size=64))[0]
    lab = label_anchors(anchors, torch.zeros((1, 0, 5)), 0.5)
    n = len(anchors)
    assert (lab.gt_index == -1).all() and not lab.greedy.any() and lab.iou.shape == (1, n, 0)
    assert (lab.cls_labels == 0).all() and (lab.offsets == 0).all()


def test_iou_negatives_rank_by_best_iou():
    anchors = layout_anchors(anchor_layout(input_size=64))[0]
    lab = label_anchors(anchors, _labels(), 0.5)
    kept = iou_negatives(lab.iou, lab.cls_labels, 3)
    expected = hard_negative_mask(lab.iou.amax(dim=2), lab.cls_labels, 3)
    assert torch.equal(kept, expected) and int(kept.sum()) == 3 * int((lab.cls_labels > 0).sum())
    none = label_anchors(anchors, torch.zeros((1, 0, 5)))
    assert int(iou_negatives(none.iou, none.cls_labels, 3).sum()) == 3


def test_to_pixels_and_max_iou():
    boxes = np.array([[0.1, 0.2, 0.5, 1.2]])
    np.testing.assert_allclose(to_pixels(boxes, (200, 100)), [[20, 20, 100, 120]])
    np.testing.assert_allclose(to_pixels(boxes, (200, 100), clip=True), [[20, 20, 100, 100]])
    t = to_pixels(torch.tensor(boxes, dtype=torch.float32), (200, 100), clip=True)
    assert torch.is_tensor(t) and torch.allclose(t, torch.tensor([[20.0, 20, 100, 100]]))
    np.testing.assert_allclose(to_pixels(np.array([[0.5, 0.25]]), (200, 100)), [[100, 25]])
    a, b = torch.rand(5, 2) * 0.5, torch.tensor([[0.1, 0.1, 0.6, 0.6], [0.3, 0.3, 0.9, 0.9]])
    a = torch.cat((a, a + 0.3), 1)
    assert torch.equal(max_iou(a, b), box_iou(a, b).max(dim=1).values)
    assert torch.equal(max_iou(a, b[:0]), torch.zeros(5))


def test_cells_and_shapes_follow_multibox_prior():
    layout = anchor_layout(sizes=[[0.2, 0.3, 0.25]] * 5, ratios=[[1, 2]] * 5, input_size=128)
    anchors = layout_anchors(layout)[0]
    s = layout[1]
    assert pixel_shapes(s.sizes, s.ratios) == [(0.2, 1), (0.3, 1), (0.25, 1), (0.2, 2)]
    one = multibox_prior(torch.empty(1, 1, s.height, s.width), s.sizes, s.ratios)[0]
    assert torch.equal(anchors[s.start:s.stop], one)
    cells = anchors[cell_slice(s, 2, 3)]
    for j, i in enumerate(range(cell_slice(s, 2, 3).start, cell_slice(s, 2, 3).stop)):
        info = locate_anchor(layout, i)
        assert (info["row"], info["col"], info["shape"]) == (2, 3, j)
    centres, rows, cols = cell_centres(s)
    k = 2 * s.width + 3
    assert (rows[k], cols[k]) == (2, 3)
    np.testing.assert_allclose(centres[k], ((cells[:, :2] + cells[:, 2:]) / 2).mean(0),
                               atol=1e-6)
    shape = anchors[shape_slice(s, 3)]
    assert len(shape) == s.height * s.width
    assert all(locate_anchor(layout, i)["shape"] == 3
               for i in range(shape_slice(s, 3).start, s.stop, s.per_pixel))


def test_predict_range_chunks_make_evaluate_model():
    torch.manual_seed(0)
    model = TinySSD(3).eval()
    ds = SyntheticDetection(6, seed=3, image_size=64)
    dets, gts = [], []
    for start in (0, 4):
        d, g = predict_range(model, ds, start, min(start + 4, 6), input_size=64)
        dets += d
        gts += g
    names = ["banana", "ring", "star"]
    ref, got = evaluate_model(model, ds, names, input_size=64), \
        evaluate_detections(dets, gts, 3, names)
    assert len(dets) == 6 and ref.ap50 == got.ap50 and ref.map == got.map


def test_fit_anchor_set_is_compare_sizes():
    y = dataset_labels(SyntheticDetection(8, seed=0, image_size=64))
    sizes = [[0.1, 0.15], [0.3, 0.35], [0.5, 0.55], [0.7, 0.75], [0.9, 0.95]]
    layout, fit = fit_anchor_set(y, sizes, input_size=128, threshold=0.4)
    assert layout[-1].stop == len(layout_anchors(layout)[0])
    assert compare_sizes(y, {"x": sizes}, 128, 0.4) == {"x": fit_summary(fit)}
    w, h = object_wh(fit.boxes)
    assert torch.equal(w, fit.boxes[:, 2] - fit.boxes[:, 0])
    assert torch.equal(h, fit.boxes[:, 3] - fit.boxes[:, 1])
