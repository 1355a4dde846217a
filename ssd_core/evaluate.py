"""Detection quality: VOC-style AP (all-point interpolation) and COCO-style mAP@[.50:.95].

Matching (the same at every IoU threshold t): within one image and class, detections are taken
by descending score; each takes the still-unmatched ground truth of highest IoU among those with
IoU >= t (COCO's rule) and is a true positive, otherwise a false positive, so a duplicate of an
already found object is a false positive. Every threshold is matched at once (vectors over t).
AP at every threshold uses VOC all-point interpolation (not COCO's 101 recall points). A class
with ground truths but no detections has AP 0; classes without ground truths are left out of
the means (their per-class AP is NaN).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ssd_core.boxes import box_iou
from ssd_core.data import detection_collate, plain_item
from ssd_core.detection import predict_batch

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def _all_point_ap(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """VOC all-point AP along the last axis: recall, precision (..., D) -> (...,)."""
    shape = recall.shape[:-1]
    zeros, ones = np.zeros(shape + (1,)), np.ones(shape + (1,))
    mrec = np.concatenate([zeros, recall, ones], axis=-1)
    mpre = np.concatenate([zeros, precision, zeros], axis=-1)
    # precision envelope: the best precision at this recall or any higher one
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre, -1), axis=-1), -1)
    return (np.diff(mrec, axis=-1) * mpre[..., 1:]).sum(axis=-1)


def average_precision(recall, precision) -> float:
    """VOC all-point interpolated AP: area under the precision envelope.

    recall, precision: (D,) cumulative values for detections sorted by descending score.
    """
    recall = np.asarray(torch.as_tensor(recall).detach().cpu(), dtype=np.float64).reshape(-1)
    precision = np.asarray(torch.as_tensor(precision).detach().cpu(), dtype=np.float64)
    if recall.size == 0:
        return 0.0
    return float(_all_point_ap(recall, precision.reshape(-1)))


@dataclass
class EvalResult:
    """ap50: mean AP at IoU 0.5; map: mean over classes of AP averaged over IoU .50:.05:.95.

    per_class[name] = {"ap50", "map", "num_gt"}; pr_curves[name] = (recall, precision, scores)
    at IoU 0.5, one point per detection by descending score (classes with ground truths).
    ap_per_iou: mean AP over classes at each of ``iou_thresholds``.
    """

    ap50: float
    map: float
    per_class: dict = field(default_factory=dict)
    pr_curves: dict = field(default_factory=dict)
    iou_thresholds: np.ndarray = field(default_factory=lambda: COCO_IOU_THRESHOLDS.copy())
    ap_per_iou: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _as_tensor(x, dtype) -> torch.Tensor:
    return torch.as_tensor(x).detach().to(dtype)


def _match_image(ious: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching in one image/class: ious (D, G), detections by descending score ->
    (true-positive flags (T, D), found ground truths (T, G)) for every threshold at once."""
    T, (D, G) = len(thresholds), ious.shape
    tp = np.zeros((T, D), dtype=bool)
    matched = np.zeros((T, G), dtype=bool)
    if G == 0:
        return tp, matched
    rows = np.arange(T)
    for d in range(D):  # sequential by nature: each match changes what is left
        ok = (ious[d][None, :] >= thresholds[:, None]) & ~matched  # (T, G)
        best = np.where(ok, ious[d][None, :], -1.0).argmax(axis=1)  # (T,)
        hit = ok[rows, best]
        tp[:, d] = hit
        matched[rows[hit], best[hit]] = True
    return tp, matched


def _image_arrays(d_boxes, d_scores, d_labels, g_boxes, g_labels):
    """One image's detections and ground truths (tensors on any device, or arrays) -> numpy:
    ious (D, G) or None when either side is empty, detection order by descending score (ties
    in input order), scores (D,), labels (D,), ground-truth labels (G,). The IoU matrix is
    computed on the input's device."""
    d_boxes = _as_tensor(d_boxes, torch.float32).reshape(-1, 4)
    d_scores = _as_tensor(d_scores, torch.float32).reshape(-1)
    d_labels = _as_tensor(d_labels, torch.long).reshape(-1)
    g_boxes = _as_tensor(g_boxes, torch.float32).reshape(-1, 4).to(d_boxes.device)
    g_labels = _as_tensor(g_labels, torch.long).reshape(-1)
    ious = box_iou(d_boxes, g_boxes).cpu().numpy() if len(d_boxes) and len(g_boxes) else None
    order = torch.argsort(d_scores, descending=True, stable=True).cpu().numpy()
    return (ious, order, d_scores.cpu().numpy(), d_labels.cpu().numpy(),
            g_labels.cpu().numpy())


