"""ssd_core.nms_trace against independent oracles: the kept boxes and their order are the
reference NMS's (tests/reference.py, its own IoU), every removal matches a plain greedy loop
written here on that IoU (remover, step and IoU), and trace_raw keeps the candidates a plain
filter + reference NMS keeps (and the Detector's)."""

import pytest
import torch

from ssd_core.data import CLASS_NAMES
from ssd_core.detection import Detector, RawOutput, nms
from ssd_core.model import TinySSD
from ssd_core.nms_trace import nms_trace, trace_raw
from tests.reference import ref_box_iou, ref_nms, ref_per_class_nms


def _boxes(seed, k, quantize=False):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(k, 2, generator=g)
    wh = torch.rand(k, 2, generator=g) * 0.4 + 0.01
    scores = torch.rand(k, generator=g)
    if quantize:  # many equal scores and identical boxes: ties everywhere
        xy, wh, scores = (xy * 4).round() / 4, (wh * 4).round() / 4 + 0.05, (scores * 5).round()
    return torch.cat((xy, xy + wh), 1), scores


def greedy_loop(boxes, scores, threshold, groups=None):
    """The book's NMS one box at a time on the reference IoU (not ssd_core's) -> kept list,
    {removed: (step, remover, iou)}."""
    iou = ref_box_iou(boxes, boxes)
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    alive, kept, removed = list(order), [], {}
    while alive:
        i = alive.pop(0)
        kept.append(i)
        for j in list(alive):
            same = groups is None or groups[i] == groups[j]
            if same and iou[i, j] > threshold:
                alive.remove(j)
                removed[j] = (len(kept) - 1, i, float(iou[i, j]))
    return kept, removed


@pytest.mark.parametrize("seed,k,threshold,quantize", [
    (0, 300, 0.5, False), (1, 500, 0.3, False), (2, 200, 0.7, True), (3, 64, 0.0, False),
    (4, 400, 1.0, True), (5, 1, 0.5, False)])
def test_kept_order_is_nms_and_removals_match_a_greedy_loop(seed, k, threshold, quantize):
    boxes, scores = _boxes(seed, k, quantize)
    t = nms_trace(boxes, scores, threshold)
    kept, removed = greedy_loop(boxes, scores, threshold)
    assert t.kept.tolist() == kept == ref_nms(boxes, scores, threshold).tolist()
    assert torch.equal(t.kept, nms(boxes, scores, threshold))
    assert t.step[t.kept].tolist() == list(range(len(kept)))
    assert (t.removed_by[t.kept] == -1).all()
    for j, (step, by, iou) in removed.items():
        assert (int(t.step[j]), int(t.removed_by[j])) == (step, by)
        assert float(t.iou[j]) == pytest.approx(iou, abs=1e-6)
        assert t.iou[j] > threshold


def test_each_step_partitions_the_boxes():
    boxes, scores = _boxes(7, 250)
    t = nms_trace(boxes, scores, 0.4)
    for s in range(t.num_steps):
        parts = [t.kept_before(s), t.kept[s:s + 1], t.remaining_after(s)]
        parts += [t.removed_at(r) for r in range(s + 1)]
        everything = torch.cat(parts).sort().values
        assert torch.equal(everything, torch.arange(len(scores))), s
        r = t.removed_at(s)
        assert (t.removed_by[r] == t.kept[s]).all()
        assert (t.iou[r][:-1] >= t.iou[r][1:]).all()  # listed by descending IoU
        rest = t.remaining_after(s)
        assert (scores[rest] <= scores[t.kept[s]]).all()  # still to visit: lower scores


def test_per_class_groups_match_a_greedy_loop():
    boxes, scores = _boxes(8, 300)
    groups = torch.randint(0, 3, (300,), generator=torch.Generator().manual_seed(0))
    t = nms_trace(boxes, scores, 0.5, groups)
    kept, removed = greedy_loop(boxes, scores, 0.5, groups.tolist())
    assert t.kept.tolist() == kept == ref_per_class_nms(boxes, scores, groups, 0.5).tolist()
    assert all(int(t.removed_by[j]) == by and groups[by] == groups[j]
               for j, (_, by, _) in removed.items())
    assert len(kept) > len(nms(boxes, scores, 0.5))


@pytest.mark.parametrize("per_class", [False, True])
@pytest.mark.parametrize("conf", [0.0, 0.3, 0.6])
def test_trace_raw_keeps_the_detectors_boxes_in_its_order(per_class, conf):
    g = torch.Generator().manual_seed(11)
    n = 2000
    probs = torch.softmax(torch.randn(n, 4, generator=g) * 2, dim=1)
    xy = torch.rand(n, 2, generator=g)
    raw = RawOutput(probs, torch.cat((xy, xy + 0.05 + torch.rand(n, 2, generator=g) * 0.3), 1),
                    (320, 240))
    torch.manual_seed(0)
    det = Detector(TinySSD(len(CLASS_NAMES)), list(CLASS_NAMES), 256, device="cpu")
    d = det.filter(raw, conf, 0.45, per_class=per_class)
    rt = trace_raw(raw, conf, 0.45, per_class)
    # Independently: each anchor's best foreground class, the candidates with score >= conf,
    # the reference NMS (per class or not) on their boxes.
    best, label = raw.probs[:, 1:].max(dim=1)
    cand = torch.tensor([i for i in range(n) if float(best[i]) >= conf], dtype=torch.long)
    assert rt.anchor.tolist() == cand.tolist()
    if per_class:
        keep = ref_per_class_nms(raw.boxes[cand], best[cand], label[cand], 0.45)
    else:
        keep = ref_nms(raw.boxes[cand], best[cand], 0.45)
    assert rt.anchor[rt.trace.kept].tolist() == cand[keep].tolist() == d.anchor_index.tolist()
    assert torch.equal(rt.scores[rt.trace.kept], best[cand[keep]])
    assert torch.equal(rt.labels[rt.trace.kept], label[cand[keep]])
    assert torch.equal(rt.scores[rt.trace.kept], d.scores)


def test_empty_and_bad_inputs():
    t = nms_trace(torch.zeros((0, 4)), torch.zeros(0), 0.5)
    assert t.num_steps == 0 and t.order.numel() == 0
    with pytest.raises(ValueError, match="groups"):
        nms_trace(torch.zeros((3, 4)), torch.zeros(3), 0.5, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="scores"):
        nms_trace(torch.zeros((3, 4)), torch.zeros(2), 0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_equals_cpu():
    boxes, scores = _boxes(9, 3000)
    cpu = nms_trace(boxes, scores, 0.5)
    gpu = nms_trace(boxes.cuda(), scores.cuda(), 0.5)
    assert gpu.kept.device.type == "cuda"
    for a, b in zip(cpu, gpu):
        assert torch.equal(a, b.cpu())
