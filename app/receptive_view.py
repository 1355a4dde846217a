"""The Model page's receptive-field view: pick a feature-map cell (click its centre in the
figure, or use the sliders) and see the input pixels it sees and the anchors centred on it.

Clicks use Plotly point selection (``present.chart(on_select=..., selection_mode="points")``):
the callback copies the clicked ``[row, col]`` into the sliders' state, so sliders and clicks
are one choice, mirrored in the URL (``?rf_scale=&rf_row=&rf_col=``).
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from app import figures_model, present, urlstate
from ssd_core.model import BLOCK_NAMES
from ssd_core.receptive import block_fields, cell_field

SCALE_KEY, ROW_KEY, COL_KEY = "model.rf_scale", "model.rf_row", "model.rf_col"
SHOWN_KEY = "model.rf_shown"  # the block last drawn, to carry the cell over to another block
CHART_KEY = "model_rf_chart"


def on_cell_click() -> None:
    """A clicked cell centre (customdata ``[row, col]``) becomes the chosen cell."""
    sel = st.session_state.get(CHART_KEY) or {}
    points = [p for p in sel.get("selection", {}).get("points", [])
              if p.get("customdata") is not None]
    if not points:
        return
    data = points[0]["customdata"]
    if isinstance(data, dict):  # a numpy customdata row arrives as {"0": .., "1": ..}
        data = [data[k] for k in sorted(data, key=int)]
    st.session_state[ROW_KEY], st.session_state[COL_KEY] = int(data[0]), int(data[1])


def on_block_change(fields) -> None:
    """Another block: pick its cell under the same image point (the old cell's centre)."""
    old, new = fields[st.session_state.get(SHOWN_KEY, 0)], fields[st.session_state[SCALE_KEY]]
    for key in (ROW_KEY, COL_KEY):
        centre = old.start + int(st.session_state.get(key, 0)) * old.jump
        cell = math.floor((centre - new.start) / new.jump + 0.5)  # the cell holding it
        st.session_state[key] = min(max(int(cell), 0), new.side - 1)


def cell_choice(fields) -> tuple[int, int, int]:
    """Block radio and row / column sliders -> (scale, row, col)."""
    sides = [f.side for f in fields]
    scale = urlstate.bind(st.radio, SCALE_KEY, 0, "Block", list(range(len(sides))),
                          valid=lambda v: 0 <= v < len(sides), horizontal=True,
                          format_func=lambda i: f"{i} ({sides[i]}×{sides[i]})",
                          on_change=on_block_change, args=(fields,))
    st.session_state[SHOWN_KEY] = scale
    side = sides[scale]
    if side == 1:
        st.session_state[ROW_KEY] = st.session_state[COL_KEY] = 0
        urlstate.write(ROW_KEY)
        urlstate.write(COL_KEY)
        st.caption("This block has a single 1×1 cell.")
        return scale, 0, 0
    row, col = (urlstate.bind(st.slider, key, side // 2, label, 0, side - 1,
                              valid=lambda v: v >= 0, fit=lambda v: min(int(v), side - 1))
                for key, label in ((ROW_KEY, "Cell row"), (COL_KEY, "Cell column")))
    return scale, int(row), int(col)


def anchor_table(field: dict) -> pd.DataFrame:
    """The cell's anchors: index, size, ratio and width × height in input pixels."""
    a = field["anchors"]
    return pd.DataFrame({
        "anchor": field["anchor_index"].tolist(),
        "size": [s for s, _ in field["shapes"]],
        "ratio": [r for _, r in field["shapes"]],
        "w × h (px)": [f"{float(b[2] - b[0]):.0f} × {float(b[3] - b[1]):.0f}" for b in a],
    })


@st.fragment
def receptive_field_view(model, size: int, image, desc: str) -> None:
    """The view; its controls rerun only this fragment (no network run at all)."""
    fields = block_fields(model, size)
    sides = [f.side for f in fields]
    left, right = st.columns([1, 2.3])
    with left:
        scale, row, col = cell_choice(fields)
        field = cell_field(model, scale, row, col, size)
        st.markdown(f"**{BLOCK_NAMES[scale]}**, cell ({row}, {col})")
        c = st.columns(2)
        c[0].metric("Field size", f"{field['rf']} px", border=True,
                    help="Input pixels one cell sees, padding included")
        c[1].metric("Stride", f"{field['jump']} px", border=True,
                    help="Input pixels between neighbouring cells")
        st.dataframe(anchor_table(field), hide_index=True, width="stretch")
        zoom = urlstate.bind(st.toggle, "model.rf_zoom", True, "Zoom in on a small field",
                             omit_default=True,
                             help="A small field (block 0 sees about 40 of 256 px) is shown "
                                  "large: the view spans about 2.5 fields around the cell.")
    labels = [f"anchor s={s:g}, r={r:g}" for s, r in field["shapes"]]
    view = image.convert("RGB").resize((size, size))
    fig = figures_model.receptive_field_figure(view, sides[scale], (row, col), field, labels)
    if zoom and field["rf"] < size / 2:
        step = size / sides[scale]
        cx, cy = (col + 0.5) * step, (row + 0.5) * step
        half = max(1.25 * field["rf"], 3 * step)
        fig.update_xaxes(range=[cx - half, cx + half])
        fig.update_yaxes(range=[cy + half, cy - half])
    with right:
        present.chart(fig, key=CHART_KEY, on_select=on_cell_click, selection_mode="points",
                        width="stretch")
        x1, y1, x2, y2 = field["box"]
        st.caption(
            f"{desc} as the network sees it ({size}×{size}). Click a cell centre to pick it. "
            f"Cell ({row}, {col}) sees x {x1:g}..{x2:g}, y {y1:g}..{y2:g} (dashed where that "
            "is zero padding); its anchors are centred on it. A block's receptive field is "
            "fixed in pixels, its anchors are fractions of the image.")
