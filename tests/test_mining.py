"""ssd_core.mining: the groups and counts are hard_negative_mask's and multibox_target's, the
loss sums add up to class_loss_per_anchor's, and under mining they are what ssd_loss sums."""

import pytest
import torch

from ssd_core.anchors import anchor_layout, layout_anchors
from ssd_core.config import LossConfig
from ssd_core.losses import class_loss_per_anchor, ssd_loss
from ssd_core.matching import hard_negative_mask, multibox_target, negative_rank
from ssd_core.mining import focal_config, mine, mine_image


def _case(seed=0, b=2):
    g = torch.Generator().manual_seed(seed)
    anchors = layout_anchors(anchor_layout(input_size=128))
    n = anchors.shape[1]
    labels = torch.tensor([[[0, 0.1, 0.1, 0.5, 0.45], [2, 0.5, 0.5, 0.9, 0.95]],
                           [[1, 0.3, 0.2, 0.6, 0.7], [-1, -1, -1, -1, -1]]])[:b]
    return anchors, labels, torch.randn(b, n, 4, generator=g) * 2


@pytest.mark.parametrize("neg_ratio", [1, 3, 10])
def test_counts_agree_with_multibox_target_and_hard_negative_mask(neg_ratio):
    anchors, labels, preds = _case()
    m = mine_image(preds, anchors, labels, neg_ratio)
    _, _, cls = multibox_target(anchors, labels)
    loss = class_loss_per_anchor(preds, cls)
    assert torch.equal(m.cls_labels, cls)
    assert torch.equal(m.kept, hard_negative_mask(loss, cls, neg_ratio))
    counts = m.group_counts()
    assert counts[:, 0].tolist() == (cls > 0).sum(1).tolist()
    assert counts[:, 1].tolist() == [min(neg_ratio * int(p), int((cls == 0).sum()))
                                     for p in (cls > 0).sum(1)]
    assert (counts.sum(1) == cls.shape[1]).all()
    assert torch.allclose(m.group_sums().sum(1), loss.sum(1))
    assert torch.allclose(m.shares().sum(1), torch.ones(2))
    # kept negatives are exactly the ones ranked below the quota, and the hardest ones
    assert torch.equal(m.kept, (m.rank >= 0) & (m.rank < counts[:, 1:2]))
    for b in range(2):
        if m.dropped[b].any():
            assert m.loss[b][m.kept[b]].min() >= m.loss[b][m.dropped[b]].max()


def test_under_mining_the_sums_are_what_ssd_loss_uses():
    anchors, labels, preds = _case()
    offsets, mask, cls = multibox_target(anchors, labels)
    config = LossConfig(hard_negative_mining=True, normalize="positives", neg_ratio=3)
    m = mine(preds, cls, 3, config)
    out = ssd_loss(preds, cls, torch.zeros_like(offsets), offsets, mask, config)
    sums = m.group_sums()
    expected = (sums[:, 0] + sums[:, 1]).sum() / (cls > 0).sum()
    assert float(out["cls"]) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 5.0])
def test_focal_groups_and_losses(gamma):
    anchors, labels, preds = _case(1)
    ce = mine_image(preds, anchors, labels)
    focal = mine_image(preds, anchors, labels, config=focal_config(gamma))
    _, _, cls = multibox_target(anchors, labels)
    assert torch.allclose(focal.loss, class_loss_per_anchor(preds, cls, focal_config(gamma)))
    # background losses are monotone in p(background) under both: the same anchors are kept
    assert torch.equal(focal.kept, ce.kept)
    # focal weights a background anchor by (1 - alpha) (1 - p)^gamma <= 1 - alpha
    assert (focal.loss[ce.dropped] <= 0.75 * ce.loss[ce.dropped] + 1e-7).all()


def test_negative_rank_orders_by_loss_ties_to_lower_index():
    loss = torch.tensor([[0.5, 0.9, 0.5, 0.1, 0.9]])
    negative = torch.tensor([[True, True, True, True, False]])
    assert negative_rank(loss, negative).tolist() == [[1, 0, 2, 3, -1]]


def test_wrong_class_count_is_refused():
    anchors, labels, preds = _case()
    with pytest.raises(ValueError, match="class ids"):
        mine_image(preds[..., :2], anchors, labels)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_equals_cpu():
    anchors, labels, preds = _case()
    cpu = mine_image(preds, anchors, labels)
    gpu = mine_image(preds.cuda(), anchors.cuda(), labels.cuda())
    assert gpu.kept.device.type == "cuda"
    assert torch.equal(cpu.kept, gpu.kept.cpu()) and torch.equal(cpu.rank, gpu.rank.cpu())
