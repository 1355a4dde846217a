"""Loop oracles: plain per-anchor / per-box loops written from the book's description.

These are test oracles, not the book's code and not a speed baseline: they loop over anchors and
boxes one at a time and are some 300 times slower than the book's own vectorized PyTorch code,
which lives in ``ssd_core/book.py`` (every ratio in ``bench/`` is against that one). Independent of
``ssd_core`` on purpose. They share ``ssd_core``'s documented deviations from the book: padding
rows (class < 0) are ignored, IoU of two boxes with zero-area union is 0 (not NaN), the greedy
step stops when no free anchor is left, and NMS sorts with ``stable=True``.
"""

import math

import torch


def ref_box_iou(boxes1, boxes2):
    """``(N, 4)``, ``(M, 4)`` -> ``(N, M)``, one row of the book's formula at a time."""
    out = torch.zeros((len(boxes1), len(boxes2)), dtype=torch.float32)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    for i in range(len(boxes1)):
        a = boxes1[i]
        area1 = (a[2] - a[0]) * (a[3] - a[1])
        w = (torch.minimum(a[2], boxes2[:, 2]) - torch.maximum(a[0], boxes2[:, 0])).clamp(min=0)
        h = (torch.minimum(a[3], boxes2[:, 3]) - torch.maximum(a[1], boxes2[:, 1])).clamp(min=0)
        inter = w * h
        union = area1 + area2 - inter
        out[i] = torch.where(union > 0, inter / union, torch.zeros_like(inter))
    return out


def ref_multibox_prior(height, width, sizes, ratios):
    """Anchors for an ``height x width`` map as a list of ``[x1, y1, x2, y2]``, pixel by pixel."""
    out = []
    shapes = [(s, ratios[0]) for s in sizes] + [(sizes[0], r) for r in ratios[1:]]
    for row in range(height):
        for col in range(width):
            cy, cx = (row + 0.5) / height, (col + 0.5) / width
            for s, r in shapes:
                w = s * math.sqrt(r) * height / width
                h = s / math.sqrt(r)
                out.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return out


def ref_assign_anchor_to_bbox(ground_truth, anchors, iou_threshold=0.5):
    """Loop oracle of the book's assignment for one image: ``(M, 4)``, ``(N, 4)`` ->
    ``(assigned (N,), greedy (N,))``.

    Loops over anchors for the threshold step and over ground truths for the greedy step.
    """
    num_anchors, num_gt = anchors.shape[0], ground_truth.shape[0]
    jaccard = ref_box_iou(anchors, ground_truth)
    assigned = torch.full((num_anchors,), -1, dtype=torch.long)
    greedy = torch.zeros(num_anchors, dtype=torch.bool)
    if num_gt == 0:
        return assigned, greedy
    for a in range(num_anchors):
        j = int(torch.argmax(jaccard[a]))
        if jaccard[a, j] >= iou_threshold:
            assigned[a] = j
    for _ in range(num_gt):
        max_idx = int(torch.argmax(jaccard))
        if jaccard.reshape(-1)[max_idx] < 0:  # no free anchor left (N < M)
            break
        anc_idx, box_idx = divmod(max_idx, num_gt)
        assigned[anc_idx] = box_idx
        greedy[anc_idx] = True
        jaccard[:, box_idx] = -1
        jaccard[anc_idx, :] = -1
    return assigned, greedy


def ref_offset_boxes(anchor, box, eps=1e-6):
    """Book offsets of one ``box`` against one ``anchor`` (Python floats) -> list of 4."""
    acx, acy = (anchor[0] + anchor[2]) / 2, (anchor[1] + anchor[3]) / 2
    aw, ah = anchor[2] - anchor[0], anchor[3] - anchor[1]
    bcx, bcy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    bw, bh = box[2] - box[0], box[3] - box[1]
    return [
        10 * (bcx - acx) / aw,
        10 * (bcy - acy) / ah,
        5 * math.log(eps + bw / aw),
        5 * math.log(eps + bh / ah),
    ]


def ref_multibox_target(anchors, labels, iou_threshold=0.5):
    """Loop oracle of the book's targets (loops over images and anchors); multibox_target's
    shapes."""
    anchors = anchors.reshape(-1, 4)
    num_anchors = anchors.shape[0]
    offsets, masks, classes = [], [], []
    for label in labels:
        label = label[label[:, 0] >= 0]  # padding rows are ignored
        assigned, _ = ref_assign_anchor_to_bbox(label[:, 1:], anchors, iou_threshold)
        offset = torch.zeros((num_anchors, 4), dtype=torch.float32)
        mask = torch.zeros((num_anchors, 4), dtype=torch.float32)
        cls = torch.zeros(num_anchors, dtype=torch.long)
        for a in torch.nonzero(assigned >= 0).reshape(-1).tolist():
            j = int(assigned[a])
            cls[a] = int(label[j, 0]) + 1
            mask[a] = 1.0
            offset[a] = torch.tensor(
                ref_offset_boxes(anchors[a].tolist(), label[j, 1:].tolist()), dtype=torch.float32
            )
        offsets.append(offset.reshape(-1))
        masks.append(mask.reshape(-1))
        classes.append(cls)
    return torch.stack(offsets), torch.stack(masks), torch.stack(classes)