def _match_by_class(ious, order, d_labels, g_labels, thresholds):
    """Per class with detections: (class, detection indices by descending score, ground-truth
    indices, tp (T, D_c), found (T, G_c)) from :func:`_match_image`."""
    for c in np.unique(d_labels[d_labels >= 0]):
        det_idx = order[d_labels[order] == c]
        gt_idx = np.nonzero(g_labels == c)[0]
        sub = ious[np.ix_(det_idx, gt_idx)] if ious is not None else np.zeros((len(det_idx), 0))
        yield (c, det_idx, gt_idx, *_match_image(sub, thresholds))


def match_detections(boxes, scores, labels, gt_boxes, gt_labels, iou_threshold: float = 0.5):
    """The evaluator's matching for one image at one IoU threshold, for showing its errors:
    -> (tp (K,) bool: which detections are true positives, found (M,) bool: which ground
    truths a detection found). Inputs as in :func:`evaluate_detections` (one image)."""
    ious, order, _, labels, gt_labels = _image_arrays(boxes, scores, labels, gt_boxes, gt_labels)
    tp = np.zeros(len(labels), dtype=bool)
    found = np.zeros(len(gt_labels), dtype=bool)
    thresholds = np.array([iou_threshold], dtype=np.float64)
    for _, det_idx, gt_idx, hit, matched in _match_by_class(ious, order, labels, gt_labels,
                                                            thresholds):
        tp[det_idx], found[gt_idx] = hit[0], matched[0]
    return tp, found


def evaluate_detections(
    detections, ground_truths, num_classes: int, class_names=None, iou_thresholds=None
) -> EvalResult:
    """AP / mAP of detections against ground truths, per class and overall.

    detections: list per image of (boxes (K, 4), scores (K,), labels (K,)), labels 0..C-1
    (labels < 0, e.g. the book's -1 rows, are ignored); ground_truths: list per image of
    (boxes (M, 4), labels (M,)) with labels < 0 ignored as padding. Boxes are corners in one
    shared coordinate system (normalized or pixels). Tensors on any device or arrays.
    """
    if len(detections) != len(ground_truths):
        raise ValueError(
            f"Got detections for {len(detections)} images but ground truths for "
            f"{len(ground_truths)}; give one entry per image in both lists."
        )
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes.")
    thresholds = np.asarray(
        COCO_IOU_THRESHOLDS if iou_thresholds is None else iou_thresholds, dtype=np.float64
    )
    i50 = int(np.argmin(np.abs(thresholds - 0.5)))
    scores_by_class, tp_by_class, num_gt = _collect_matches(
        detections, ground_truths, num_classes, thresholds)
    per_class, pr_curves = {}, {}
    ap_table = []  # (T,) per class with ground truths
    for c, name in enumerate(names):
        if num_gt[c] == 0:
            per_class[name] = {"ap50": float("nan"), "map": float("nan"), "num_gt": 0}
            continue
        ap, curve = _class_ap(scores_by_class[c], tp_by_class[c], int(num_gt[c]),
                              len(thresholds), i50)
        ap_table.append(ap)
        per_class[name] = {
            "ap50": float(ap[i50]), "map": float(ap.mean()), "num_gt": int(num_gt[c])
        }
        pr_curves[name] = curve
    if ap_table:
        ap_per_iou = np.stack(ap_table).mean(axis=0)
        ap50, mean_ap = float(ap_per_iou[i50]), float(ap_per_iou.mean())
    else:
        ap_per_iou = np.full(len(thresholds), np.nan)
        ap50 = mean_ap = float("nan")
    return EvalResult(ap50, mean_ap, per_class, pr_curves, thresholds, ap_per_iou)


