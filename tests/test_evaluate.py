"""AP / mAP on hand-computed cases and against a plain loop reference on random data."""

import math
import random

import numpy as np
import pytest
import torch

from ssd_core.evaluate import average_precision, evaluate_detections, match_detections

T = torch.tensor


def box(x, y, w=10.0, h=10.0):
    return [x, y, x + w, y + h]


def gts_three():
    """One image, three far apart ground truths of class 0."""
    return [(T([box(0, 0), box(50, 0), box(0, 50)]), T([0, 0, 0]))]


# ------------------------------------------------------------------ average_precision


def test_average_precision_hand_values():
    assert average_precision([1.0], [1.0]) == 1.0
    assert average_precision([], []) == 0.0
    assert average_precision([0.5, 0.5], [1.0, 0.5]) == 0.5
    # envelope: precision at recall 0.5 is lifted to the later 0.75
    assert average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 0.75]) == pytest.approx(
        0.5 * 1.0 + 0.5 * 0.75
    )
    assert average_precision(torch.tensor([0.25, 0.5]), np.array([1.0, 1.0])) == 0.5


# ------------------------------------------------------------------ evaluate_detections


def test_perfect_detections():
    gts = gts_three()
    dets = [(gts[0][0].clone(), T([0.9, 0.8, 0.7]), T([0, 0, 0]))]
    r = evaluate_detections(dets, gts, num_classes=1)
    assert r.ap50 == 1.0 and r.map == 1.0
    assert r.per_class["0"] == {"ap50": 1.0, "map": 1.0, "num_gt": 3}
    recall, precision, scores = r.pr_curves["0"]
    assert recall.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert precision.tolist() == [1.0, 1.0, 1.0]
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.7])


def test_empty_detections():
    gts = gts_three()
    dets = [(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long))]
    r = evaluate_detections(dets, gts, num_classes=1)
    assert r.ap50 == 0.0 and r.map == 0.0
    assert r.per_class["0"]["num_gt"] == 3
    assert r.pr_curves["0"][0].size == 0


def test_all_wrong_class():
    gts = gts_three()
    dets = [(gts[0][0].clone(), T([0.9, 0.8, 0.7]), T([1, 1, 1]))]
    r = evaluate_detections(dets, gts, num_classes=2, class_names=["cat", "dog"])
    assert r.per_class["cat"]["ap50"] == 0.0  # its objects were found as "dog"
    assert math.isnan(r.per_class["dog"]["ap50"])  # no dog ground truth: not in the mean
    assert r.per_class["dog"]["num_gt"] == 0
    assert r.ap50 == 0.0 and r.map == 0.0
    assert set(r.pr_curves) == {"cat"}


def test_duplicates_are_false_positives():
    g = [(T([box(0, 0)]), T([0]))]
    dets = [(T([box(0, 0), box(0, 0), box(0.5, 0)]), T([0.9, 0.8, 0.7]), T([0, 0, 0]))]
    r = evaluate_detections(dets, g, num_classes=1)
    recall, precision, _ = r.pr_curves["0"]
    assert recall.tolist() == [1.0, 1.0, 1.0]
    assert precision.tolist() == pytest.approx([1.0, 0.5, 1 / 3])
    assert r.ap50 == 1.0  # the duplicates come after full recall
    # A duplicate scored above the true match: still only one TP, but it ranks first anyway.
    dets = [(T([box(0, 0), box(0, 0)]), T([0.5, 0.9]), T([0, 0]))]
    assert evaluate_detections(dets, g, num_classes=1).ap50 == 1.0


def test_hand_computed_ap():
    """3 gts; detections by score: TP, FP, TP, FP, TP.

    recall    1/3, 1/3, 2/3, 2/3, 1
    precision 1,   1/2, 2/3, 1/2, 3/5
    envelope at recall 1/3 -> 1, 2/3 -> 2/3, 1 -> 3/5
    AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5 = 34/45
    """
    gts = gts_three()
    far = box(200, 200)
    boxes = T([box(0, 0), far, box(50, 0), far, box(0, 50)])
    scores = T([0.9, 0.8, 0.7, 0.6, 0.5])
    # shuffle the order given: scores decide
    perm = torch.tensor([3, 0, 4, 1, 2])
    dets = [(boxes[perm], scores[perm], T([0, 0, 0, 0, 0]))]
    r = evaluate_detections(dets, gts, num_classes=1)
    assert r.ap50 == pytest.approx(34 / 45)
    assert r.map == pytest.approx(34 / 45)  # exact boxes: same at every IoU threshold
    recall, precision, _ = r.pr_curves["0"]
    assert recall.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    assert precision.tolist() == pytest.approx([1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])


