"""Greedy NMS step by step: which box each step keeps, which boxes it removes (with their IoU)
and which candidates are left.

The kept boxes come from the same routine as :func:`ssd_core.suppression.nms` (so the kept
order is exactly nms's); the rest is derived without a loop: a box that is not kept was removed
by the FIRST kept box before it (in visiting order) that overlaps it by more than the threshold,
because every earlier kept box left it alive and that one's step removes it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .boxes import box_iou
from .suppression import check_boxes_scores, nms_sorted


class NmsTrace(NamedTuple):
    """The greedy suppression of ``K`` candidates in ``S`` steps (one kept box per step).

    Indices refer to the input boxes. ``order (K,)``: visiting order (score descending, ties to the
    lower index, as nms); ``kept (S,)``: the box kept at each step (== nms's result); ``step (K,)``:
    the step at which each box leaves the candidates (kept or removed then); ``removed_by (K,)``:
    the kept box that removed it (-1 for kept boxes); ``iou (K,)``: its IoU with that box (1 for
    kept boxes).
    """

    order: torch.Tensor
    kept: torch.Tensor
    step: torch.Tensor
    removed_by: torch.Tensor
    iou: torch.Tensor

    @property
    def num_steps(self) -> int:
        return int(self.kept.shape[0])

    def removed_at(self, s: int) -> torch.Tensor:
        """Boxes removed at step ``s`` (by ``kept[s]``), by descending IoU with it -> ``(r,)``."""
        idx = torch.nonzero((self.step == s) & (self.removed_by >= 0)).flatten()
        return idx[torch.argsort(self.iou[idx], descending=True, stable=True)]

    def kept_before(self, s: int) -> torch.Tensor:
        """Boxes kept at steps ``0 .. s-1`` -> ``(s,)``."""
        return self.kept[:s]

    def remaining_after(self, s: int) -> torch.Tensor:
        """Candidates still undecided after step ``s``, in visiting order -> ``(q,)``."""
        return self.order[self.step[self.order] > s]


def nms_trace(boxes, scores, iou_threshold: float, groups=None) -> NmsTrace:
    """Trace greedy NMS: ``boxes (K, 4)`` corners, ``scores (K,)``, optional ``groups (K,)`` long
    (boxes of different groups never suppress each other: per-class NMS) -> :class:`NmsTrace`.

    Any device; the trace lives on ``boxes``'s. Memory ``O(S * K)`` for the kept-vs-all IoU.
    """
    check_boxes_scores(boxes, scores)
    if groups is not None and (not torch.is_tensor(groups) or groups.shape != scores.shape):
        raise ValueError(f"nms_trace: groups must have shape (K,) = ({scores.shape[0]},), got "
                         f"{tuple(groups.shape) if torch.is_tensor(groups) else groups!r}")
    k, device = boxes.shape[0], boxes.device
    if k == 0:
        empty = torch.zeros((0,), dtype=torch.long, device=device)
        return NmsTrace(empty, empty, empty, empty, boxes.new_zeros((0,)))
    order = torch.argsort(scores, descending=True, stable=True)
    sorted_groups = None if groups is None else groups[order][None].long()
    valid = torch.ones((1, k), dtype=torch.bool, device=device)
    keep_sorted = nms_sorted(boxes[order][None], valid, iou_threshold, sorted_groups)[0]
    kept = order[keep_sorted]

    position = torch.empty_like(order)
    position[order] = torch.arange(k, device=device)
    # IoU of every kept box with every box: box_iou does nms's float operations in its order (the
    # same bits), and nms removes a later box when that IoU is > the threshold.
    iou = box_iou(boxes[kept], boxes)  # (S, K)
    earlier = position[kept][:, None] < position[None, :]  # a kept box only removes later ones
    if groups is not None:
        earlier &= groups[kept][:, None] == groups[None, :]
    removes = (iou > iou_threshold) & earlier
    # Kept steps are in visiting order, so the first True down a column is the box's remover.
    first = removes.to(torch.uint8).argmax(dim=0)  # (K,)
    # Never reached with equal bits; kept as a guard: the earlier kept box it overlaps most.
    fallback = torch.where(earlier, iou, torch.full_like(iou, -1.0)).argmax(dim=0)
    first = torch.where(removes.any(dim=0), first, fallback)

    removed_by = kept[first]
    out_iou = iou.gather(0, first[None])[0]
    step = first.clone()
    step[kept] = torch.arange(kept.shape[0], device=device)
    removed_by[kept] = -1
    out_iou[kept] = 1.0
    return NmsTrace(order, kept, step, removed_by, out_iou)


class RawTrace(NamedTuple):
    """The NMS trace of one image's cached network output. ``anchor (K,)``: the anchor of each
    candidate (score >= the confidence threshold); ``boxes (K, 4)`` normalized corners, ``scores
    (K,)``, ``labels (K,)`` (0..C-1); ``trace`` indexes these candidates."""

    anchor: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    trace: NmsTrace


def trace_raw(raw, conf_threshold: float = 0.5, nms_threshold: float = 0.5,
              per_class: bool = False) -> RawTrace:
    """The step-by-step NMS of a :class:`ssd_core.detection.RawOutput` with the candidates of
    ``Detector.filter`` (each anchor's best class, score >= ``conf_threshold``) -> RawTrace.

    ``anchor[trace.kept]`` equals ``Detector.filter(raw, conf, nms, per_class).anchor_index``.
    """
    conf, cls = raw.probs[:, 1:].max(dim=1)
    idx = torch.nonzero(conf >= conf_threshold).flatten()
    boxes, scores, labels = raw.boxes[idx], conf[idx], cls[idx]
    trace = nms_trace(boxes, scores, nms_threshold, labels if per_class else None)
    return RawTrace(idx, boxes, scores, labels, trace)
