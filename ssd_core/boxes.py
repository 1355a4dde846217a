"""Box geometry: corner/center conversion, pairwise IoU, and the book's offset encoding.

Boxes are ``(x1, y1, x2, y2)`` corners (normalized unless a name says pixels). Every function
works on any device, keeps the input's device and is fully vectorized (``box_iou_numpy``: the
host's numpy twin of ``box_iou`` for one box, for per-image loops where torch's call overhead
dominates).
"""

import numpy as np
import torch

# The book's offset constants: centers are scaled by 10 (sigma_x = sigma_y = 0.1) and the
# log width/height by 5 (sigma_w = sigma_h = 0.2), so typical offsets have unit scale.
CENTER_SCALE = 10.0
SIZE_SCALE = 5.0


def box_corner_to_center(boxes):
    """Corners ``(..., 4)`` ``(x1, y1, x2, y2)`` -> centers ``(..., 4)`` ``(cx, cy, w, h)``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def box_center_to_corner(boxes):
    """Centers ``(..., 4)`` ``(cx, cy, w, h)`` -> corners ``(..., 4)`` ``(x1, y1, x2, y2)``."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def box_iou(boxes1, boxes2):
    """Pairwise IoU: ``(..., N, 4)`` and ``(..., M, 4)`` corner boxes -> ``(..., N, M)``.

    Leading dimensions broadcast (one IoU matrix per image). The book's float operations in the
    book's order (the same bits), computed on coordinate planes so no ``(..., N, M, 2)``
    temporaries are built.

    Two boxes whose union has zero area (both degenerate) get IoU 0 instead of the book's
    0/0 = NaN: they share no area, and the book only ever compares an IoU with a threshold
    (``>= 0.5`` to label an anchor), where its NaN already acts as "no overlap". This is the
    one rule of ssd_core (matching, NMS, the crop augmentations on the host and the device).
    """
    x1a, y1a, x2a, y2a = (v[..., :, None] for v in boxes1.unbind(-1))
    x1b, y1b, x2b, y2b = (v[..., None, :] for v in boxes2.unbind(-1))
    area1 = (x2a - x1a) * (y2a - y1a)
    area2 = (x2b - x1b) * (y2b - y1b)
    inter, union = inter_union((x1a, y1a, x2a, y2a, area1), (x1b, y1b, x2b, y2b, area2))
    iou = inter / union
    return iou.masked_fill_(~(union > 0), 0.0)


def box_iou_numpy(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box ``(4,)`` with boxes ``(M, 4)`` in numpy: :func:`box_iou`'s float
    operations in its order (the same bits) and its rule, 0 where the union is empty."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area_a = (box[2:] - box[:2]).prod()
    area_b = (boxes[:, 2:] - boxes[:, :2]).prod(1)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def inter_union(a, b):
    """Intersection and union areas of broadcast coordinate planes ``a`` and ``b`` (each
    ``(x1, y1, x2, y2, area)``), with the book's ``box_iou`` float operations in its order (the
    same bits). Three pair-sized planes in all, each reused, so that they stay in the cache."""
    ax1, ay1, ax2, ay2, area_a = a
    bx1, by1, bx2, by2, area_b = b
    if torch.is_grad_enabled() and any(v.requires_grad for v in (*a, *b)):  # no out= in autograd
        inter = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0) * \
            (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
        return inter, area_a + area_b - inter
    w = torch.minimum(ax2, bx2)
    spare = torch.maximum(ax1, bx1)
    w.sub_(spare).clamp_(min=0)
    h = torch.minimum(ay2, by2)
    h.sub_(torch.maximum(ay1, by1, out=spare)).clamp_(min=0)
    inter = w.mul_(h)
    return inter, torch.add(area_a, area_b, out=h).sub_(inter)


def offset_boxes(anchors, assigned_bb, eps=1e-6):
    """Encode ``assigned_bb (..., 4)`` relative to ``anchors (..., 4)`` -> offsets ``(..., 4)``.

    The book's transform: ``10 * (c_b - c_a) / wh_a`` for centers, ``5 * log(eps + wh_b / wh_a)``
    for sizes.
    """
    # box_corner_to_center's operations, on (x, y) pairs: the same bits, half the kernels.
    xy_a, xy_b = anchors[..., :2], assigned_bb[..., :2]
    wh_a = anchors[..., 2:] - xy_a
    wh_b = assigned_bb[..., 2:] - xy_b
    c_a = (xy_a + anchors[..., 2:]) / 2
    c_b = (xy_b + assigned_bb[..., 2:]) / 2
    offset_xy = CENTER_SCALE * (c_b - c_a) / wh_a
    offset_wh = SIZE_SCALE * torch.log(eps + wh_b / wh_a)
    return torch.cat((offset_xy, offset_wh), dim=-1)


def offset_inverse(anchors, offset_preds):
    """Decode ``offset_preds (..., 4)`` against ``anchors (..., 4)`` -> corners ``(..., 4)``."""
    anc = box_corner_to_center(anchors)
    xy = offset_preds[..., :2] * anc[..., 2:] / CENTER_SCALE + anc[..., :2]
    wh = torch.exp(offset_preds[..., 2:] / SIZE_SCALE) * anc[..., 2:]
    return box_center_to_corner(torch.cat((xy, wh), dim=-1))


def to_pixels(boxes, size, clip: bool = False):
    """Normalized corner boxes ``(..., 4)`` (or points ``(..., 2)``) -> pixels of an image of
    ``size = (width, height)``, clipped to the image if ``clip``: a tensor stays a tensor,
    anything else becomes a float64 array."""
    if torch.is_tensor(boxes):
        scale = boxes.new_tensor([*size] * (boxes.shape[-1] // 2))
        return torch.minimum(boxes * scale, scale).clamp_min(0) if clip else boxes * scale
    boxes = np.asarray(boxes, dtype=np.float64)
    scale = np.array([*size] * (boxes.shape[-1] // 2), dtype=np.float64)
    return np.clip(boxes * scale, 0, scale) if clip else boxes * scale


def max_iou(boxes, others):
    """Each of ``boxes (N, 4)``'s best IoU with any of ``others (M, 4)`` -> ``(N,)``, 0 when
    ``M`` is 0."""
    if len(others) == 0:
        return boxes.new_zeros(len(boxes))
    return box_iou(boxes, others).max(dim=1).values
