"""Losses: the chapter's "Problems" made interactive: smooth-L1 vs L1, cross-entropy vs focal."""

import numpy as np
import streamlit as st
import torch

from app import figures, present, urlstate
from app.parsing import number_list
from ssd_core.anchors import anchor_layout, layout_anchors
from ssd_core.data import SyntheticDetection, detection_collate
from ssd_core.losses import (
    cross_entropy_curve,
    focal_loss,
    focal_loss_grad,
    l1,
    smooth_l1,
    smooth_l1_grad,
)
from ssd_core.matching import multibox_target

X = torch.linspace(-2, 2, 401)
P = torch.linspace(0.005, 0.995, 199)
# sigma on a log grid (quarter octaves) that contains 0.5, 1 and 10 exactly
SIGMA_SCRUB = [round(2 ** (k / 4), 3) for k in range(-8, 14)] + [10.0]
GAMMA_SCRUB = [float(v) for v in np.arange(0, 5.01, 0.25)]


@st.cache_data(show_spinner=False)
def sample_balance(n_images: int = 8, preset: str = "default") -> tuple[int, int, int]:
    """(positives, negatives, images) over the first synthetic samples, labelled with
    ``multibox_target`` against TinySSD's 5444 anchors (IoU threshold 0.5)."""
    ds = SyntheticDetection(n_images, seed=0, image_size=256, preset=preset)
    _, targets = detection_collate([ds[i] for i in range(n_images)])
    anchors = layout_anchors(anchor_layout(input_size=256))
    _, _, cls_labels = multibox_target(anchors, targets)
    pos = int((cls_labels > 0).sum())
    return pos, int(cls_labels.numel()) - pos, n_images


present.page_top("Losses", "The chapter's *Problems* section, interactive. Drag the pink "
                  "slider under each plot to scrub a parameter: that happens in your browser, "
                  "with no rerun.")
# The scrubbed curve opens where no fixed curve is (σ = 2, γ = 2), so every legend entry shows.
SIGMA_START, GAMMA_START = 2.0, 2.0

tab_box, tab_cls = st.tabs(["Smooth-L1 vs L1 (box offsets)", "Cross-entropy vs focal (classes)"])


@st.fragment
def smooth_l1_section():
    figure = st.container()  # first in presentation mode, after the formula otherwise
    with present.notes("The formula") if present.on() else figure:
        st.latex(r"f(x) = \begin{cases} 0.5\,(\sigma x)^2 & \text{if } |x| < 1/\sigma^2 \\ "
                 r"|x| - 0.5/\sigma^2 & \text{otherwise} \end{cases}")
        st.markdown("Large σ: close to L1 (σ = 10 runs along the grey L1 band). Small σ: "
                    "quadratic over a wider range, so small offset errors get small gradients "
                    "instead of a constant ±1.")
    if not present.on():
        figure = st.container()
    c1, c2 = st.columns([3, 1])
    text = urlstate.bind(c1.text_input, "losses.sigmas", "10, 1, 0.5", "σ values",
                         help="Comma-separated, each in (0, 100]; the chapter uses 10, 1, 0.5.")
    show_grad = urlstate.bind(c2.toggle, "losses.grad", False, "Show gradients")
    try:
        sigmas = number_list(text, 0, 100, example="10, 1, 0.5")[:6]
    except ValueError as e:
        st.error(f"σ values: {e}. Showing the chapter's 10, 1, 0.5.")
        sigmas = [10.0, 1.0, 0.5]
    x = X.numpy()
    curves = [(s, smooth_l1(X, s).numpy()) for s in sigmas]
    scrub = [smooth_l1(X, s).numpy() for s in SIGMA_SCRUB]
    kwargs = {}
    if show_grad:
        kwargs = dict(grads=[(s, smooth_l1_grad(X, s).numpy()) for s in sigmas],
                      scrub_grads=[smooth_l1_grad(X, s).numpy() for s in SIGMA_SCRUB],
                      l1_grad=torch.sign(X).numpy())
    fig = figures.smooth_l1_figure(x, curves, SIGMA_SCRUB, scrub, l1(X).numpy(),
                                   active=SIGMA_SCRUB.index(SIGMA_START), **kwargs)
    present.chart(fig, figure, main=True, present_height=490, key="smooth_l1_chart")


