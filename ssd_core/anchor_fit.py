"""How well a dataset's objects fit an anchor layout: each object's best anchor IoU and how many
positive anchors the book's labeling gives it, and the book's rule for spreading anchor sizes.

The book labels an anchor positive when its IoU with an object is >= the threshold (0.5), and
before that gives every object its best free anchor (the greedy step), whatever its IoU. So an
object whose best IoU is below the threshold is not lost in training: it gets exactly one
positive anchor, the greedy one, with a low IoU (large offsets to learn), and no other anchor
of it is ever labelled positive. :func:`anchor_fit` counts these objects with
``multibox_target``'s own assignment (``match_anchors``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .anchors import anchor_layout, layout_anchors
from .data.dataset import make_target, pad_targets
from .matching import match_anchors

_IMAGES_PER_CHUNK = 32  # bounds the (images, anchors, objects) IoU block


class AnchorFit(NamedTuple):
    """Per object of a dataset (``P`` objects, padding rows dropped), normalized coordinates.

    ``image (P,)`` its image; ``boxes (P, 4)`` corners; ``best_iou (P,)`` its highest IoU with any
    anchor and ``best_anchor (P,)`` that anchor; ``positives (P,)`` anchors labelled with it;
    ``greedy_iou (P,)`` the IoU of the anchor the greedy step gave it (0 if none: more objects
    than anchors); ``threshold`` the IoU threshold used.
    """

    image: torch.Tensor
    boxes: torch.Tensor
    best_iou: torch.Tensor
    best_anchor: torch.Tensor
    positives: torch.Tensor
    greedy_iou: torch.Tensor
    threshold: float

    @property
    def widths(self) -> torch.Tensor:
        return self.boxes[:, 2] - self.boxes[:, 0]

    @property
    def heights(self) -> torch.Tensor:
        return self.boxes[:, 3] - self.boxes[:, 1]

    @property
    def unreached(self) -> torch.Tensor:
        """``(P,)`` bool: no anchor has IoU >= threshold with the object (only the greedy step
        labels one anchor for it)."""
        return self.best_iou < self.threshold


def _fit_chunk(anchors, labels, threshold):
    """One block of images: ``anchors (N, 4)``, ``labels (b, M, 5)`` -> per slot ``(b, M)``
    best IoU, best anchor, positives, greedy IoU."""
    b, m, _ = labels.shape
    match = match_anchors(anchors, labels, threshold)  # iou (b, N, M)
    best_iou, best_anchor = match.iou.max(dim=1)
    slot = torch.where(match.gt_index >= 0, match.gt_index, torch.full_like(match.gt_index, m))
    positives = torch.zeros((b, m + 1), dtype=torch.long, device=anchors.device)
    positives.scatter_add_(1, slot, torch.ones_like(slot))
    # The greedy anchor's IoU with its object: scatter each greedy anchor's IoU to its slot.
    greedy_slot = torch.where(match.greedy, slot, torch.full_like(slot, m))
    iou_own = match.iou.gather(2, slot.clamp(max=m - 1)[..., None])[..., 0]  # (b, N)
    greedy_iou = torch.zeros((b, m + 1), dtype=match.iou.dtype, device=anchors.device)
    greedy_iou.scatter_(1, greedy_slot, torch.where(match.greedy, iou_own, 0.0))
    return best_iou, best_anchor, positives[:, :m], greedy_iou[:, :m]


def anchor_fit(anchors, labels, threshold: float = 0.5) -> AnchorFit:
    """Fit of ``labels (B, M, 5)`` (rows ``[class, x1, y1, x2, y2]`` normalized, class < 0 =
    padding) to ``anchors (N, 4) | (1, N, 4)`` at IoU ``threshold`` -> :class:`AnchorFit`.

    Batched over blocks of images (the assignment is ``multibox_target``'s); any device.
    """
    anchors = anchors[0] if anchors.dim() == 3 else anchors
    labels = labels.to(anchors.device, anchors.dtype)
    parts = [_fit_chunk(anchors, labels[i:i + _IMAGES_PER_CHUNK], threshold)
             for i in range(0, labels.shape[0], _IMAGES_PER_CHUNK)]
    valid = labels[..., 0] >= 0
    image = torch.nonzero(valid)[:, 0]
    if not parts:
        empty = torch.zeros((0,), dtype=torch.long, device=anchors.device)
        return AnchorFit(empty, labels.new_zeros((0, 4)), labels.new_zeros((0,)), empty, empty,
                         labels.new_zeros((0,)), float(threshold))
    best_iou, best_anchor, positives, greedy_iou = (torch.cat(p)[valid] for p in zip(*parts))
    return AnchorFit(image, labels[valid][:, 1:], best_iou, best_anchor, positives, greedy_iou,
                     float(threshold))


def fit_summary(fit: AnchorFit) -> dict:
    """The numbers a reader compares between anchor sets: objects, unreached objects (best IoU
    below the threshold) and their share, mean best IoU, positive anchors in all and per object,
    and positives whose IoU is below the threshold (greedy ones)."""
    n = int(fit.best_iou.shape[0])
    unreached = int(fit.unreached.sum())
    low_greedy = int(((fit.greedy_iou < fit.threshold) & (fit.positives > 0)).sum())
    return {
        "objects": n,
        "unreached": unreached,
        "unreached_share": unreached / n if n else 0.0,
        "mean_best_iou": float(fit.best_iou.mean()) if n else 0.0,
        "positives": int(fit.positives.sum()),
        "positives_per_object": float(fit.positives.float().mean()) if n else 0.0,
        "positives_below_threshold": low_greedy,
    }


def object_wh(boxes) -> tuple[torch.Tensor, torch.Tensor]:
    """Widths and heights ``(P,)`` of corner boxes ``(P, 4)``."""
    return boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]


def object_sizes(boxes) -> torch.Tensor:
    """Anchor-comparable size of corner boxes ``(P, 4)`` -> ``(P,)``: ``sqrt(w * h)``, the side of
    the square (ratio-1) anchor with the same area."""
    return ((boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
            ).sqrt()


def spread_sizes(smallest: float, largest: float, num_scales: int = 5, digits: int = 3) -> list:
    """The book's rule: ``s_k`` spread linearly from ``smallest`` to ``largest`` over the scales,
    each scale's second size ``sqrt(s_k * s_{k+1})`` (the last with ``s_K = largest + step``)
    -> ``[[s_k, sqrt(s_k s_{k+1})], ...]``. ``spread_sizes(0.2, 0.88)`` gives TinySSD's sizes."""
    if not (0 < smallest <= largest and math.isfinite(largest)) or num_scales < 1:
        raise ValueError(f"spread_sizes needs 0 < smallest <= largest and num_scales >= 1, got "
                         f"{smallest}, {largest}, {num_scales}")
    step = (largest - smallest) / (num_scales - 1) if num_scales > 1 else 0.0
    s = [smallest + k * step for k in range(num_scales + 1)]
    return [[round(s[k], digits), round(math.sqrt(s[k] * s[k + 1]), digits)]
            for k in range(num_scales)]


def suggest_sizes(boxes, num_scales: int = 5, low: float = 0.0, high: float = 1.0) -> list:
    """Sizes spread over the objects' sizes ``boxes (P, 4)`` as the book does: from the
    ``low`` quantile of :func:`object_sizes` (0: the smallest object) to the ``high`` one (1: the
    largest) -> :func:`spread_sizes`'s list."""
    sizes = object_sizes(boxes).float()
    if sizes.numel() == 0:
        raise ValueError("suggest_sizes needs at least one object box")
    q = torch.quantile(sizes, torch.tensor([low, high], dtype=sizes.dtype, device=sizes.device))
    return spread_sizes(float(q[0]), float(q[1]), num_scales)


def anchor_shapes(layout) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """Each scale's anchor shapes as normalized ``(scale, widths (a,), heights (a,))``, read off
    the first cell of the layout's anchors (multibox_prior's order)."""
    anchors = layout_anchors(layout)[0]
    out = []
    for s in layout:
        cell = anchors[s.start:s.start + s.per_pixel]
        out.append((s.scale, cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]))
    return out


