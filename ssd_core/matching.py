"""Labeling anchors: the book's anchor-to-ground-truth assignment, targets and negative mining.

Batched over images: the only Python loop runs over ground-truth slots (at most ``M`` steps of
the book's greedy assignment), never over images or anchors.
"""

from typing import NamedTuple

import torch

from .boxes import box_iou, offset_boxes
from .errors import AnnotationError


class AnchorMatch(NamedTuple):
    """Result of :func:`match_anchors` for a batch of ``B`` images, ``N`` anchors, ``M`` slots."""

    gt_index: torch.Tensor  # (B, N) long: assigned ground-truth row, -1 = background
    greedy: torch.Tensor  # (B, N) bool: assigned in the greedy best-anchor-per-object step
    iou: torch.Tensor  # (B, N, M) float: anchor/ground-truth IoU, 0 for padding rows


def _check_boxes(boxes, name, valid=None, error=ValueError):
    """Raise ``error`` naming ``name`` if any (valid) box is NaN/inf or has x2 < x1 / y2 < y1."""
    if valid is not None:
        boxes = boxes[valid]
    if not bool(torch.isfinite(boxes).all()):
        raise error(f"{name} contains NaN or infinite coordinates; every box must be finite")
    if bool(((boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])).any()):
        raise error(
            f"{name} contains a box with x2 < x1 or y2 < y1; boxes must be corners "
            "(x1, y1, x2, y2) with x1 <= x2 and y1 <= y2"
        )


def _check_anchors(anchors):
    """Accept anchors ``(N, 4)`` or ``(1, N, 4)``; return ``(N, 4)``."""
    if not torch.is_tensor(anchors):
        raise ValueError(f"anchors must be a tensor of shape (N, 4) or (1, N, 4), got {anchors!r}")
    if anchors.dim() == 3 and anchors.shape[0] == 1:
        anchors = anchors[0]
    if anchors.dim() != 2 or anchors.shape[-1] != 4 or anchors.shape[0] == 0:
        raise ValueError(
            f"anchors must have shape (N, 4) or (1, N, 4) with N >= 1, got {tuple(anchors.shape)}"
        )
    _check_boxes(anchors, "anchors")
    if bool(((anchors[:, 2] <= anchors[:, 0]) | (anchors[:, 3] <= anchors[:, 1])).any()):
        # Offsets are measured in anchor widths/heights: a zero-size anchor would give inf/NaN.
        raise ValueError("anchors contains an anchor of zero width or height; every anchor "
                         "needs x1 < x2 and y1 < y2")
    return anchors


def _check_labels(labels):
    """Validate ``labels (B, M, 5)`` rows ``[class, x1, y1, x2, y2]``; return the valid mask."""
    if not torch.is_tensor(labels) or labels.dim() != 3 or labels.shape[-1] != 5:
        shape = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        raise ValueError(
            "labels must have shape (B, M, 5) with rows [class, x1, y1, x2, y2] "
            f"(padding rows class -1), got {shape}"
        )
    if torch.isnan(labels[..., 0]).any():
        raise AnnotationError("labels contains a NaN class id; use -1 for padding rows")
    valid = labels[..., 0] >= 0
    if bool((labels[..., 0][valid] >= 2**31).any()):  # inf or absurd ids overflow .long()
        raise AnnotationError("labels contains an infinite or huge class id (>= 2**31); class "
                              "ids are 0..C-1, and -1 for padding rows")
    _check_boxes(labels[..., 1:], "labels", valid, AnnotationError)
    return valid


def _check_threshold(iou_threshold):
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")


def _match(iou, valid, iou_threshold):
    """Book assignment on ``iou (B, N, M)`` with ``valid (B, M)`` -> ``(gt_index, greedy)``.

    Step 1: every anchor whose best IoU >= threshold takes that ground truth. Step 2 (overrides):
    repeatedly take the globally largest remaining IoU (first in row-major order on ties, like
    ``torch.argmax``), assign that pair and discard its anchor row and ground-truth column; once
    per valid ground truth. Stops early if anchors run out (only possible when N < M).
    """
    batch, num_anchors, num_gt = iou.shape
    device = iou.device
    # Discarded and padding entries are -1, below any real IoU (>= 0), as in the book.
    jaccard = iou.masked_fill(~valid[:, None, :], -1.0)
    gt_index = torch.full((batch, num_anchors), -1, dtype=torch.long, device=device)
    greedy = torch.zeros((batch, num_anchors), dtype=torch.bool, device=device)
    if num_gt == 0 or batch == 0:
        return gt_index, greedy
    best_gt = jaccard.argmax(dim=2)  # argmax documents first-occurrence ties
    above = jaccard.gather(2, best_gt[..., None])[..., 0] >= iou_threshold
    gt_index = torch.where(above, best_gt, gt_index)

    rows = torch.arange(batch, device=device)
    flat = jaccard.reshape(batch, num_anchors * num_gt)
    for _ in range(int(valid.sum(dim=1).max())):
        idx = flat.argmax(dim=1)
        best = flat.gather(1, idx[:, None])[:, 0]
        active = best >= 0  # this image still has an unassigned object and a free anchor
        anc = idx // num_gt
        gt = idx % num_gt
        gt_index[rows, anc] = torch.where(active, gt, gt_index[rows, anc])
        greedy[rows, anc] |= active
        # Discard the anchor's row and the object's column (no-op rows for inactive images).
        jaccard[rows[active], anc[active], :] = -1.0
        jaccard[rows[active], :, gt[active]] = -1.0
    return gt_index, greedy