@st.fragment
def focal_section():
    figure = st.container()
    with present.notes("The formula") if present.on() else figure:
        st.latex(r"\text{cross-entropy: } -\log p_j \qquad "
                 r"\text{focal: } -\alpha\,(1 - p_j)^{\gamma}\,\log p_j")
        st.markdown("$p_j$ is the predicted probability of the true class. Raising γ shrinks "
                    "the loss of examples the model already gets right (p near 1).")
    if not present.on():
        figure = st.container()
    c1, c2, c3 = st.columns([3, 2, 1])
    text = urlstate.bind(c1.text_input, "losses.gammas", "0, 1, 5", "γ values",
                         help="Comma-separated, each in [0, 10]; the chapter uses 0, 1, 5.")
    alpha = urlstate.bind(c2.slider, "losses.alpha", 1.0, "α", 0.05, 1.0, step=0.05,
                          valid=lambda v: 0.05 <= v <= 1,
                          help="Class weight; the chapter's curves use 1, RetinaNet uses 0.25.")
    log_y = urlstate.bind(c3.toggle, "losses.logy", False, "log y")
    try:
        gammas = number_list(text, 0, 10, allow_lo=True, example="0, 1, 5")[:6]
    except ValueError as e:
        st.error(f"γ values: {e}. Showing the chapter's 0, 1, 5.")
        gammas = [0.0, 1.0, 5.0]
    p = P.numpy()
    curves = [(g, focal_loss(P, g, alpha).numpy()) for g in gammas]
    scrub = [focal_loss(P, g, alpha).numpy() for g in GAMMA_SCRUB]
    fig = figures.focal_figure(p, curves, GAMMA_SCRUB, scrub, alpha,
                               active=GAMMA_SCRUB.index(GAMMA_START), log_y=log_y)
    present.chart(fig, figure, main=True, present_height=490, key="focal_chart")
    with st.expander("Gradient at a few p"):
        rows = {f"γ={g:g}": [float(focal_loss_grad(torch.tensor(q), g, alpha))
                             for q in (0.1, 0.5, 0.9, 0.99)] for g in gammas}
        st.dataframe({"p": [0.1, 0.5, 0.9, 0.99], **rows}, hide_index=True)


def imbalance_section():
    st.subheader("Why focal loss helps SSD")
    pos, neg, n = sample_balance()
    bpos, bneg, _ = sample_balance(preset="book")
    st.markdown(
        f"Labelling the first {n} synthetic images against TinySSD's 5444 anchors "
        f"(`multibox_target`, IoU ≥ 0.5) gives **{pos} positive** and **{neg} negative** anchors, "
        f"about **{neg / max(pos, 1):.0f} : 1**. With the chapter's one banana per image "
        f"(\"book\" preset) it is {bpos} : {bneg}, about **{bneg / max(bpos, 1):.0f} : 1**; a "
        "single small object matched only by its best anchor gives 1 : 5443. Most negatives are "
        "easy, but with cross-entropy their many small losses still dominate the sum. Focal loss "
        "multiplies each loss by (1 − p)^γ, so easy negatives fade out; hard negative mining "
        "(Labeling page) is the other remedy."
    )
    p_bg = urlstate.bind(st.slider, "losses.pbg", 0.95,
                         "Probability the model gives the background class on a typical "
                         "negative", 0.5, 0.999, step=0.001, format="%.3f",
                         valid=lambda v: 0.5 <= v <= 0.999)
    p_pos = 0.5
    table = {"loss": [], "from negatives": [], "from positives": [], "share of negatives": []}
    for name, g, a in (("cross-entropy", 0.0, 1.0), ("focal γ=2", 2.0, 1.0),
                       ("focal γ=2, α=0.25 (RetinaNet)", 2.0, 0.25)):
        ln = neg * float(focal_loss(torch.tensor(p_bg), g, 1 - a if a < 1 else 1.0))
        lp = pos * float(focal_loss(torch.tensor(p_pos), g, a))
        table["loss"].append(name)
        table["from negatives"].append(round(ln, 2))
        table["from positives"].append(round(lp, 2))
        table["share of negatives"].append(f"{100 * ln / (ln + lp):.1f} %")
    st.dataframe(table, hide_index=True)
    st.caption(f"Positives are assumed at p = {p_pos} (still being learned). With RetinaNet's "
               "α = 0.25, objects get weight α and background 1 − α.")
    st.caption(f"Reference: −log {p_bg:g} = {float(cross_entropy_curve(torch.tensor(p_bg))):.4f} "
               "per easy negative.")


with tab_box:
    smooth_l1_section()
with tab_cls:
    focal_section()
    imbalance_section()
