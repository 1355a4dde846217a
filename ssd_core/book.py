"""The book's own PyTorch-edition functions (Dive into Deep Learning, "Anchor Boxes" and
"Single Shot Multibox Detection"), reproduced operation for operation: vectorized over anchors
where the book is, a Python loop over images in ``book_multibox_target`` and
``book_multibox_detection``, over objects in the greedy step of ``book_assign_anchor_to_bbox``
and over kept boxes in ``book_nms``.

These are the baselines of every speed ratio in ``bench/`` and a second oracle for the tests.
Nothing here is fixed or batched; the book's behaviour is kept, including where ``ssd_core``
documents a deviation:

- ``book_box_iou`` returns NaN for two boxes whose union has zero area (``ssd_core``: 0);
- ``book_multibox_target`` treats every label row as an object (no padding rows);
- ``book_assign_anchor_to_bbox`` runs its greedy step once per object even when anchors run out;
- ``book_nms`` sorts with ``torch.argsort(descending=True)``, not stable on tied scores
  (``ssd_core`` sorts stably);
- ``book_multibox_detection``'s ``pos_threshold`` defaults to the book's 0.009999999.

Equality tests therefore use inputs where these cases cannot occur (positive-area boxes, no
padding, no tied scores); the loop oracles in ``tests/reference.py`` cover the rest.
"""

import numpy as np
import torch


