"""Labeling anchors: the book's anchor-to-ground-truth assignment, its targets, and the ranking
of negative anchors that hard negative mining keeps.

Batched over images: the only Python loop runs over ground-truth slots (at most ``M`` steps of
the book's greedy assignment), never over images or anchors.
"""

from typing import NamedTuple

import torch

from .boxes import inter_union, offset_boxes
from .errors import AnnotationError
from .ordering import top_k_first


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


_CHUNK = 64  # anchors per block when looking for each object's best anchors


def _anchor_iou(anchors, boxes):
    """IoU of every object with every anchor: ``anchors (N, 4)``, ``boxes (B, M, 4)`` -> ``(B, M,
    N)``.

    The book's ``box_iou`` float operations in the same order (so the same bits), on coordinate
    planes: no ``(B, N, M, 2)`` temporaries, and anchors are the contiguous dimension. Anchors
    have positive area (checked), so the union is never 0 and no 0/0 guard is needed.
    """
    ax1, ay1, ax2, ay2 = anchors.t().contiguous().unbind(0)  # (N,) each
    bx1, by1, bx2, by2 = (v[..., None] for v in boxes.unbind(-1))  # (B, M, 1) each
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    inter, union = inter_union((ax1, ay1, ax2, ay2, area_a), (bx1, by1, bx2, by2, area_b))
    if not bool((area_a > 0).all()):  # sides so small that the area underflows to 0
        return torch.where(union > 0, inter / union, torch.zeros_like(inter))
    return inter.div_(union)