def ref_hard_negative_mask(loss, cls_labels, neg_ratio=3):
    """Per image: keep the neg_ratio * positives (or neg_ratio) background anchors of highest
    loss, ties to the lower index."""
    out = torch.zeros(cls_labels.shape, dtype=torch.bool)
    for b in range(cls_labels.shape[0]):
        num_pos = int((cls_labels[b] > 0).sum())
        quota = neg_ratio * num_pos if num_pos > 0 else neg_ratio
        negatives = [i for i in range(cls_labels.shape[1]) if int(cls_labels[b, i]) == 0]
        negatives.sort(key=lambda i: -float(loss[b, i]))  # sort() is stable
        for i in negatives[:quota]:
            out[b, i] = True
    return out


def ref_nms(boxes, scores, iou_threshold):
    """Loop oracle of the book's nms (argsort stable): ``(K, 4)``, ``(K,)`` -> kept indices."""
    order = torch.argsort(scores, dim=-1, descending=True, stable=True)
    keep = []
    while order.numel() > 0:
        i = order[0]
        keep.append(int(i))
        if order.numel() == 1:
            break
        iou = ref_box_iou(boxes[i].reshape(-1, 4), boxes[order[1:]].reshape(-1, 4)).reshape(-1)
        inds = torch.nonzero(iou <= iou_threshold).reshape(-1)
        order = order[inds + 1]
    return torch.tensor(keep, dtype=torch.long)


def ref_offset_inverse(anchors, offset_preds):
    """Book decoding, ``(N, 4)`` anchors and offsets -> ``(N, 4)`` corner boxes."""
    cx = (anchors[:, 0] + anchors[:, 2]) / 2
    cy = (anchors[:, 1] + anchors[:, 3]) / 2
    w = anchors[:, 2] - anchors[:, 0]
    h = anchors[:, 3] - anchors[:, 1]
    pcx = offset_preds[:, 0] * w / 10 + cx
    pcy = offset_preds[:, 1] * h / 10 + cy
    pw = torch.exp(offset_preds[:, 2] / 5) * w
    ph = torch.exp(offset_preds[:, 3] / 5) * h
    return torch.stack((pcx - pw / 2, pcy - ph / 2, pcx + pw / 2, pcy + ph / 2), dim=1)


def ref_per_class_nms(boxes, conf, class_id, iou_threshold):
    """NMS inside each class, kept indices merged by descending score (ties: lower index)."""
    kept = []
    for c in sorted(set(class_id.tolist())):
        idx = torch.nonzero(class_id == c).reshape(-1)
        kept.extend(idx[ref_nms(boxes[idx], conf[idx], iou_threshold)].tolist())
    kept = torch.tensor(sorted(kept), dtype=torch.long)
    return kept[torch.argsort(conf[kept], descending=True, stable=True)]


def ref_multibox_detection(
    cls_probs, offset_preds, anchors, nms_threshold=0.5, pos_threshold=0.009, per_class=False
):
    """Loop oracle of the book's multibox_detection, one image at a time -> ``(B, N, 6)``."""
    anchors = anchors.reshape(-1, 4)
    num_anchors = anchors.shape[0]
    out = []
    for i in range(cls_probs.shape[0]):
        cls_prob, offset_pred = cls_probs[i], offset_preds[i].reshape(-1, 4)
        conf, class_id = torch.max(cls_prob[1:], 0)
        predicted_bb = ref_offset_inverse(anchors, offset_pred)
        if per_class:
            keep = ref_per_class_nms(predicted_bb, conf, class_id, nms_threshold)
        else:
            keep = ref_nms(predicted_bb, conf, nms_threshold)
        kept = set(keep.tolist())
        non_keep = torch.tensor([a for a in range(num_anchors) if a not in kept], dtype=torch.long)
        all_id_sorted = torch.cat((keep, non_keep))
        class_id = class_id.clone()
        class_id[non_keep] = -1
        class_id = class_id[all_id_sorted]
        conf, predicted_bb = conf[all_id_sorted].clone(), predicted_bb[all_id_sorted]
        below = conf < pos_threshold
        class_id[below] = -1
        conf[below] = 1 - conf[below]
        out.append(torch.cat((class_id[:, None].float(), conf[:, None], predicted_bb), dim=1))
    return torch.stack(out)
