"""Hard negative mining with a real model (Labeling page): for the page's image and ground
truth, which background anchors the neg_ratio:1 rule keeps (ranked by the model's own class
loss), how the class loss splits between positives, kept hard negatives and dropped easy
negatives, and the same image under focal loss with its gamma (ssd_core.mining).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import streamlit as st
import torch

from app import figures_steps, present, sample_images
from ssd_core.anchors import layout_anchors, locate_anchor
from ssd_core.boxes import max_iou, to_pixels
from ssd_core.images import image_to_tensor
from ssd_core.mining import GROUPS, focal_config, mine_image

K = "labeling.hnm_"
FOCAL_ALPHA = 0.25


@st.cache_data(show_spinner="Running the model once on this image ...", max_entries=8)
def model_logits(model_key: str, digest: str, _det, _png: bytes,
                 input_size: int | None = None) -> np.ndarray:
    """Class logits ``(N, C+1)`` of one model on one image at ``input_size`` (default: the
    model's own), keyed on model, image digest and size: sliders never rerun the network."""
    size = input_size or _det.input_size
    x = image_to_tensor(sample_images.open_png(_png).convert("RGB"), size)[None]
    with torch.no_grad():
        _, cls_preds, _ = _det.model(x.to(_det.device))
    return cls_preds[0].float().cpu().numpy()


def _share_rows(ce, focal, gamma: float, ratio: int) -> list:
    """The loss-share bars: CE over all anchors, CE as mining sees it, focal over all anchors."""
    ce_sums = ce.group_sums()[0].numpy()
    counts = ce.group_counts()[0].numpy()
    mined = ce_sums * np.array([1.0, 1.0, 0.0])
    return [("cross-entropy, all anchors", ce.shares()[0].numpy(), counts),
            (f"cross-entropy with {ratio}:1 mining", mined / max(mined.sum(), 1e-30),
             counts * np.array([1, 1, 0])),
            (f"focal γ={gamma:g}, α={FOCAL_ALPHA:g}, all anchors", focal.shares()[0].numpy(),
             counts)]


def _hardest_table(ce, layout, iou_max, top: int = 10) -> None:
    rank, loss = ce.rank[0], ce.loss[0]
    order = torch.argsort(torch.where(rank >= 0, rank, rank.numel()))[:top]
    rows = []
    for i in order.tolist():
        info = locate_anchor(layout, i)
        rows.append({"rank": int(rank[i]) + 1, "anchor": i, "scale": info["scale"] + 1,
                     "cell": f"({info['row']}, {info['col']})", "class loss": float(loss[i]),
                     "p(background)": math.exp(-float(loss[i])), "kept": bool(ce.kept[0, i]),
                     "max IoU with an object": float(iou_max[i])})
    st.dataframe(rows, hide_index=True, width="stretch", key=K + "hardest")


def _draw(image, labels, ce, anchors, rank_text_top: int = 200) -> None:
    disp = image.copy()
    disp.thumbnail((640, 640))
    a = to_pixels(anchors[0].numpy(), disp.size)
    kept = torch.nonzero(ce.kept[0]).flatten()
    kept = kept[torch.argsort(ce.rank[0, kept])][:rank_text_top].numpy()
    text = [f"hard negative #{int(ce.rank[0, i]) + 1}: loss {float(ce.loss[0, i]):.3f}"
            for i in kept]
    fig = figures_steps.mining_image_figure(disp, to_pixels(labels[0, :, 1:].numpy(), disp.size),
                                            a[ce.positive[0].numpy()], a[kept], text, height=480)
    present.chart(fig, key=K + "image", width="stretch")


def _metrics(ce, shares) -> None:
    counts = ce.group_counts()[0].tolist()
    m = st.columns(4)
    m[0].metric("Positive anchors", counts[0])
    m[1].metric("Kept hard negatives", counts[1])
    m[2].metric("Dropped easy negatives", counts[2])
    m[3].metric("Positives' share of the CE loss", f"{100 * float(shares[0]):.1f}%",
                help="Over all anchors, without mining: the rest is background.")


@st.fragment
def mining_view(picked, labels, iou_threshold: float, det, model_label: str,
                model_key: str) -> None:
    """The view for the page's image ``picked``, ground truth ``labels (1, M, 5)`` and model
    ``det`` (the page's picker's: its label and ``model_picker.model_key``)."""
    st.subheader("Hard negative mining with a real model")
    if not st.toggle("Rank the negatives by a model's own loss (runs it once on this image)",
                     key=K + "on", help="Which background anchors the neg_ratio:1 rule keeps "
                                        "when a trained model scores them, and focal loss."):
        return
    c1, c2 = st.columns(2)
    ratio = c1.slider("neg_ratio (negatives kept per positive)", 1, 10, 3, key=K + "ratio")
    gamma = c2.slider("Focal loss γ", 0.0, 5.0, 2.0, 0.25, key=K + "gamma",
                      help=f"-α_t (1 - p_t)^γ log p_t with α = {FOCAL_ALPHA} for objects, "
                           f"{1 - FOCAL_ALPHA} for background; γ = 0 is (weighted) CE.")
    logits = torch.from_numpy(model_logits(model_key, hashlib.sha1(picked.png).hexdigest(),
                                           det, picked.png))[None]
    layout = det.model.layout(input_size=det.input_size)
    anchors = layout_anchors(layout)
    try:
        ce = mine_image(logits, anchors, labels, ratio, iou_threshold)
        focal = mine_image(logits, anchors, labels, ratio, iou_threshold,
                           focal_config(gamma, FOCAL_ALPHA))
    except ValueError as e:
        st.warning(f"This model cannot be scored on this ground truth: {e}.")
        return
    if not bool(ce.positive.any()):
        st.info("No positive anchors: add a ground-truth box. Without positives the rule "
                f"keeps {ratio} negatives.")
    shares = ce.shares()[0]
    _metrics(ce, shares)
    present.chart(figures_steps.loss_shares_figure(_share_rows(ce, focal, gamma, ratio),
                                                     GROUPS), key=K + "shares", width="stretch")
    negatives = torch.sort(ce.loss[0][~ce.positive[0]], descending=True).values.numpy()
    present.chart(figures_steps.negatives_rank_figure(
        negatives, int(ce.kept.sum()), ce.loss[0][ce.positive[0]].numpy()), key=K + "ranks",
        width="stretch")
    st.caption(f"Model: {model_label}, its own {anchors.shape[1]} anchors, targets by "
               f"multibox_target at IoU {iou_threshold:g}. Mining ranks the background anchors "
               f"by this model's cross-entropy and keeps the {ratio}× positives hardest; focal "
               "ranks them the same way (both fall with p(background)) but keeps every anchor, "
               "scaled by (1 - p)^γ.")
    _draw(picked.image, labels, ce, anchors)
    _hardest_table(ce, layout, max_iou(anchors[0], labels[0, :, 1:]))
