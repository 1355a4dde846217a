"""Model: TinySSD's blocks from describe(), the input-size problem, feature-map activations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app import figures, model_picker, present, receptive_view, sample_images, urlstate
from ssd_core.images import image_to_tensor
from ssd_core.model import describe


@st.cache_data(show_spinner="Running the network once ...", max_entries=8)
def feature_maps(png: bytes, input_size: int, model_key: str, _det) -> list[np.ndarray]:
    """Each block's output ``(C_i, h_i, w_i)`` for one image (cached per image, size, model)."""
    x = image_to_tensor(sample_images.open_png(png).convert("RGB"), input_size)[None]
    with torch.no_grad():
        return [f[0].float().cpu().numpy() for f in _det.model.feature_maps(x.to(_det.device))]


def blocks_table(rows, size: int) -> None:
    """describe()'s rows as a table, the totals, and what the input size changes."""
    table = pd.DataFrame([{
        "block": r["name"],
        "output (C, H, W)": "×".join(map(str, r["output_shape"])),
        "anchors / pixel": r["anchors_per_pixel"],
        "anchors": r["num_anchors"],
        "sizes": ", ".join(f"{s:g}" for s in r["sizes"]),
        "ratios": ", ".join(f"{s:g}" for s in r["ratios"]),
        "receptive field (px)": r["receptive_field"],
        "stride (px)": r["stride"],
        "parameters": r["params"],
    } for r in rows])
    st.dataframe(table, hide_index=True, width="stretch")
    c = st.columns(3)
    c[0].metric("Anchors", f"{sum(r['num_anchors'] for r in rows):,}", border=True)
    c[1].metric("Parameters", f"{sum(r['params'] for r in rows):,}", border=True)
    c[2].metric("Input", f"{size}×{size}", border=True)
    side0, smallest = rows[0]["output_shape"][1], rows[0]["sizes"][0]
    st.markdown(
        f"At {size}×{size} the finest map is {side0}×{side0} (an anchor centre every "
        f"{rows[0]['stride']} px) and the smallest anchor is {smallest:g} × {size} = "
        f"{smallest * size:.0f} px. Anchor sizes are fractions of the image, so a larger input "
        "does not change which object sizes the anchors fit; it gives more cells (more, denser "
        "anchors) and more pixels per object for the convolutions, while each block's receptive "
        "field, fixed in pixels by its layers, covers a smaller part of the image."
    )


choices = present.page_top("Model", (
    "TinySSD as the chapter builds it: a base network and three down-sampling blocks halve the "
    "feature map five times, and after each block two 3×3 convolutions predict every anchor's "
    "class and offsets. The diagram shows each block's output and its anchors; below are the "
    "blocks in numbers, their activations on an image and the receptive field of one cell."))
diagram = st.container()  # first in presentation mode
if present.on():
    picker_box = size_box = choices.expander("Model and input size")
else:  # side by side, so the diagram starts high
    picker_box, size_box = st.columns([1, 2.3])
with picker_box:
    det, note = model_picker.model_picker("model.model")
with size_box:
    size = urlstate.input_size_select("model.size", help="The chapter's problem: a larger "
                                      "input gives larger feature maps, more (and relatively "
                                      "smaller) anchors.")
# The picker falls back to the untrained TinySSD when a checkpoint cannot be loaded.
choice = st.session_state["model.model"] if det.checkpoint else model_picker.UNTRAINED
st.caption(f"Showing: **{note}** · classes: {', '.join(det.class_names)}. Pick the untrained "
           "TinySSD (random weights) above to compare its activations.")

if not present.on():
    diagram = st.container()
rows = describe(det.model, size)
present.chart(figures.tinyssd_diagram(rows, size), diagram, main=True, present_height=440,
              key="model_diagram")
blocks_table(rows, size)

st.subheader("Feature-map activations")
top = st.columns([1, 2.3])
with top[0]:
    picked = sample_images.pick_image("model")
    if picked.png is None:
        picked = sample_images.blank_canvas()
image = picked.image
fmaps = feature_maps(picked.png, size, model_picker.model_key(choice), det)
with top[1]:
    # st.image would scale a wide image to 260 px itself and fail on one that ends up under a
    # pixel tall (a 4000×10 strip): scale it here, at least 1 px tall.
    w, h = image.size
    shown = image.resize((260, max(1, round(h * 260 / w)))) if w > 260 else image
    st.image(shown, caption=f"{picked.desc} (the network sees it at {size}×{size})", width=260)


@st.fragment
def activations(fmaps, block_names: list[str], desc: str, size: int) -> None:
    """Block / channel choices rerun only this part, never the network (fmaps is cached)."""
    left, right = st.columns([1, 2.3])
    with left:
        blk = urlstate.bind(st.radio, "model.block", 0, "Block", range(len(fmaps)),
                            valid=lambda v: 0 <= v < len(fmaps),
                            format_func=lambda i: f"{i}: {block_names[i]}")
        fmap = fmaps[blk]
        n_ch = fmap.shape[0]
        k = urlstate.bind(st.slider, "model.channels", 32, "Channels shown", 1, n_ch,
                          valid=lambda v: v >= 1, fit=lambda v: min(v, n_ch))
        order = st.radio("Order", ["by channel index", "most active first"],
                         key="model.order", horizontal=True)
    idx = np.arange(n_ch)
    if order == "most active first":
        idx = np.argsort(-fmap.reshape(n_ch, -1).mean(axis=1), kind="stable")
    idx = idx[:k]
    with right:
        present.chart(
            figures.feature_grid_figure(fmap[idx], cols=8 if k >= 8 else k,
                                        title=f"block {blk}: {fmap.shape[1]}×{fmap.shape[2]} "
                                              f"maps, {k} of {n_ch} channels"),
            key="activation_grid", width="stretch")
        st.caption(f"Image: {desc}, resized to {size}×{size}. Each tile is one channel, "
                   "min-max normalised on its own (yellow = most active).")


activations(fmaps, [r["name"] for r in rows], picked.desc, size)

st.subheader("Receptive field of one cell")
receptive_view.receptive_field_view(det.model, size, image, picked.desc)
