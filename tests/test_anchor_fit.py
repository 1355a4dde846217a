"""ssd_core.anchor_fit: per-object counts agree with multibox_target on the same boxes, the
book's size rule reproduces TinySSD's and the shipped model's sizes, and dataset targets are
read the same from a synthetic set and from its exported copy."""

import json

import pytest
import torch

from ssd_core.anchor_fit import (
    anchor_fit,
    anchor_shapes,
    compare_sizes,
    dataset_labels,
    fit_summary,
    object_sizes,
    spread_sizes,
    suggest_sizes,
)
from ssd_core.anchors import TINYSSD_SIZES, anchor_layout, layout_anchors
from ssd_core.boxes import box_iou, offset_inverse
from ssd_core.data import SyntheticDetection, export_dataset, load_dataset
from ssd_core.matching import multibox_target
from ssd_core.resources import shipped_checkpoint


def _labels(seed, b=6, m=5, small=False):
    g = torch.Generator().manual_seed(seed)
    side = torch.rand(b, m, 2, generator=g) * (0.12 if small else 0.6) + 0.03
    xy = torch.rand(b, m, 2, generator=g) * (1 - side)
    labels = torch.cat((torch.randint(0, 3, (b, m, 1), generator=g).float(), xy, xy + side), -1)
    labels[0, 3:, 0] = -1  # padding rows
    return labels


def _per_object_from_target(anchors, labels, threshold):
    """Positive anchors per object and positives below threshold, read from multibox_target's
    outputs alone: decode each positive's offsets and find the object it encodes."""
    offsets, mask, cls = multibox_target(anchors, labels, threshold)
    counts, low = [], 0
    for b in range(labels.shape[0]):
        pos = torch.nonzero(cls[b] > 0).flatten()
        decoded = offset_inverse(anchors[0, pos], offsets[b].reshape(-1, 4)[pos])
        valid = torch.nonzero(labels[b, :, 0] >= 0).flatten()
        objs = labels[b, valid, 1:]
        owner = (decoded[:, None] - objs[None]).abs().sum(-1).argmin(1)
        assert ((decoded - objs[owner]).abs().max() < 1e-4) if len(pos) else True
        counts += torch.bincount(owner, minlength=len(valid)).tolist()
        iou = box_iou(anchors[0, pos], objs)[torch.arange(len(pos)), owner]
        low += int((iou < threshold).sum())
    return counts, low, int((cls > 0).sum())


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("small", [False, True])
def test_counts_agree_with_multibox_target(threshold, small):
    anchors = layout_anchors(anchor_layout())
    labels = _labels(1, small=small)
    fit = anchor_fit(anchors, labels, threshold)
    counts, low, total = _per_object_from_target(anchors, labels, threshold)
    assert fit.positives.tolist() == counts
    s = fit_summary(fit)
    assert s["positives"] == total and s["positives_below_threshold"] == low
    assert s["objects"] == int((labels[..., 0] >= 0).sum())
    # An object no anchor reaches keeps exactly the greedy step's anchor, below the threshold.
    assert (fit.positives[fit.unreached] == 1).all()
    assert (fit.greedy_iou[fit.unreached] < threshold).all()
    assert s["unreached"] <= low
    if small:
        assert s["unreached"] > 0  # tiny boxes against the book's 0.2+ anchors


def test_best_iou_is_the_max_over_all_anchors():
    anchors = layout_anchors(anchor_layout(input_size=320))
    labels = _labels(2)
    fit = anchor_fit(anchors, labels)
    valid = labels[..., 0] >= 0
    iou = torch.cat([box_iou(anchors[0], labels[b, valid[b], 1:]) for b in range(len(labels))],
                    dim=1)  # (N, P)
    assert torch.allclose(fit.best_iou, iou.max(0).values)
    assert torch.equal(fit.best_anchor, iou.argmax(0))
    assert torch.equal(fit.image, torch.nonzero(valid)[:, 0])
    assert torch.allclose(fit.widths, labels[valid][:, 3] - labels[valid][:, 1])


def test_the_books_rule_gives_tinyssds_and_the_shipped_sizes():
    assert spread_sizes(0.2, 0.88) == [[round(a, 3), round(b, 3)] for a, b in TINYSSD_SIZES]
    config = json.loads(shipped_checkpoint().with_suffix(".config.json").read_text())
    assert spread_sizes(0.1, 0.86) == config["anchor_sizes"]
    with pytest.raises(ValueError):
        spread_sizes(0.5, 0.2)


def test_suggestion_spans_the_object_sizes():
    labels = _labels(3)
    boxes = labels[labels[..., 0] >= 0][:, 1:]
    sizes = object_sizes(boxes)
    suggested = suggest_sizes(boxes)
    assert suggested[0][0] == round(float(sizes.min()), 3)
    assert suggested[-1][0] == round(float(sizes.max()), 3)
    middle = suggest_sizes(boxes, low=0.5, high=0.5)
    assert middle[0][0] == middle[-1][0] == round(float(sizes.quantile(0.5)), 3)


def test_anchor_shapes_per_scale():
    shapes = anchor_shapes(anchor_layout())
    assert [s for s, _, _ in shapes] == [0, 1, 2, 3, 4]
    _, w, h = shapes[0]
    assert torch.allclose(w[:2], torch.tensor([0.2, 0.272]), atol=1e-6)
    assert torch.allclose(w[2] * h[2], torch.tensor(0.04), atol=1e-6)  # ratio 2, same area


def test_shipped_sizes_reach_the_synthetic_objects_the_books_do_not():
    labels = dataset_labels(SyntheticDetection(60, seed=0))
    config = json.loads(shipped_checkpoint().with_suffix(".config.json").read_text())
    out = compare_sizes(labels, {"book": TINYSSD_SIZES, "shipped": config["anchor_sizes"]})
    assert out["book"]["unreached"] > 0
    assert out["shipped"]["unreached"] < out["book"]["unreached"]


def test_dataset_labels_from_synthetic_and_from_an_exported_copy(tmp_path):
    ds = SyntheticDetection(8, seed=4, image_size=96)
    labels = dataset_labels(ds)
    for i in range(len(ds)):
        target = ds[i][1]
        assert torch.allclose(labels[i, :len(target)], target)
        assert (labels[i, len(target):, 0] == -1).all()
    export_dataset(ds, tmp_path / "voc", "voc")
    loaded = load_dataset(tmp_path / "voc")
    assert torch.allclose(dataset_labels(loaded), labels, atol=1e-2)
    assert dataset_labels(ds, limit=3).shape[0] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_equals_cpu():
    anchors = layout_anchors(anchor_layout())
    labels = _labels(5)
    cpu, gpu = anchor_fit(anchors, labels), anchor_fit(anchors.cuda(), labels.cuda())
    assert gpu.best_iou.device.type == "cuda"
    assert torch.equal(cpu.positives, gpu.positives.cpu())
    assert torch.allclose(cpu.best_iou, gpu.best_iou.cpu())
