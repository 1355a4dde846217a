"""Offset sandbox (Labeling page): pick an anchor, drag its four offsets and watch the decoded
box move (``offset_inverse``), or move a box and read its encoded offsets (``offset_boxes``),
with the book's constants (0.1, 0.1, 0.2, 0.2) and every number in the formula.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app import figures_steps, present
from ssd_core.anchors import layout_anchors, locate_anchor
from ssd_core.boxes import to_pixels
from ssd_core.offset_terms import (
    SIGMA_WH,
    SIGMA_XY,
    anchor_index,
    center_box,
    decode_terms,
    encode_terms,
)

K = "labeling.sb_"  # widget key prefix
OFFSETS = ("t_x", "t_y", "t_w", "t_h")


def _fit(key: str, default, hi: int) -> None:
    st.session_state[key] = int(np.clip(st.session_state.get(key, default), 0, hi))


def pick_anchor(layout) -> tuple[int, torch.Tensor]:
    """Scale, cell and shape selectors -> (anchor index, its corners (4,) normalized)."""
    c = st.columns(4)
    scale = c[0].selectbox("Scale", range(len(layout)), index=1, key=K + "scale",
                           format_func=lambda i: f"{i + 1} ({layout[i].height}×"
                                                 f"{layout[i].width})")
    s = layout[scale]
    _fit(K + "row", s.height // 2, s.height - 1)
    _fit(K + "col", s.width // 2, s.width - 1)
    _fit(K + "shape", 0, s.per_pixel - 1)
    row = c[1].number_input("Cell row", 0, s.height - 1, key=K + "row")
    col = c[2].number_input("Cell column", 0, s.width - 1, key=K + "col")
    shape = c[3].selectbox("Shape", range(s.per_pixel), key=K + "shape",
                           format_func=lambda j: _shape_name(layout, scale, j))
    index = anchor_index(layout, scale, row, col, shape)
    return index, layout_anchors(layout)[0, index]


def _shape_name(layout, scale: int, shape: int) -> str:
    info = locate_anchor(layout, layout[scale].start + shape)
    return f"size {info['size']:g}, ratio {info['ratio']:g}"


def _centres_table(rows: dict) -> None:
    """rows: name -> corners (4,) normalized; shows centre, size and corners of each."""
    data = []
    for name, b in rows.items():
        x1, y1, x2, y2 = (float(v) for v in b)
        data.append({"": name, "cx": (x1 + x2) / 2, "cy": (y1 + y2) / 2, "w": x2 - x1,
                     "h": y2 - y1, "x1": x1, "y1": y1, "x2": x2, "y2": y2})
    st.dataframe(pd.DataFrame(data), hide_index=True, width="stretch", key=K + "table_" +
                 "_".join(rows), column_config={k: st.column_config.NumberColumn(format="%.4f")
                                                for k in ("cx", "cy", "w", "h", "x1", "y1",
                                                          "x2", "y2")})


def _draw(image, anchor, box, key: str) -> None:
    fig = figures_steps.offset_sandbox_figure(image, to_pixels(anchor.numpy(), image.size),
                                              to_pixels(box.numpy(), image.size), height=420)
    present.chart(fig, key=key, width="stretch")


def decode_view(image, anchor) -> None:
    """Four offset sliders -> the decoded box, the formula with numbers, the picture."""
    c = st.columns(4)
    t = [c[i].slider(f"${name[0]}_{name[2]}$", -10.0, 10.0, 0.0, 0.1, key=K + name)
         for i, name in enumerate(OFFSETS)]
    terms = decode_terms(anchor, torch.tensor(t, dtype=torch.float32))
    a, b = ({k: float(v) for k, v in terms[n].items()} for n in ("anchor", "box"))
    st.latex(
        rf"x_b = x_a + t_x \cdot {SIGMA_XY:g}\, w_a = {a['cx']:.3f} + {t[0]:g} \cdot {SIGMA_XY:g}"
        rf" \cdot {a['w']:.3f} = {b['cx']:.3f},\quad y_b = {a['cy']:.3f} + {t[1]:g} \cdot "
        rf"{SIGMA_XY:g} \cdot {a['h']:.3f} = {b['cy']:.3f}")
    st.latex(
        rf"w_b = w_a\, e^{{t_w \cdot {SIGMA_WH:g}}} = {a['w']:.3f} \cdot e^{{{t[2]:g} \cdot "
        rf"{SIGMA_WH:g}}} = {b['w']:.3f},\quad h_b = {a['h']:.3f} \cdot e^{{{t[3]:g} \cdot "
        rf"{SIGMA_WH:g}}} = {b['h']:.3f}")
    _centres_table({"anchor": anchor, "decoded box": terms["corners"]})
    _draw(image, anchor, terms["corners"], K + "decode_chart")


def encode_view(image, anchor) -> None:
    """A box's centre and size sliders -> its offsets against the anchor, with the formula."""
    c = st.columns(4)
    cx = c[0].slider("box centre x", 0.0, 1.0, 0.5, 0.005, key=K + "cx")
    cy = c[1].slider("box centre y", 0.0, 1.0, 0.5, 0.005, key=K + "cy")
    w = c[2].slider("box width", 0.01, 1.0, 0.3, 0.005, key=K + "w")
    h = c[3].slider("box height", 0.01, 1.0, 0.3, 0.005, key=K + "h")
    box = center_box(cx, cy, w, h)
    terms = encode_terms(anchor, box)
    t = [float(v) for v in terms["offsets"]]
    a = {k: float(v) for k, v in terms["anchor"].items()}
    m = st.columns(4)
    for i, name in enumerate(OFFSETS):
        m[i].metric(name, f"{t[i]:.3f}")
    st.latex(
        rf"t_x = \frac{{x_b - x_a}}{{{SIGMA_XY:g}\, w_a}} = \frac{{{cx:.3f} - {a['cx']:.3f}}}"
        rf"{{{SIGMA_XY:g} \cdot {a['w']:.3f}}} = {t[0]:.3f},\quad "
        rf"t_w = \frac{{\log(w_b / w_a)}}{{{SIGMA_WH:g}}} = \frac{{\log({w:.3f} / {a['w']:.3f})}}"
        rf"{{{SIGMA_WH:g}}} = {t[2]:.3f}")
    _centres_table({"anchor": anchor, "box": box})
    _draw(image, anchor, box, K + "encode_chart")


@st.fragment
def offset_sandbox(layout, image) -> None:
    """The sandbox for the anchors of ``layout`` over the page's (display) ``image``."""
    st.subheader("Offset sandbox")
    st.markdown("An anchor plus four offsets is a box. Pick an anchor, then drag the offsets "
                "(**offsets → box**, what detection decodes) or the box (**box → offsets**, "
                "what training encodes as the target). The book divides centre shifts by "
                f"σ_x = σ_y = {SIGMA_XY:g} of the anchor's size and log size ratios by "
                f"σ_w = σ_h = {SIGMA_WH:g}, so typical offsets are a few units.")
    index, anchor = pick_anchor(layout)
    info = locate_anchor(layout, index)
    st.caption(f"Anchor #{index}: scale {info['scale'] + 1}, cell ({info['row']}, "
               f"{info['col']}), size {info['size']:g}, ratio {info['ratio']:g}.")
    disp = image.copy()
    disp.thumbnail((640, 640))
    decode_tab, encode_tab = st.tabs(["Offsets → box", "Box → offsets"])
    with decode_tab:
        decode_view(disp, anchor)
    with encode_tab:
        encode_view(disp, anchor)