def _argmax_last(values):
    """``values.argmax(dim=-1)`` (first position on ties) for ``(..., L)`` values that are not
    NaN, by blocks: the first block holding the maximum holds its first position. On the CPU
    ``amax`` is vectorized and ``argmax`` is not; this is ~3x faster for ``L`` = 5444."""
    n = values.shape[-1]
    if n <= 4 * _CHUNK:
        return values.argmax(dim=-1)
    whole = (n // _CHUNK) * _CHUNK
    block_max = values[..., :whole].unfold(-1, _CHUNK, _CHUNK).amax(dim=-1)
    if whole < n:
        block_max = torch.cat((block_max, values[..., whole:].amax(dim=-1, keepdim=True)), -1)
    start = block_max.argmax(dim=-1, keepdim=True) * _CHUNK
    index = start + torch.arange(_CHUNK, device=values.device)
    inside = index < n  # the last block may be short
    window = values.gather(-1, index.clamp_(max=n - 1)).masked_fill_(~inside, -torch.inf)
    return start[..., 0] + window.argmax(dim=-1)


def _best_anchors(iou, k):
    """For every object the ``k`` anchors of highest IoU, ties to the lower anchor index (the
    order of the book's ``argmax``): ``iou (B, M, N)`` -> anchor indices ``(B, M, k)``.

    Blocks of ``_CHUNK`` anchors are ranked by their best IoU (ties: lower block) and only the
    ``k`` best blocks are searched: each of the k best anchors lies in one of them, because k
    blocks ranked ahead of its own block would hold k anchors ranked ahead of it.
    """
    batch, slots, n = iou.shape
    device = iou.device
    whole = (n // _CHUNK) * _CHUNK
    block_max = [iou[..., :whole].reshape(batch, slots, -1, _CHUNK).amax(dim=-1)]
    if whole < n:
        block_max.append(iou[..., whole:].amax(dim=-1, keepdim=True))
    block_max = torch.cat(block_max, dim=-1)  # (B, M, blocks)
    top_blocks = top_k_first(block_max, min(k, block_max.shape[-1]))
    top_blocks = top_blocks.sort(dim=-1).values  # ascending block order
    cand = (top_blocks[..., None] * _CHUNK + torch.arange(_CHUNK, device=device)).flatten(2)
    inside = cand < n  # the last block may be short
    cand = torch.where(inside, cand, torch.zeros_like(cand))
    values = iou.gather(2, cand).masked_fill_(~inside, -1.0)
    return cand.gather(2, top_k_first(values, k))  # cand ascending: position order = index


_FEW_ROWS = 8  # on the CPU, up to this many images run the greedy loop on Python lists


def _greedy_lists(cand_anchor, cand_gt, cand_iou, gt_index, greedy):
    """The loop of :func:`_greedy_on_candidates` on Python lists, for a few images on the CPU:
    the same picks (``max`` keeps the first of equal values, as ``argmax`` does), without the
    dozen tensor operations per step that dominate when the candidate set is this small."""
    picks = []  # (image, anchor, object)
    rows = zip(cand_anchor.tolist(), cand_gt.tolist(), cand_iou.tolist())
    for image, (anchor, obj, iou) in enumerate(rows):
        live = [i for i, v in enumerate(iou) if v >= 0]  # valid objects, in candidate order
        while live:
            pick = max(live, key=iou.__getitem__)
            a, g = anchor[pick], obj[pick]
            picks.append((image, a, g))
            live = [i for i in live if anchor[i] != a and obj[i] != g]
    if picks:
        image, a, g = torch.tensor(picks, dtype=torch.long).unbind(1)
        gt_index[image, a] = g
        greedy[image, a] = True


def _greedy_on_candidates(iou, valid, gt_index, greedy):
    """The book's greedy step 2 on ``iou (B, M, N)``, written into ``gt_index`` / ``greedy``
    ``(B, N)``: repeatedly the globally largest remaining IoU (first in the book's row-major
    anchor-by-object order on ties) assigns its pair and discards its anchor and its object;
    once per valid object, stopping early if anchors run out (only possible when N < M).

    It runs exactly on a ``(B, M * k)`` candidate set, ``k = min(M, N)``: when object g is
    picked, fewer than k anchors have been discarded, and every remaining anchor ahead of the
    pick in g's own order (IoU, then index) would have been picked first, so the pick is one of
    g's k best anchors (:func:`_best_anchors`). The largest candidate, first in (anchor, object)
    order, is then the book's pick.
    """
    batch, num_gt, num_anchors = iou.shape
    device = iou.device
    k = min(num_gt, num_anchors)
    cand_anchor = _best_anchors(iou, k).reshape(batch, num_gt * k)
    cand_gt = torch.arange(num_gt, device=device).repeat_interleave(k).expand(batch, -1)
    order = torch.argsort(cand_anchor * num_gt + cand_gt, dim=1)
    cand_anchor = cand_anchor.gather(1, order)
    cand_gt = cand_gt.gather(1, order)
    cand_iou = torch.gather(iou.reshape(batch, -1), 1, cand_gt * num_anchors + cand_anchor)
    cand_iou = cand_iou.masked_fill_(~valid.gather(1, cand_gt), -1.0)
    if device.type == "cpu" and batch <= _FEW_ROWS:
        _greedy_lists(cand_anchor, cand_gt, cand_iou, gt_index, greedy)
        return
    rows = torch.arange(batch, device=device)
    for _ in range(int(valid.sum(dim=1).max())):
        pick = cand_iou.argmax(dim=1, keepdim=True)
        active = cand_iou.gather(1, pick)[:, 0] >= 0  # an object and a free anchor are left
        a = cand_anchor.gather(1, pick)[:, 0]
        g = cand_gt.gather(1, pick)[:, 0]
        gt_index[rows, a] = torch.where(active, g, gt_index[rows, a])
        greedy[rows, a] |= active
        taken = (cand_anchor == a[:, None]) | (cand_gt == g[:, None])
        cand_iou.masked_fill_(taken & active[:, None], -1.0)


def _match(iou, valid, iou_threshold):
    """Book assignment on ``iou (B, M, N)`` (0 for padding slots) with ``valid (B, M)`` ->
    ``(gt_index (B, N), greedy (B, N))``.

    Step 1: every anchor whose best IoU >= threshold takes that ground truth (first slot on
    ties, like ``torch.max``). Step 2 (overrides): the book's greedy best-anchor-per-object
    assignment (:func:`_greedy_on_candidates`).
    """
    batch, num_gt, num_anchors = iou.shape
    device = iou.device
    gt_index = torch.full((batch, num_anchors), -1, dtype=torch.long, device=device)
    greedy = torch.zeros((batch, num_anchors), dtype=torch.bool, device=device)
    if num_gt == 0 or batch == 0:
        return gt_index, greedy
    # Step 1. Padding slots have IoU 0 < threshold, so they never pass; a running maximum over
    # the few slots is much faster than a reduction over a short dimension.
    best = iou[:, 0].clone()
    for g in range(1, num_gt):
        torch.maximum(best, iou[:, g], out=best)
    img, anc = torch.nonzero(best >= iou_threshold, as_tuple=True)
    gt_index[img, anc] = iou[img, :, anc].argmax(dim=1)  # argmax: first slot on ties

    # Step 2. Where the valid objects' best anchors are all distinct, the greedy steps pick
    # exactly those (each pick is the largest remaining pair; its anchor is that object's best,
    # and removing it changes no other object's best): one argmax. Only images where two
    # objects share a best anchor run the book's loop, on the candidate set.
    best_anchor = _argmax_last(iou)  # (B, M): first anchor on ties, as the book's argmax
    slots = torch.arange(num_gt, device=device)
    key = torch.where(valid, best_anchor, -1 - slots)  # padding slots never collide
    key = key.sort(dim=1).values
    clash = (key[:, 1:] == key[:, :-1]).any(dim=1)  # (B,), all False when M == 1
    img, slot = torch.nonzero(valid & ~clash[:, None], as_tuple=True)
    gt_index[img, best_anchor[img, slot]] = slot
    greedy[img, best_anchor[img, slot]] = True
    rows = torch.nonzero(clash, as_tuple=True)[0]
    if len(rows):
        sub_index, sub_greedy = gt_index[rows], greedy[rows]
        _greedy_on_candidates(iou[rows], valid[rows], sub_index, sub_greedy)
        gt_index[rows], greedy[rows] = sub_index, sub_greedy
    return gt_index, greedy


def _iou_and_match(anchors, labels, iou_threshold):
    """Checked inputs -> ``(anchors (N, 4), valid (B, M), iou (B, M, N), gt_index (B, N),
    greedy (B, N))``."""
    anchors = _check_anchors(anchors)
    valid = _check_labels(labels)
    _check_threshold(iou_threshold)
    if int(valid.sum()) * 4 < 3 * valid.numel():  # many padding rows: only real objects' IoUs
        iou = anchors.new_zeros((*valid.shape, anchors.shape[0]))
        iou[valid] = _anchor_iou(anchors, labels[valid][None, :, 1:].to(anchors.dtype))[0]
    else:  # padding rows become empty boxes at the origin: IoU 0 with every anchor
        iou = _anchor_iou(anchors, labels[..., 1:].to(anchors.dtype) * valid[..., None])
    gt_index, greedy = _match(iou, valid, iou_threshold)
    return anchors, valid, iou, gt_index, greedy


def match_anchors(anchors, labels, iou_threshold=0.5):
    """Assign anchors ``(N, 4)|(1, N, 4)`` to ``labels (B, M, 5)`` -> :class:`AnchorMatch`."""
    _, _, iou, gt_index, greedy = _iou_and_match(anchors, labels, iou_threshold)
    return AnchorMatch(gt_index, greedy, iou.transpose(1, 2))


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
    iou = _anchor_iou(anchors, ground_truth.to(anchors.dtype)[None])
    valid = torch.ones((1, ground_truth.shape[0]), dtype=torch.bool, device=anchors.device)
    return _match(iou, valid, iou_threshold)[0][0]


def multibox_target(anchors, labels, iou_threshold=0.5):
    """Book targets: anchors ``(N, 4)|(1, N, 4)``, labels ``(B, M, 5)`` ->
    ``(bbox_offset (B, N*4), bbox_mask (B, N*4), cls_labels (B, N) long)``.

    ``cls_labels`` is 0 for background and ``class + 1`` otherwise; offsets and mask are 0 for
    background anchors. Padding rows (class < 0) are ignored. Offsets are encoded only for the
    positive anchors (the book encodes all and multiplies by the mask).
    """
    anchors, _, _, gt_index, _ = _iou_and_match(anchors, labels, iou_threshold)
    bbox_offset, mask, cls_labels = _targets(anchors, labels, gt_index)
    batch, num_anchors = gt_index.shape
    return (
        bbox_offset.reshape(batch, num_anchors * 4),
        mask.reshape(batch, num_anchors * 4),
        cls_labels,
    )


def _targets(anchors, labels, gt_index):
    """Anchors ``(N, 4)``, labels ``(B, M, 5)``, ``gt_index (B, N)`` -> ``(bbox_offset (B, N, 4),
    mask (B, N, 4), cls_labels (B, N))``, zero for background anchors."""
    batch, num_anchors = gt_index.shape
    dtype = anchors.dtype
    positive = gt_index >= 0
    img, anc = torch.nonzero(positive, as_tuple=True)
    assigned = labels[img, gt_index[img, anc]].to(dtype)  # (P, 5)
    bbox_offset = torch.zeros((batch, num_anchors, 4), dtype=dtype, device=anchors.device)
    bbox_offset[img, anc] = offset_boxes(anchors[anc], assigned[:, 1:])
    cls_labels = torch.zeros((batch, num_anchors), dtype=torch.long, device=anchors.device)
    cls_labels[img, anc] = assigned[:, 0].long() + 1
    mask = torch.zeros((batch, num_anchors, 4), dtype=dtype, device=anchors.device)
    mask[img, anc] = 1.0  # writing the few positives beats expanding the (B, N) mask 4 times
    return bbox_offset, mask, cls_labels


class AnchorLabels(NamedTuple):
    """Everything one assignment decides, from one matching pass (:func:`label_anchors`)."""

    gt_index: torch.Tensor  # (B, N) long: assigned ground-truth row, -1 = background
    greedy: torch.Tensor  # (B, N) bool: assigned in the greedy step
    iou: torch.Tensor  # (B, N, M) float: anchor/ground-truth IoU
    offsets: torch.Tensor  # (B, N, 4): offset targets, 0 for background
    cls_labels: torch.Tensor  # (B, N) long: 0 background, class + 1 otherwise


def label_anchors(anchors, labels, iou_threshold=0.5) -> AnchorLabels:
    """:func:`match_anchors` and :func:`multibox_target` from one matching pass: anchors
    ``(N, 4)|(1, N, 4)``, labels ``(B, M, 5)`` (``M`` may be 0: every anchor is background)
    -> :class:`AnchorLabels`."""
    if labels.shape[1] == 0:
        anchors = _check_anchors(anchors)
        batch, n = labels.shape[0], anchors.shape[0]
        return AnchorLabels(torch.full((batch, n), -1, dtype=torch.long),
                            torch.zeros((batch, n), dtype=torch.bool),
                            anchors.new_zeros((batch, n, 0)), anchors.new_zeros((batch, n, 4)),
                            torch.zeros((batch, n), dtype=torch.long))
    anchors, _, iou, gt_index, greedy = _iou_and_match(anchors, labels, iou_threshold)
    offsets, _, cls_labels = _targets(anchors, labels, gt_index)
    return AnchorLabels(gt_index, greedy, iou.transpose(1, 2), offsets, cls_labels)


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
    return negative & (negative_rank(per_anchor_class_loss.detach(), negative) < quota)


def negative_rank(loss, negative):
    """Place of each negative by descending ``loss (B, N)`` among the ``negative (B, N)`` anchors
    (0 = hardest; ties: lower index first) -> ``(B, N)`` long, -1 for the other anchors."""
    # Rank by loss (stable, descending), then move negatives in front keeping that order.
    order = torch.argsort(loss, dim=1, descending=True, stable=True)
    neg_first = torch.argsort((~negative).gather(1, order).to(torch.uint8), dim=1, stable=True)
    order = order.gather(1, neg_first)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return torch.where(negative, rank, torch.full_like(rank, -1))
