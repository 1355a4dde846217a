"""Hard negative mining laid open: for a model's class predictions on labelled images, which
background anchors the 3:1 rule keeps (ranked by their loss), and how the class loss splits
between positives, kept hard negatives and dropped easy negatives, under cross-entropy or focal
loss. Uses the training code's own pieces: ``multibox_target``, ``class_loss_per_anchor``,
``hard_negative_mask`` and its ranking, ``negative_rank``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .config import LossConfig
from .losses import class_loss_per_anchor
from .matching import hard_negative_mask, multibox_target, negative_rank

GROUPS = ("positives", "hard negatives (kept)", "easy negatives (dropped)")


class Mining(NamedTuple):
    """``B`` images, ``N`` anchors. ``loss (B, N)`` per-anchor class loss; ``positive``, ``kept``
    (the negatives the rule keeps) and ``dropped`` (the other negatives) ``(B, N)`` bool;
    ``rank (B, N)`` long: a negative's place by descending loss (0 = hardest; -1 for positives);
    ``cls_labels (B, N)`` the targets (0 background)."""

    loss: torch.Tensor
    positive: torch.Tensor
    kept: torch.Tensor
    dropped: torch.Tensor
    rank: torch.Tensor
    cls_labels: torch.Tensor

    def group_sums(self) -> torch.Tensor:
        """Class loss of each group in :data:`GROUPS` -> ``(B, 3)``."""
        return torch.stack([(self.loss * m).sum(dim=1)
                            for m in (self.positive, self.kept, self.dropped)], dim=1)

    def group_counts(self) -> torch.Tensor:
        """Anchors in each group of :data:`GROUPS` -> ``(B, 3)`` long."""
        return torch.stack([m.sum(dim=1) for m in (self.positive, self.kept, self.dropped)], 1)

    def shares(self) -> torch.Tensor:
        """Each group's share of the image's whole class loss (all anchors) -> ``(B, 3)``."""
        sums = self.group_sums()
        return sums / sums.sum(dim=1, keepdim=True).clamp_min(torch.finfo(sums.dtype).tiny)


def mine(cls_preds, cls_labels, neg_ratio: float = 3, config: LossConfig | None = None) -> Mining:
    """Split anchors by the mining rule: ``cls_preds (B, N, C+1)`` logits, ``cls_labels (B, N)``
    -> :class:`Mining` with ``class_loss_per_anchor`` under ``config`` (default cross-entropy)
    and ``hard_negative_mask(loss, cls_labels, neg_ratio)``, exactly as ``ssd_loss`` does."""
    config = config or LossConfig()
    with torch.no_grad():
        loss = class_loss_per_anchor(cls_preds.float(), cls_labels.long(), config)
    positive = cls_labels > 0
    negative = ~positive
    kept = hard_negative_mask(loss, cls_labels, neg_ratio)
    return Mining(loss, positive, kept, negative & ~kept, negative_rank(loss, negative),
                  cls_labels)


def mine_image(cls_preds, anchors, labels, neg_ratio: float = 3, iou_threshold: float = 0.5,
               config: LossConfig | None = None) -> Mining:
    """Targets and mining in one call: ``cls_preds (B, N, C+1)``, ``anchors (1, N, 4)`` (the
    model's own), ``labels (B, M, 5)`` -> :class:`Mining` (targets from ``multibox_target``)."""
    _, _, cls_labels = multibox_target(anchors, labels.to(anchors.dtype), iou_threshold)
    num_classes = cls_preds.shape[-1] - 1
    if bool((cls_labels > num_classes).any()):
        raise ValueError(f"labels hold class ids >= {num_classes}, but the model predicts only "
                         f"{num_classes} object classes")
    return mine(cls_preds, cls_labels.to(cls_preds.device), neg_ratio, config)


def iou_negatives(iou, cls_labels, neg_ratio: float = 3):
    """The mining rule with a stand-in loss when no model has scored the anchors: negatives
    ranked by their best IoU with any object (near misses hardest). ``iou (B, N, M)``,
    ``cls_labels (B, N)`` -> kept negatives ``(B, N)`` bool."""
    best = iou.amax(dim=2) if iou.shape[2] else iou.new_zeros(iou.shape[:2])
    return hard_negative_mask(best.float(), cls_labels, neg_ratio)


def focal_config(gamma: float, alpha: float = 0.25) -> LossConfig:
    """A LossConfig for the focal class loss with ``gamma`` and ``alpha`` (others as default)."""
    return LossConfig(cls_loss="focal", focal_gamma=float(gamma), focal_alpha=float(alpha))