def test_map_over_iou_thresholds():
    # IoU 78/100 = 0.78: a match at 0.50, 0.55, ..., 0.75 (6 of 10 thresholds), a miss above.
    g = [(T([[0.0, 0.0, 10.0, 10.0]]), T([0]))]
    dets = [(T([[0.0, 0.0, 10.0, 7.8]]), T([0.9]), T([0]))]
    r = evaluate_detections(dets, g, num_classes=1)
    assert r.ap50 == 1.0
    assert r.map == pytest.approx(0.6)
    assert r.ap_per_iou.tolist() == [1.0] * 6 + [0.0] * 4


def test_several_classes_and_images():
    # class 0: image A one gt found; image B one gt missed -> recall 1/2, AP 0.5
    # class 1: image B one gt found, one FP ranked above it -> AP 0.5
    # class 2: no gt anywhere, only a detection -> excluded from the means
    gts = [(T([box(0, 0)]), T([0])), (T([box(0, 0), box(40, 40)]), T([0, 1]))]
    dets = [
        (T([box(0, 0), box(80, 80)]), T([0.9, 0.3]), T([0, 2])),
        (T([box(100, 100), box(40, 40)]), T([0.95, 0.6]), T([1, 1])),
    ]
    r = evaluate_detections(dets, gts, num_classes=3, class_names=["a", "b", "c"])
    assert r.per_class["a"]["ap50"] == pytest.approx(0.5)
    assert r.per_class["b"]["ap50"] == pytest.approx(0.5)
    assert math.isnan(r.per_class["c"]["ap50"])
    assert r.ap50 == pytest.approx(0.5)
    assert [r.per_class[n]["num_gt"] for n in "abc"] == [2, 1, 0]


def test_padding_and_background_rows_ignored():
    g = [(T([box(0, 0), [-1, -1, -1, -1]]), T([0, -1]))]
    dets = [(T([box(0, 0), box(0, 0)]), T([0.9, 0.99]), T([0, -1]))]
    r = evaluate_detections(dets, g, num_classes=1)
    assert r.ap50 == 1.0 and r.per_class["0"]["num_gt"] == 1


def test_matching_prefers_unmatched_gt():
    """A detection overlapping two gts takes the best one still free (COCO rule)."""
    g = [(T([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]]), T([0, 0]))]
    dets = [(T([[0.0, 0.0, 10.0, 10.0], [0.5, 0.0, 10.5, 10.0]]), T([0.9, 0.8]), T([0, 0]))]
    r = evaluate_detections(dets, g, num_classes=1)
    assert r.ap50 == 1.0  # the second detection matches the second gt (IoU ~0.9)


def test_errors():
    g = gts_three()
    with pytest.raises(ValueError, match="one entry per image"):
        evaluate_detections([], g, num_classes=1)
    with pytest.raises(ValueError, match="num_classes"):
        evaluate_detections([(T([box(0, 0)]), T([0.5]), T([3]))], g, num_classes=1)


def test_no_ground_truth_at_all():
    dets = [(T([box(0, 0)]), T([0.5]), T([0]))]
    r = evaluate_detections(dets, [(torch.zeros(0, 4), torch.zeros(0))], num_classes=1)
    assert math.isnan(r.ap50) and math.isnan(r.map)


# ------------------------------------------------------------------ plain reference


def py_iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def py_ap(recall, precision):
    mrec = [0.0, *recall, 1.0]
    mpre = [0.0, *precision, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1))


def py_evaluate(dets, gts, num_classes, thresholds):
    """One class, one threshold, one detection at a time."""
    per_class = {}
    for c in range(num_classes):
        n_gt = sum(1 for _, gl in gts for lab in gl if lab == c)
        if n_gt == 0:
            continue
        all_d = [(s, i, b) for i, (bs, ss, ls) in enumerate(dets)
                 for b, s, lab in zip(bs, ss, ls) if lab == c]
        all_d.sort(key=lambda t: -t[0])  # stable: ties keep image order
        aps = []
        for t in thresholds:
            used = set()
            tps = []
            for _, i, b in all_d:
                best, best_j = -1.0, None
                for j, (gb, gl) in enumerate(zip(*gts[i])):
                    if gl != c or (i, j) in used:
                        continue
                    iou = py_iou(b, gb)
                    if iou >= t and iou > best:
                        best, best_j = iou, j
                tps.append(best_j is not None)
                if best_j is not None:
                    used.add((i, best_j))
            tp = fp = 0
            rec, prec = [], []
            for hit in tps:
                tp, fp = tp + hit, fp + (not hit)
                rec.append(tp / n_gt)
                prec.append(tp / (tp + fp))
            aps.append(py_ap(rec, prec) if tps else 0.0)
        per_class[c] = aps
    return per_class