def book_box_corner_to_center(boxes):
    """``(N, 4)`` corners -> ``(N, 4)`` centers ``(cx, cy, w, h)``."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    cx = (x1 + x2) / 2
    cy = (y1 + y2) / 2
    w = x2 - x1
    h = y2 - y1
    return torch.stack((cx, cy, w, h), axis=-1)


def book_box_center_to_corner(boxes):
    """``(N, 4)`` centers -> ``(N, 4)`` corners."""
    cx, cy, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    x1 = cx - 0.5 * w
    y1 = cy - 0.5 * h
    x2 = cx + 0.5 * w
    y2 = cy + 0.5 * h
    return torch.stack((x1, y1, x2, y2), axis=-1)


def book_box_iou(boxes1, boxes2):
    """Pairwise IoU ``(N, 4)`` x ``(M, 4)`` -> ``(N, M)``, on ``(N, M, 2)`` corner tensors."""

    def box_area(boxes):
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    areas1 = box_area(boxes1)
    areas2 = box_area(boxes2)
    inter_upperlefts = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    inter_lowerrights = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    inters = (inter_lowerrights - inter_upperlefts).clamp(min=0)
    inter_areas = inters[:, :, 0] * inters[:, :, 1]
    union_areas = areas1[:, None] + areas2 - inter_areas
    return inter_areas / union_areas


def book_assign_anchor_to_bbox(ground_truth, anchors, device, iou_threshold=0.5):
    """``ground_truth (M, 4)``, ``anchors (N, 4)`` -> ``(N,)`` long ground-truth index or -1."""
    num_anchors, num_gt_boxes = anchors.shape[0], ground_truth.shape[0]
    jaccard = book_box_iou(anchors, ground_truth)  # jaccard[i, j]: anchor i vs object j
    anchors_bbox_map = torch.full((num_anchors,), -1, dtype=torch.long, device=device)
    # Every anchor whose best IoU reaches the threshold takes that object ...
    max_ious, indices = torch.max(jaccard, dim=1)
    anc_i = torch.nonzero(max_ious >= iou_threshold).reshape(-1)
    box_j = indices[max_ious >= iou_threshold]
    anchors_bbox_map[anc_i] = box_j
    # ... then, once per object, the largest remaining IoU assigns its pair and discards
    # the pair's row and column.
    col_discard = torch.full((num_anchors,), -1)
    row_discard = torch.full((num_gt_boxes,), -1)
    for _ in range(num_gt_boxes):
        max_idx = torch.argmax(jaccard)
        box_idx = (max_idx % num_gt_boxes).long()
        anc_idx = (max_idx / num_gt_boxes).long()
        anchors_bbox_map[anc_idx] = box_idx
        jaccard[:, box_idx] = col_discard
        jaccard[anc_idx, :] = row_discard
    return anchors_bbox_map


def book_offset_boxes(anchors, assigned_bb, eps=1e-6):
    """Offsets ``(N, 4)`` of ``assigned_bb (N, 4)`` against ``anchors (N, 4)``."""
    c_anc = book_box_corner_to_center(anchors)
    c_assigned_bb = book_box_corner_to_center(assigned_bb)
    offset_xy = 10 * (c_assigned_bb[:, :2] - c_anc[:, :2]) / c_anc[:, 2:]
    offset_wh = 5 * torch.log(eps + c_assigned_bb[:, 2:] / c_anc[:, 2:])
    return torch.cat([offset_xy, offset_wh], axis=1)


def book_multibox_target(anchors, labels):
    """``anchors (1, N, 4)``, ``labels (B, M, 5)`` -> ``(bbox_offset (B, N*4), bbox_mask
    (B, N*4), class_labels (B, N))``, one image at a time."""
    batch_size, anchors = labels.shape[0], anchors.squeeze(0)
    batch_offset, batch_mask, batch_class_labels = [], [], []
    device, num_anchors = anchors.device, anchors.shape[0]
    for i in range(batch_size):
        label = labels[i, :, :]
        anchors_bbox_map = book_assign_anchor_to_bbox(label[:, 1:], anchors, device)
        bbox_mask = ((anchors_bbox_map >= 0).float().unsqueeze(-1)).repeat(1, 4)
        # Unassigned anchors keep class 0 (background) and a zero box.
        class_labels = torch.zeros(num_anchors, dtype=torch.long, device=device)
        assigned_bb = torch.zeros((num_anchors, 4), dtype=torch.float32, device=device)
        indices_true = torch.nonzero(anchors_bbox_map >= 0)
        bb_idx = anchors_bbox_map[indices_true]
        class_labels[indices_true] = label[bb_idx, 0].long() + 1
        assigned_bb[indices_true] = label[bb_idx, 1:]
        offset = book_offset_boxes(anchors, assigned_bb) * bbox_mask
        batch_offset.append(offset.reshape(-1))
        batch_mask.append(bbox_mask.reshape(-1))
        batch_class_labels.append(class_labels)
    bbox_offset = torch.stack(batch_offset)
    bbox_mask = torch.stack(batch_mask)
    class_labels = torch.stack(batch_class_labels)
    return (bbox_offset, bbox_mask, class_labels)


def book_offset_inverse(anchors, offset_preds):
    """Decode ``offset_preds (N, 4)`` against ``anchors (N, 4)`` -> corners ``(N, 4)``."""
    anc = book_box_corner_to_center(anchors)
    pred_bbox_xy = (offset_preds[:, :2] * anc[:, 2:] / 10) + anc[:, :2]
    pred_bbox_wh = torch.exp(offset_preds[:, 2:] / 5) * anc[:, 2:]
    pred_bbox = torch.cat((pred_bbox_xy, pred_bbox_wh), axis=1)
    return book_box_center_to_corner(pred_bbox)


def book_nms(boxes, scores, iou_threshold):
    """Greedy NMS, one kept box per iteration: ``(K, 4)``, ``(K,)`` -> kept indices."""
    B = torch.argsort(scores, dim=-1, descending=True)
    keep = []
    while B.numel() > 0:
        i = B[0]
        keep.append(i)
        if B.numel() == 1:
            break
        iou = book_box_iou(boxes[i, :].reshape(-1, 4), boxes[B[1:], :].reshape(-1, 4)).reshape(-1)
        inds = torch.nonzero(iou <= iou_threshold).reshape(-1)
        B = B[inds + 1]
    return torch.tensor(keep, device=boxes.device)


def book_multibox_detection(cls_probs, offset_preds, anchors, nms_threshold=0.5,
                            pos_threshold=0.009999999):
    """``cls_probs (B, C+1, N)``, ``offset_preds (B, N*4)``, ``anchors (1, N, 4)`` ->
    ``(B, N, 6)`` rows ``[class_id, score, x1, y1, x2, y2]``, one image at a time."""
    device, batch_size = cls_probs.device, cls_probs.shape[0]
    anchors = anchors.squeeze(0)
    num_anchors = cls_probs.shape[2]
    out = []
    for i in range(batch_size):
        cls_prob, offset_pred = cls_probs[i], offset_preds[i].reshape(-1, 4)
        conf, class_id = torch.max(cls_prob[1:], 0)
        predicted_bb = book_offset_inverse(anchors, offset_pred)
        keep = book_nms(predicted_bb, conf, nms_threshold)
        # The anchors NMS did not keep become background, listed after the kept ones.
        all_idx = torch.arange(num_anchors, dtype=torch.long, device=device)
        combined = torch.cat((keep, all_idx))
        uniques, counts = combined.unique(return_counts=True)
        non_keep = uniques[counts == 1]
        all_id_sorted = torch.cat((keep, non_keep))
        class_id[non_keep] = -1
        class_id = class_id[all_id_sorted]
        conf, predicted_bb = conf[all_id_sorted], predicted_bb[all_id_sorted]
        # Predictions below pos_threshold are background too, with score 1 - conf.
        below_min_idx = conf < pos_threshold
        class_id[below_min_idx] = -1
        conf[below_min_idx] = 1 - conf[below_min_idx]
        pred_info = torch.cat((class_id.unsqueeze(1), conf.unsqueeze(1), predicted_bb), dim=1)
        out.append(pred_info)
    return torch.stack(out)


# The chapter's (MXNet edition's) own code for its print-out and its problems, for the Chapter
# tests: In [18]'s print format, In [22]'s smooth_l1 (MXNet's definition) and In [23]'s focal_loss,
# in float64 numpy.
BOOK_PRINT = "epoch %2d, class err %.2e, bbox mae %.2e, time %.1f sec"


def book_smooth_l1(x, sigma):
    """MXNet's smooth_l1 (In [22]): (sigma x)^2 / 2 where |x| < 1 / sigma^2, else |x| - 0.5 /
    sigma^2; float64 numpy."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.abs(x) < 1 / sigma**2, (sigma * x) ** 2 / 2, np.abs(x) - 0.5 / sigma**2)


def book_focal(gamma, x):
    """In [23]: -(1 - x) ** gamma * log(x); float64 numpy."""
    x = np.asarray(x, dtype=np.float64)
    return -((1 - x) ** gamma) * np.log(x)
