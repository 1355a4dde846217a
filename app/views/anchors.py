"""Anchors: the chapter's multiscale anchor boxes over an image, explorable per scale and cell."""

import math

import figures
import numpy as np
import state
import streamlit as st
import torch

from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES, anchors_per_pixel, multibox_prior
from ssd_core.model import feature_map_sizes

NUM_SCALES = 5
SCALE_KEY, CELL_KEY = "anchors.scale", "anchors.cell"
ROW_KEY, COL_KEY = "anchors.row", "anchors.col"


def _fmt(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


def parse_numbers(text: str, what: str) -> list[float]:
    """'0.2, 0.272' -> [0.2, 0.272]; ValueError with a readable message otherwise."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    if not parts:
        raise ValueError(f"{what} is empty: give at least one number, e.g. 0.2, 0.272")
    out = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise ValueError(f"{what}: {p!r} is not a number; use comma-separated numbers "
                             "such as 0.37, 0.447") from None
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"{what}: {p!r} must be a positive number")
        out.append(v)
    if len(out) > 8:
        raise ValueError(f"{what}: at most 8 values, got {len(out)}")
    return out


@st.cache_data(show_spinner=False, max_entries=32)
def scale_anchors(side: int, sizes: tuple, ratios: tuple) -> np.ndarray:
    """Anchors ``(side*side*a, 4)`` (normalized corners) of one ``side x side`` feature map."""
    fmap = torch.empty((1, 1, side, side))
    return multibox_prior(fmap, list(sizes), list(ratios))[0].numpy()


def shape_labels(sizes, ratios) -> list[str]:
    """The book's per-pixel anchor order: every size with ratios[0], then sizes[0] with the rest."""
    return [f"s={s:g}, r={ratios[0]:g}" for s in sizes] + [
        f"s={sizes[0]:g}, r={r:g}" for r in ratios[1:]]


def reset_defaults():
    for i in range(NUM_SCALES):
        st.session_state[f"anchors.s{i}"] = _fmt(TINYSSD_SIZES[i])
        st.session_state[f"anchors.r{i}"] = _fmt(TINYSSD_RATIOS[i])


def on_chart_select():
    """Clicking an anchor centre selects its scale and cell (customdata = [scale, row, col])."""
    sel = st.session_state.get("anchor_chart")
    points = (sel or {}).get("selection", {}).get("points", []) if sel else []
    pts = [p for p in points if p.get("customdata") is not None]
    if not pts:
        return
    data = pts[0]["customdata"]
    if isinstance(data, dict):  # a numpy customdata row arrives as {"0": .., "1": .., "2": ..}
        data = [data[k] for k in sorted(data, key=int)]
    scale, row, col = (int(v) for v in list(data)[:3])
    st.session_state[SCALE_KEY] = str(scale + 1)
    st.session_state[ROW_KEY], st.session_state[COL_KEY] = row, col
    st.session_state[CELL_KEY] = True


st.title("Anchors")
st.markdown(
    "Every cell of each of TinySSD's five feature maps is the centre of "
    "`len(sizes) + len(ratios) - 1` anchors: each size with the first ratio, then the first size "
    "with every other ratio (`multibox_prior`). Pick a scale to see its anchors and a cell to "
    "see them alone, as the book's `display_anchors` does. With one scale shown, click a white "
    "anchor centre to pick its cell."
)

left, right = st.columns([1, 2.3])
with left:
    image, desc, _ = state.image_picker("anchors")
    size = state.input_size_select("anchors.size")
    sides = feature_map_sizes(size)

    with st.expander("Sizes and ratios per scale (book defaults)", expanded=False):
        specs, errors = [], []
        for i in range(NUM_SCALES):
            state.qp_init(f"anchors.s{i}", _fmt(TINYSSD_SIZES[i]))
            state.qp_init(f"anchors.r{i}", _fmt(TINYSSD_RATIOS[i]))
            c1, c2 = st.columns(2)
            s_text = c1.text_input(f"Scale {i + 1} sizes", key=f"anchors.s{i}")
            r_text = c2.text_input(f"Scale {i + 1} ratios", key=f"anchors.r{i}")
            try:
                sizes_i = parse_numbers(s_text, f"Scale {i + 1} sizes")
                ratios_i = parse_numbers(r_text, f"Scale {i + 1} ratios")
            except ValueError as e:
                errors.append(f"{e}. Using the book's values for scale {i + 1}.")
                sizes_i, ratios_i = list(TINYSSD_SIZES[i]), list(TINYSSD_RATIOS[i])
            specs.append((tuple(sizes_i), tuple(ratios_i)))
            defaults = ((f"anchors.s{i}", TINYSSD_SIZES[i]), (f"anchors.r{i}", TINYSSD_RATIOS[i]))
            for key, default in defaults:
                if st.session_state[key] != _fmt(default):
                    state.qp_sync(key)
                else:
                    state.qp_drop(key)
        st.button("Reset to book defaults", on_click=reset_defaults)
    for msg in errors:
        st.error(msg)

    scale_options = ["all"] + [str(i + 1) for i in range(NUM_SCALES)]
    state.qp_init(SCALE_KEY, "all", str, lambda v: v in scale_options)
    scale_choice = st.radio(
        "Scale", scale_options, key=SCALE_KEY, horizontal=True,
        format_func=lambda v: "all" if v == "all" else f"{v} ({sides[int(v) - 1]}²)",
    )
    state.qp_sync(SCALE_KEY)

    cell = None
    if scale_choice != "all":
        k = int(scale_choice) - 1
        side = sides[k]
        state.qp_init(CELL_KEY, False, state.as_bool)
        on = st.checkbox("Highlight one feature-map cell", key=CELL_KEY)
        state.qp_sync(CELL_KEY)
        if on:
            for key in (ROW_KEY, COL_KEY):
                state.qp_init(key, side // 2, int, lambda v: v >= 0)
                st.session_state[key] = min(int(st.session_state[key]), side - 1)
            if side > 1:
                row = st.slider("Cell row", 0, side - 1, key=ROW_KEY)
                col = st.slider("Cell column", 0, side - 1, key=COL_KEY)
            else:
                row = col = 0
                st.caption("This scale has a single 1×1 cell.")
            state.qp_sync(ROW_KEY, COL_KEY)
            cell = (int(row), int(col))

# Anchors of every scale (cached; pure function of side, sizes, ratios).
per_scale = [scale_anchors(s, sz, rt) for s, (sz, rt) in zip(sides, specs)]
counts = [len(a) for a in per_scale]
total = sum(counts)

with right:
    if image is None:
        st.info("Showing a blank canvas instead. Upload another image or pick a sample.")
        image = state.gradient_image()
    disp = image.copy()
    disp.thumbnail((768, 768))
    w, h = disp.size
    scale_px = np.array([w, h, w, h], dtype=np.float64)

    groups, centres, cdata, ctext, highlight = [], [], [], [], []
    shown = range(NUM_SCALES) if scale_choice == "all" else [int(scale_choice) - 1]
    for k in shown:
        a = anchors_per_pixel(*specs[k])
        boxes = per_scale[k] * scale_px
        side = sides[k]
        rows_, cols_ = np.divmod(np.arange(side * side), side)
        centres.append(np.stack([(cols_ + 0.5) / side * w, (rows_ + 0.5) / side * h], axis=1))
        cdata.append(np.stack([np.full(side * side, k), rows_, cols_], axis=1))
        ctext += [f"scale {k + 1}, cell ({r}, {c})" for r, c in zip(rows_, cols_)]
        if scale_choice == "all":
            groups.append((f"scale {k + 1}: {side}×{side}×{a} = {len(boxes)}", boxes,
                           figures.SCALE_COLOURS[k]))
        else:
            for j, label in enumerate(shape_labels(*specs[k])):
                groups.append((label, boxes[j::a], figures.colour(j)))
            if cell is not None:
                start = (cell[0] * side + cell[1]) * a
                for j, label in enumerate(shape_labels(*specs[k])):
                    highlight.append((f"cell {cell}: {label}", boxes[start + j][None],
                                      figures.colour(j)))
    single = scale_choice != "all"  # centres of all 1365 cells would hide the image
    fig = figures.anchors_figure(
        disp, groups, centres=np.concatenate(centres) if single else None, highlight=highlight,
        centre_data=np.concatenate(cdata) if single else None,
        centre_text=ctext if single else None, height=620,
    )
    st.plotly_chart(fig, key="anchor_chart", on_select=on_chart_select,
                    selection_mode="points", width="stretch")
    st.caption(f"Image: {desc} ({image.size[0]}×{image.size[1]}). Anchors are normalized, so "
               "they cover any image; the input size sets how many cells each scale has.")

st.subheader("Anchor count")
m = st.columns(NUM_SCALES + 1)
for k in range(NUM_SCALES):
    a = anchors_per_pixel(*specs[k])
    m[k].metric(f"Scale {k + 1}", counts[k], help=f"{sides[k]}×{sides[k]} cells × {a} anchors",
                border=True)
    m[k].caption(f"{sides[k]}×{sides[k]} × {a}")
m[-1].metric("Total anchors", total, border=True)
st.caption(f"Book defaults at 256×256: (32² + 16² + 8² + 4² + 1²) × 4 = 5444. Now: {total}.")