def match_anchors(anchors, labels, iou_threshold=0.5):
    """Assign anchors ``(N, 4)|(1, N, 4)`` to ``labels (B, M, 5)`` -> :class:`AnchorMatch`."""
    anchors = _check_anchors(anchors)
    valid = _check_labels(labels)
    _check_threshold(iou_threshold)
    boxes = labels[..., 1:].to(anchors.dtype)
    iou = box_iou(anchors, boxes)  # (B, N, M) by broadcasting
    iou = iou.masked_fill(~valid[:, None, :], 0.0)
    gt_index, greedy = _match(iou, valid, iou_threshold)
    return AnchorMatch(gt_index, greedy, iou)


def assign_anchor_to_bbox(ground_truth, anchors, device=None, iou_threshold=0.5):
    """Book signature: ``ground_truth (M, 4)``, ``anchors (N, 4)`` -> ``(N,)`` long gt index or -1.

    ``device`` is accepted for compatibility with the book; the result lives on ``anchors``'s.
    """
    if not torch.is_tensor(ground_truth) or ground_truth.dim() != 2 or ground_truth.shape[-1] != 4:
        shape = tuple(ground_truth.shape) if torch.is_tensor(ground_truth) else ground_truth
        raise ValueError(f"ground_truth must have shape (M, 4) corner boxes, got {shape}")
    anchors = _check_anchors(anchors)
    _check_boxes(ground_truth, "ground_truth", error=AnnotationError)
    _check_threshold(iou_threshold)
    iou = box_iou(anchors, ground_truth.to(anchors.dtype))[None]
    valid = torch.ones((1, ground_truth.shape[0]), dtype=torch.bool, device=anchors.device)
    return _match(iou, valid, iou_threshold)[0][0]


def multibox_target(anchors, labels, iou_threshold=0.5):
    """Book targets: anchors ``(N, 4)|(1, N, 4)``, labels ``(B, M, 5)`` ->
    ``(bbox_offset (B, N*4), bbox_mask (B, N*4), cls_labels (B, N) long)``.

    ``cls_labels`` is 0 for background and ``class + 1`` otherwise; offsets and mask are 0 for
    background anchors. Padding rows (class < 0) are ignored.
    """
    anchors = _check_anchors(anchors)
    match = match_anchors(anchors, labels, iou_threshold)
    if labels.shape[1] == 0:  # no slots at all: gather below needs one (padding) row
        labels = labels.new_full((labels.shape[0], 1, 5), -1.0)
    batch, num_anchors = match.gt_index.shape
    positive = match.gt_index >= 0
    safe = match.gt_index.clamp(min=0)
    assigned = torch.gather(labels.to(anchors.dtype), 1, safe[..., None].expand(-1, -1, 5))
    cls_labels = torch.where(positive, assigned[..., 0].long() + 1, torch.zeros_like(safe))
    offsets = offset_boxes(anchors.expand(batch, -1, -1), assigned[..., 1:])
    # where() rather than the book's multiply, so a degenerate box cannot leak NaN*0 = NaN.
    mask = positive[..., None].expand(-1, -1, 4)
    bbox_offset = torch.where(mask, offsets, torch.zeros_like(offsets))
    return (
        bbox_offset.reshape(batch, num_anchors * 4),
        mask.reshape(batch, num_anchors * 4).to(anchors.dtype),
        cls_labels,
    )


def hard_negative_mask(per_anchor_class_loss, cls_labels, neg_ratio=3):
    """Background anchors to keep for the loss: ``(B, N)`` losses and labels -> ``(B, N)`` bool.

    Per image the ``neg_ratio * positives`` background anchors with the highest loss (ties: lower
    index first); an image without positives keeps ``neg_ratio`` of them.
    """
    if per_anchor_class_loss.shape != cls_labels.shape or cls_labels.dim() != 2:
        raise ValueError(
            "per_anchor_class_loss and cls_labels must both have shape (B, N), got "
            f"{tuple(per_anchor_class_loss.shape)} and {tuple(cls_labels.shape)}"
        )
    if neg_ratio < 0:
        raise ValueError(f"neg_ratio must be >= 0, got {neg_ratio}")
    negative = cls_labels == 0
    num_pos = (cls_labels > 0).sum(dim=1, keepdim=True)
    quota = torch.where(num_pos > 0, num_pos * neg_ratio, torch.full_like(num_pos, neg_ratio))
    loss = per_anchor_class_loss.detach()
    # Rank by loss (stable, descending), then move negatives in front keeping that order.
    order = torch.argsort(loss, dim=1, descending=True, stable=True)
    neg_first = torch.argsort((~negative).gather(1, order).to(torch.uint8), dim=1, stable=True)
    order = order.gather(1, neg_first)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return negative & (rank < quota)
