"""app/figures_steps.py: the step-through figure builders, checked on their data (no
Streamlit): NMS frames follow ssd_core.nms_trace step by step, the sandbox draws the anchor and
the decoded box, mining and anchor-fit figures carry the counts they are given."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from app import figures_steps as fs
from ssd_core.anchor_fit import anchor_shapes
from ssd_core.anchors import anchor_layout
from ssd_core.detection import nms
from ssd_core.nms_trace import nms_trace

NAMES = ["banana", "ring", "star"]


def _case(k=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(k, 2, generator=g) * 0.7
    boxes = torch.cat((xy, xy + 0.1 + torch.rand(k, 2, generator=g) * 0.2), 1)
    scores = torch.rand(k, generator=g)
    labels = torch.randint(0, 3, (k,), generator=g)
    t = nms_trace(boxes, scores, 0.3)
    trace = {k_: getattr(t, k_).numpy() for k_ in ("kept", "step", "removed_by", "iou")}
    return boxes.numpy() * 200, scores.numpy(), labels.numpy(), trace, t, (boxes, scores)


def _boxes_in(x) -> int:
    return len(x) // 6


def test_nms_frames_follow_the_trace_step_by_step():
    boxes, scores, labels, trace, t, (bt, st_) = _case()
    fig = fs.nms_steps_figure(Image.new("RGB", (200, 200)), boxes, scores, labels, NAMES, trace,
                              active=1)
    assert len(fig.frames) == t.num_steps == len(nms(bt, st_, 0.3))
    assert fig.layout.sliders[0].active == 1
    assert [s.label for s in fig.layout.sliders[0].steps] == [str(s + 1)
                                                              for s in range(t.num_steps)]
    for s, frame in enumerate(fig.frames):
        earlier, rest, removed, now, text = frame.data
        assert _boxes_in(earlier.x) == s
        assert _boxes_in(removed.x) == len(t.removed_at(s))
        assert _boxes_in(rest.x) == len(t.remaining_after(s))
        k = int(t.kept[s])
        np.testing.assert_allclose(now.x[:5], boxes[k, [0, 2, 2, 0, 0]])
        assert list(text.text) == [f"<b>keep</b> {NAMES[labels[k]]} {scores[k]:.2f}"]
        hover = [float(v.rsplit("IoU ", 1)[1].split()[0]) for v in removed.text[::6]]
        np.testing.assert_allclose(hover, t.iou[t.removed_at(s)].numpy(), atol=5e-4)
    # the figure's own data is the active step's frame
    assert _boxes_in(fig.data[0].x) == 1
    np.testing.assert_array_equal(fig.data[2].x, fig.frames[1].data[2].x)
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["▶", "❚❚"]


def test_nms_frames_are_a_window_around_the_active_step_and_empty_is_fine():
    boxes, scores, labels, trace, t, _ = _case(k=300, seed=1)
    fig = fs.nms_steps_figure((Image.new("RGB", (200, 200))), boxes, scores, labels, NAMES,
                              trace, active=t.num_steps - 1, max_frames=10, max_remaining=5)
    assert [f.name for f in fig.frames] == [str(s) for s in range(t.num_steps - 10,
                                                                  t.num_steps)]
    assert fig.layout.sliders[0].active == 9
    assert all(_boxes_in(f.data[1].x) <= 5 for f in fig.frames)
    empty = {k: np.zeros(0, dtype=int) for k in ("kept", "step", "removed_by", "iou")}
    fig = fs.nms_steps_figure(Image.new("RGB", (20, 20)), np.zeros((0, 4)), np.zeros(0),
                              np.zeros(0, dtype=int), NAMES, empty)
    assert len(fig.frames) == 0 and len(fig.data) == 5


def test_offset_sandbox_draws_anchor_box_and_arrow():
    fig = fs.offset_sandbox_figure((256, 256), [10, 20, 60, 80], [30, 30, 90, 100])
    anchor, box = fig.data[0], fig.data[1]
    np.testing.assert_allclose(anchor.x[:5], [10, 60, 60, 10, 10])
    np.testing.assert_allclose(box.y[:5], [30, 30, 100, 100, 30])
    assert len(fig.layout.annotations) == 1
    same = fs.offset_sandbox_figure(Image.new("RGB", (64, 64)), [1, 1, 9, 9], [1, 1, 9, 9])
    assert len(same.layout.annotations) == 0 and len(same.layout.images) == 1


def test_mining_figures_carry_counts_and_shares():
    loss = np.sort(np.random.default_rng(0).exponential(size=500))[::-1]
    fig = fs.negatives_rank_figure(loss, 30, positive_loss=np.ones(10))
    assert len(fig.data[0].x) == 30 and len(fig.data[1].x) == 470 and len(fig.data[2].x) == 10
    assert "30" in fig.data[0].name
    assert list(fig.data[3].x) == [30.5, 30.5]  # the cut-off line, in data units
    rows = [("CE + mining", [0.5, 0.3, 0.2], [10, 30, 460]), ("focal γ=2", [0.6, 0.3, 0.1],
                                                              [10, 30, 460])]
    bars = fs.loss_shares_figure(rows, ["positives", "hard", "easy"])
    assert [list(b.x) for b in bars.data] == [[50, 60], [30, 30], [20, 10]]
    assert bars.data[2].text[0] == "20.0% (460)"
    img = fs.mining_image_figure(Image.new("RGB", (50, 50)), np.array([[1, 1, 20, 20]]),
                                 np.zeros((2, 4)), np.ones((3, 4)), ["a", "b", "c"])
    assert [_boxes_in(t.x) for t in img.data] == [2, 3, 1]


def test_anchor_fit_figures():
    shapes = anchor_shapes(anchor_layout())
    w, h = np.array([0.05, 0.3, 0.6]), np.array([0.06, 0.3, 0.5])
    fig = fs.anchor_fit_figure(w, h, np.array([0.2, 0.7, 0.8]), 0.5, shapes)
    assert len(fig.data[0].x) == 2 and list(fig.data[1].x) == [0.05]
    assert len(fig.data) == 2 + 5 and len(fig.data[2].x) == 4
    hist = fs.best_iou_histogram({"book": [0.2, 0.6], "shipped": [0.55, 0.7]}, 0.5)
    assert [d.name for d in hist.data] == ["book (1 below)", "shipped (0 below)"]