def random_case(seed, num_classes=3):
    """Six images of jittered, duplicated, mislabelled and stray detections: -> (dets, gts) as
    tensors, and the same as plain lists."""
    rng = random.Random(seed)

    def rand_box():
        x, y = rng.uniform(0, 80), rng.uniform(0, 80)
        return [x, y, x + rng.uniform(5, 30), y + rng.uniform(5, 30)]

    dets, gts, plain_d, plain_g = [], [], [], []
    for _ in range(6):
        g_boxes = [rand_box() for _ in range(rng.randint(0, 5))]
        g_labels = [rng.randrange(num_classes - 1) for _ in g_boxes]  # class 2 never has gt
        d_boxes, d_scores, d_labels = [], [], []
        for b, lab in zip(g_boxes, g_labels):  # jittered copies, some duplicated
            for _ in range(rng.randint(0, 2)):
                j = [v + rng.uniform(-2.5, 2.5) for v in b]
                d_boxes.append([min(j[0], j[2] - 1), min(j[1], j[3] - 1), j[2], j[3]])
                d_labels.append(lab if rng.random() < 0.8 else rng.randrange(num_classes))
                d_scores.append(round(rng.random(), 2))  # ties happen
        for _ in range(rng.randint(0, 3)):
            d_boxes.append(rand_box())
            d_labels.append(rng.randrange(num_classes))
            d_scores.append(round(rng.random(), 2))
        dets.append((T(d_boxes).reshape(-1, 4), T(d_scores), T(d_labels, dtype=torch.long)))
        gts.append((T(g_boxes).reshape(-1, 4), T(g_labels, dtype=torch.long)))
        plain_d.append((dets[-1][0].tolist(), d_scores, d_labels))
        plain_g.append((gts[-1][0].tolist(), g_labels))
    return dets, gts, plain_d, plain_g


@pytest.mark.parametrize("seed", range(4))
def test_matches_plain_reference_on_random_data(seed):
    num_classes, thresholds = 3, [0.5 + 0.05 * k for k in range(10)]
    dets, gts, plain_d, plain_g = random_case(seed, num_classes)
    ref = py_evaluate(plain_d, plain_g, num_classes, thresholds)
    r = evaluate_detections(dets, gts, num_classes, iou_thresholds=thresholds)
    assert set(ref) == {c for c in range(num_classes) if r.per_class[str(c)]["num_gt"] > 0}
    for c, aps in ref.items():
        assert r.per_class[str(c)]["ap50"] == pytest.approx(aps[0], abs=1e-6)
        assert r.per_class[str(c)]["map"] == pytest.approx(sum(aps) / len(aps), abs=1e-6)
    if ref:
        assert r.ap50 == pytest.approx(sum(a[0] for a in ref.values()) / len(ref), abs=1e-6)
        means = [sum(a) / len(a) for a in ref.values()]
        assert r.map == pytest.approx(sum(means) / len(means), abs=1e-6)


def py_match(d_boxes, d_scores, d_labels, g_boxes, g_labels, t):
    """One image: detections by descending score (ties in input order) each take the unmatched
    ground truth of their class with the highest IoU >= t."""
    tp, found = [False] * len(d_boxes), [False] * len(g_boxes)
    for d in sorted(range(len(d_boxes)), key=lambda k: -d_scores[k]):
        best, best_j = -1.0, None
        for j, gb in enumerate(g_boxes):
            iou = py_iou(d_boxes[d], gb)
            if g_labels[j] == d_labels[d] and not found[j] and iou >= t and iou > best:
                best, best_j = iou, j
        if best_j is not None:
            tp[d], found[best_j] = True, True
    return tp, found


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("t", [0.5, 0.75])
def test_match_detections_is_the_evaluators_matching_per_image(seed, t):
    """The Evaluation page marks false positives and misses with this: it must be the rule
    evaluate_detections counts with."""
    dets, gts, plain_d, plain_g = random_case(seed)
    total_tp = 0
    for (b, s, lab), (gb, gl), (pb, ps, pl), (pgb, pgl) in zip(dets, gts, plain_d, plain_g):
        tp, found = match_detections(b, s, lab, gb, gl, t)
        assert (tp.tolist(), found.tolist()) == py_match(pb, ps, pl, pgb, pgl, t)
        assert tp.sum() == found.sum()
        total_tp += int(tp.sum())
    assert total_tp > 0
    # Perfect detections of the first image find every object.
    gb, gl = gts[0]
    tp, found = match_detections(gb, torch.ones(len(gl)), gl, gb, gl)
    assert tp.all() and found.all()
    empty = match_detections(torch.zeros(0, 4), [], [], gb, gl)
    assert empty[0].shape == (0,) and not empty[1].any() and empty[1].shape == (len(gl),)