def compare_sizes(labels, size_sets: dict, input_size: int = 256, threshold: float = 0.5,
                  ratios=None) -> dict:
    """``labels (B, M, 5)`` against several anchor size sets (name -> five ``[s1, s2]`` lists) at
    ``input_size`` -> name -> :func:`fit_summary`."""
    return {name: fit_summary(fit_anchor_set(labels, sizes, ratios, input_size, threshold)[1])
            for name, sizes in size_sets.items()}


def fit_anchor_set(labels, sizes, ratios=None, input_size: int = 256, threshold: float = 0.5):
    """``labels (B, M, 5)`` against one anchor set (per-scale ``sizes`` and ``ratios``, default
    the book's) at ``input_size`` -> (its layout, :class:`AnchorFit`)."""
    layout = anchor_layout(sizes=sizes, ratios=ratios, input_size=input_size)
    return layout, anchor_fit(layout_anchors(layout), labels, threshold)


def dataset_labels(ds, limit: int | None = None) -> torch.Tensor:
    """A detection dataset's targets ``(B, M, 5)`` normalized, padded with class -1 rows.

    Reads annotation records without decoding images when the dataset has them (datasets from
    ``load_dataset``); otherwise draws ``ds.sample(i)`` (synthetic data).
    """
    n = len(ds) if limit is None else min(int(limit), len(ds))
    targets = []
    records = getattr(ds, "records", None)
    for i in range(n):
        if records is not None:
            rec = records[i]
            targets.append(make_target(rec.boxes, rec.labels, rec.size))
        else:
            img, boxes, labels = ds.sample(i)
            targets.append(make_target(boxes, labels, img.size))
    return pad_targets(targets)
