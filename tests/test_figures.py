"""app/figures.py: pure figure builders, checked on their data (no Streamlit needed)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image

from app import figures
from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES, multibox_prior
from ssd_core.losses import focal_loss, smooth_l1
from ssd_core.model import TinySSD, describe


def test_box_lines_are_closed_rectangles_separated_by_nan():
    boxes = np.array([[0, 0, 2, 1], [3, 4, 5, 6]], dtype=float)
    xs, ys = figures.box_lines(boxes)
    assert len(xs) == len(ys) == 6 * 2
    assert np.isnan(xs[5::6]).all() and np.isnan(ys[5::6]).all()
    assert np.isfinite(xs).sum() == 5 * 2
    np.testing.assert_array_equal(xs[:5], [0, 2, 2, 0, 0])
    np.testing.assert_array_equal(ys[:5], [0, 0, 1, 1, 0])
    np.testing.assert_array_equal(xs[6:11], [3, 5, 5, 3, 3])
    np.testing.assert_array_equal(ys[6:11], [4, 4, 6, 6, 4])


def test_box_lines_empty():
    xs, ys = figures.box_lines(np.zeros((0, 4)))
    assert len(xs) == len(ys) == 0


def test_anchors_figure_draws_all_5444_as_one_trace_per_scale():
    img = Image.new("RGB", (256, 256))
    groups = []
    for k, (side, s, r) in enumerate(zip([32, 16, 8, 4, 1], TINYSSD_SIZES, TINYSSD_RATIOS)):
        a = multibox_prior(torch.empty(1, 1, side, side), s, r)[0].numpy() * 256
        groups.append((f"scale {k}", a, figures.SCALE_COLOURS[k]))
    fig = figures.anchors_figure(img, groups)
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == [f"scale {k}" for k in range(5)]
    assert [len(t.x) for t in fig.data] == [6 * len(g[1]) for g in groups]
    assert sum(int(np.isfinite(np.asarray(t.x, float)).sum()) for t in fig.data) == 5 * 5444
    # each rectangle's corners are the anchor's corners
    x0 = np.asarray(fig.data[0].x[:5], float)
    b = groups[0][1][0]
    np.testing.assert_allclose(x0, [b[0], b[2], b[2], b[0], b[0]])
    assert fig.layout.images[0].sizex == 256 and fig.layout.yaxis.range == (256, 0)


def test_anchors_figure_centres_and_highlight_on_top():
    img = Image.new("RGB", (100, 50))
    box = np.array([[10, 10, 20, 20]], float)
    fig = figures.anchors_figure(img, [("g", box, "red")], centres=np.array([[15, 15]]),
                                 highlight=[("h", box, "blue")], centre_data=[[0, 1, 2]],
                                 centre_text=["c"])
    assert [t.name for t in fig.data] == ["g", "anchor centres", "h"]
    assert fig.data[0].opacity < fig.data[2].opacity  # the rest is dimmed
    assert fig.data[2].line.width > fig.data[0].line.width
    assert list(fig.data[1].customdata[0]) == [0, 1, 2]


def test_labeling_figure_colours_tell_the_kinds_apart():
    img = Image.new("RGB", (64, 64))
    gt = np.array([[0, 0, 30, 30], [30, 30, 60, 60]], float)
    pos = [(gt[:1], np.array([[1, 1, 29, 29], [2, 2, 28, 28]], float)), (gt[1:], np.zeros((0, 4)))]
    neg = np.array([[5, 5, 9, 9.0]])
    fig = figures.labeling_figure(img, gt, ["1. a", "2. b"], pos, negatives=neg)
    by_name = {t.name: t for t in fig.data}
    assert by_name["kept negatives (1)"].line.color == "#7f7f7f"
    assert by_name["1. a: IoU ≥ threshold (2)"].line.dash == "dot"
    # issue 21: one object's ground truth, greedy and threshold boxes in three colours
    kinds = [by_name["1. a (ground truth)"], by_name["1. a: best anchor (greedy)"],
             by_name["1. a: IoU ≥ threshold (2)"], by_name["kept negatives (1)"]]
    assert len({t.line.color for t in kinds}) == 4
    assert by_name["1. a: best anchor (greedy)"].line.color == figures.GREEDY_COLOUR
    assert by_name["2. b: best anchor (greedy)"].line.color == figures.GREEDY_COLOUR
    assert by_name["1. a: best anchor (greedy)"].line.dash == "dash"
    assert by_name["1. a (ground truth)"].line.dash == "solid"
    assert "2. b: IoU ≥ threshold (0)" not in by_name  # empty groups are left out
    assert len(by_name["1. a: IoU ≥ threshold (2)"].x) == 12


def test_smooth_l1_figure_client_side_slider_restyles_scrub_traces():
    x = torch.linspace(-2, 2, 41)
    values = [0.5, 1.0, 10.0]
    fig = figures.smooth_l1_figure(
        x.numpy(), [(s, smooth_l1(x, s).numpy()) for s in values], values,
        [smooth_l1(x, s).numpy() for s in values], x.abs().numpy(), active=1)
    scrub = len(fig.data) - 1
    assert fig.data[scrub].name == "scrub σ=1.00"
    slider = fig.layout.sliders[0]
    assert slider.active == 1 and len(slider.steps) == 3
    for step, s in zip(slider.steps, values):
        assert step.method == "restyle" and list(step.args[1]) == [scrub]
        np.testing.assert_allclose(step.args[0]["y"][0], smooth_l1(x, s).numpy())
    g = [np.sign(x.numpy())] * 3
    fig2 = figures.smooth_l1_figure(
        x.numpy(), [(s, smooth_l1(x, s).numpy()) for s in values], values,
        [smooth_l1(x, s).numpy() for s in values], x.abs().numpy(),
        grads=list(zip(values, g)), scrub_grads=g, l1_grad=g[0])
    idx = list(fig2.layout.sliders[0].steps[0].args[1])
    assert len(idx) == 2 and fig2.data[idx[1]].yaxis == "y2"


def test_focal_figure_curves_and_scrub():
    p = torch.linspace(0.01, 0.99, 99)
    gammas = [0.0, 2.0, 5.0]
    fig = figures.focal_figure(p.numpy(), [(g, focal_loss(p, g, 0.5).numpy()) for g in gammas],
                               gammas, [focal_loss(p, g, 0.5).numpy() for g in gammas],
                               alpha=0.5, active=1, log_y=True)
    assert fig.layout.yaxis.type == "log"
    np.testing.assert_allclose(fig.data[2].y, -0.5 * (1 - p.numpy()) ** 5 * np.log(p.numpy()),
                               rtol=1e-5)
    assert [s.label for s in fig.layout.sliders[0].steps] == ["0.00", "2.00", "5.00"]


def test_tinyssd_diagram_shows_describe_rows():
    rows = describe(TinySSD(num_classes=1), 256)
    fig = figures.tinyssd_diagram(rows, 256)
    texts = [a.text for a in fig.layout.annotations]
    assert "total<br><b>5444</b><br>anchors" in texts
    for r in rows:
        c, h, w = r["output_shape"]
        assert f"<b>{c}×{h}×{w}</b>" in texts
    assert len(fig.layout.shapes) == 6  # the image + five blocks


def test_feature_grid_is_one_normalised_mosaic():
    fmap = np.arange(3 * 2 * 2, dtype=float).reshape(3, 2, 2)
    fmap[2] = 7.0  # a constant channel maps to 0, not NaN
    fig = figures.feature_grid_figure(fmap, cols=2)
    assert len(fig.data) == 1
    z = np.asarray(fig.data[0].z, float)
    assert z.shape == (2 * 2 + 1, 2 * 2 + 1)
    np.testing.assert_allclose(z[:2, :2], [[0, 1 / 3], [2 / 3, 1]])
    assert np.isnan(z[2]).all() and np.isnan(z[:, 2]).all()  # gaps between tiles
    np.testing.assert_array_equal(z[3:, :2], 0)
    assert np.isnan(z[3:, 3:]).all()  # the empty slot stays empty


@pytest.mark.parametrize("n", [1, 5])
def test_iou_heatmaps(n):
    grids = [np.full((s, s), 0.5) for s in [32, 16, 8, 4, 1][:n]]
    fig = figures.iou_heatmaps_figure(grids, [f"s{i}" for i in range(n)])
    assert len(fig.data) == n
    assert [t.showscale for t in fig.data] == [False] * (n - 1) + [True]


# ---------------------------------------------------------------- detection captions

def test_detection_captions_sit_on_a_filled_background_in_the_class_colour():
    from ssd_core.drawing import colour

    img = Image.new("RGB", (200, 100), "gray")
    boxes = [[10, 40, 60, 90], [100, 2, 190, 60]]  # the second touches the top of the image
    fig = figures.detections_figure(img, boxes, [0.91, 0.5], [0, 4], ["cup", "a", "b", "c", "pen"])
    caps = fig.layout.annotations
    assert [a.text for a in caps] == ["cup 0.91", "pen 0.50"]
    assert [a.bgcolor for a in caps] == [colour(0), colour(4)] == ["#E69F00", "#0072B2"]
    assert [a.font.color for a in caps] == ["black", "white"]  # whichever reads on the fill
    assert all(a.font.size >= 13 and not a.showarrow and a.xanchor == "left" for a in caps)
    assert [(a.x, a.y) for a in caps] == [(10, 40), (100, 2)]  # each box's top-left corner
    assert [a.yanchor for a in caps] == ["bottom", "top"]  # above the box; inside at the top
    assert not [t for t in fig.data if t.mode == "text"]  # no bare coloured text left
    # the chart style raises them with the other text, never below 13 px
    from app.figures_style import font_sizes, readable

    sizes = [s for p, s in font_sizes(readable(fig).to_plotly_json()) if "annotations" in p]
    assert len(sizes) == 2 and min(sizes) >= 14


def test_many_detections_get_no_captions():
    img = Image.new("RGB", (64, 64))
    boxes = np.tile([[1.0, 1.0, 20.0, 20.0]], (41, 1))
    fig = figures.detections_figure(img, boxes, np.full(41, 0.5), np.zeros(41, int), ["x"])
    assert len(fig.layout.annotations) == 0


def test_replay_frames_carry_their_own_captions():
    img = Image.new("RGB", (100, 100))
    frames = [dict(name=str(k), title=f"Epoch {k}", boxes=np.array([[10.0, 50, 40, 90]] * k),
                   scores=np.array([0.3] * k), labels=np.zeros(k, int)) for k in (0, 1, 2)]
    fig = figures.replay_figure(img, frames, ["ball"], active=1)
    def shown(annotations):
        return [a for a in annotations if a.visible]

    assert [a.text for a in shown(fig.layout.annotations)] == ["ball 0.30"]
    # as many annotations in every frame (Plotly's animate merges them item by item), the
    # unused ones hidden: a frame never shows the captions of the frame before
    assert [len(f.layout.annotations) for f in fig.frames] == [2, 2, 2]
    assert [len(shown(f.layout.annotations)) for f in fig.frames] == [0, 1, 2]
    assert all(a.bgcolor == "#E69F00" for f in fig.frames for a in shown(f.layout.annotations))
    assert {len(f.data) for f in fig.frames} == {len(fig.data)} == {2}  # truth + one class


def test_text_colour_contrasts_and_the_png_caption_is_filled():
    from ssd_core.drawing import PALETTE, draw_detections, text_colour

    assert text_colour("#FFFFFF") == "black" and text_colour("#000000") == "white"
    assert {text_colour(c) for c in PALETTE} == {"black", "white"}
    out = np.asarray(draw_detections(Image.new("RGB", (120, 80), "gray"), [[20, 40, 100, 70]],
                                     [0.8], [4], ["a", "b", "c", "d", "pen"]))
    band = out[28:40, 20:60].reshape(-1, 3)  # the caption above the box
    fill = tuple(int("0072B2"[k:k + 2], 16) for k in (0, 2, 4))
    assert (band == fill).all(axis=1).mean() > 0.4  # mostly the class colour
    assert (band.min(axis=1) > 200).any()  # white text (antialiased) on the dark blue