def _collect_matches(detections, ground_truths, num_classes: int, thresholds):
    """Match every image -> per class: lists of scores (D_i,) and TP flags (T, D_i), and the
    number of ground truths per class (C,)."""
    scores_by_class = [[] for _ in range(num_classes)]
    tp_by_class = [[] for _ in range(num_classes)]
    num_gt = np.zeros(num_classes, dtype=np.int64)
    for (d_boxes, d_scores, d_labels), (g_boxes, g_labels) in zip(detections, ground_truths):
        # One IoU matrix per image on the input's device, then small numpy work per class.
        ious, order, d_scores_np, d_labels_np, g_labels_np = _image_arrays(
            d_boxes, d_scores, d_labels, g_boxes, g_labels)
        for labels, what in ((d_labels_np, "detection"), (g_labels_np, "ground-truth")):
            if labels.size and int(labels.max()) >= num_classes:
                raise ValueError(
                    f"A {what} has class {int(labels.max())} but num_classes={num_classes}; "
                    "labels must be object classes 0..num_classes-1 (no background class)."
                )
        num_gt += np.bincount(g_labels_np[g_labels_np >= 0], minlength=num_classes)
        for c, det_idx, _, tp, _ in _match_by_class(ious, order, d_labels_np, g_labels_np,
                                                    thresholds):
            tp_by_class[c].append(tp)
            scores_by_class[c].append(d_scores_np[det_idx])
    return scores_by_class, tp_by_class, num_gt


def _class_ap(scores_list, tp_list, num_gt: int, num_thresholds: int, i50: int):
    """One class's AP at every threshold (T,) and its (recall, precision, scores) at IoU 0.5."""
    if scores_list:
        scores = np.concatenate(scores_list)
        tp = np.concatenate(tp_list, axis=1)
        order = np.argsort(-scores, kind="stable")
        scores, tp = scores[order], tp[:, order]
    else:
        scores, tp = np.zeros(0), np.zeros((num_thresholds, 0), dtype=bool)
    tp_cum = np.cumsum(tp, axis=1)
    fp_cum = np.cumsum(~tp, axis=1)
    recall = tp_cum / num_gt
    precision = tp_cum / np.maximum(tp_cum + fp_cum, 1)
    ap = _all_point_ap(recall, precision) if scores.size else np.zeros(num_thresholds)
    return ap, (recall[i50], precision[i50], scores)


@torch.no_grad()
def resize_batch(X, input_size: int | None):
    """Images ``(B, 3, H, W)`` -> ``(B, 3, input_size, input_size)`` (bilinear), the same
    tensor when ``input_size`` is None or the images already have that size. Boxes are
    normalized, so their targets stay valid. Training and evaluation both resize with it."""
    if input_size and tuple(X.shape[-2:]) != (input_size, input_size):
        X = F.interpolate(X, size=(input_size, input_size), mode="bilinear", align_corners=False)
    return X


def predict_range(model, data, start: int, stop: int, input_size=None, device=None,
                  nms_threshold=0.5, pos_threshold=0.009, channels_last=False):
    """Items ``start..stop-1`` of a dataset, never augmented -> (detections, ground truths), per
    image ``(boxes (K, 4), scores (K,), labels (K,))`` and ``(boxes (M, 4), labels (M,))``, CPU,
    normalized corners: the inputs of :func:`evaluate_detections`."""
    device = device or next(model.parameters()).device
    X, Y = detection_collate([plain_item(data, i) for i in range(start, stop)])
    X = resize_batch(X.to(device), input_size)
    if channels_last:
        X = X.contiguous(memory_format=torch.channels_last)
    out = predict_batch(model, X, nms_threshold, pos_threshold).cpu()
    dets, gts = [], []
    for rows, target in zip(out, Y):
        keep = rows[:, 0] >= 0
        dets.append((rows[keep, 2:6], rows[keep, 1], rows[keep, 0].long()))
        real = target[:, 0] >= 0
        gts.append((target[real, 1:5], target[real, 0].long()))
    return dets, gts


def evaluate_model(model, data, class_names, batch_size=32, input_size=None, device=None,
                   nms_threshold=0.5, pos_threshold=0.009, channels_last=False):
    """Run ``model`` over a dataset's images, never augmented, and score it ->
    ssd_core.evaluate.EvalResult (normalized boxes on both sides). The model runs in eval mode;
    its training mode is restored afterwards."""
    was_training = model.training
    model.eval()
    dets, gts = [], []
    for start in range(0, len(data), batch_size):
        d, g = predict_range(model, data, start, min(start + batch_size, len(data)), input_size,
                             device, nms_threshold, pos_threshold, channels_last)
        dets += d
        gts += g
    if was_training:
        model.train()
    return evaluate_detections(dets, gts, len(class_names), class_names)
