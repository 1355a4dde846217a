"""Anchors: the chapter's multiscale anchor boxes over an image, explorable per scale and cell."""

import numpy as np
import streamlit as st

from app import figures, present, sample_images, urlstate
from app.parsing import number_list
from app.views._anchor_fit import anchor_fit_view
from ssd_core.anchors import (
    NUM_SCALES,
    TINYSSD_RATIOS,
    TINYSSD_SIZES,
    anchor_layout,
    cell_centres,
    cell_slice,
    layout_anchors,
    pixel_shapes,
    shape_slice,
)
from ssd_core.boxes import to_pixels

SCALE_KEY, CELL_KEY = "anchors.scale", "anchors.cell"
ROW_KEY, COL_KEY = "anchors.row", "anchors.col"
SIDE_KEY = "anchors.cell_side"  # the map side the row / column were chosen on
# Opens as the book's display_anchors: one scale (8×8) with one cell's anchors highlighted.
DEFAULT_SCALE = "3"


def _fmt(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


@st.cache_data(show_spinner=False, max_entries=32)
def anchors_for(input_size: int, specs: tuple):
    """``(layout, anchors (N, 4) normalized corners)`` for per-scale ``(sizes, ratios)``."""
    layout = anchor_layout(sizes=[list(s) for s, _ in specs],
                           ratios=[list(r) for _, r in specs], input_size=input_size)
    return layout, layout_anchors(layout)[0].numpy()


def shape_labels(sizes, ratios) -> list[str]:
    """One label per anchor of a cell, in ``multibox_prior``'s order."""
    return [f"s={s:g}, r={r:g}" for s, r in pixel_shapes(sizes, ratios)]


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
    st.session_state[SIDE_KEY] = None  # chosen on the shown map: nothing to rescale


def spec_inputs() -> tuple[list[tuple], list[str]]:
    """The sizes and ratios text inputs -> (per scale ``(sizes, ratios)``, error messages); a
    scale whose text does not parse keeps the book's values."""
    specs, errors = [], []
    for i in range(NUM_SCALES):
        c1, c2 = st.columns(2)
        s_text = urlstate.bind(c1.text_input, f"anchors.s{i}", _fmt(TINYSSD_SIZES[i]),
                               f"Scale {i + 1} sizes", omit_default=True)
        r_text = urlstate.bind(c2.text_input, f"anchors.r{i}", _fmt(TINYSSD_RATIOS[i]),
                               f"Scale {i + 1} ratios", omit_default=True)
        try:  # ``what``: the box being parsed, for the message
            what = f"Scale {i + 1} sizes"
            sizes_i = number_list(s_text, max_count=8)
            what = f"Scale {i + 1} ratios"
            ratios_i = number_list(r_text, max_count=8, example="1, 2, 0.5")
        except ValueError as e:
            errors.append(f"{what}: {e}. Using the book's values for scale {i + 1}.")
            sizes_i, ratios_i = list(TINYSSD_SIZES[i]), list(TINYSSD_RATIOS[i])
        specs.append((tuple(sizes_i), tuple(ratios_i)))
    return specs, errors


def cell_choice(side: int) -> tuple[int, int] | None:
    """The "highlight one cell" checkbox and its row / column sliders -> (row, col) or None."""
    if not urlstate.bind(st.checkbox, CELL_KEY, True, "Highlight one feature-map cell"):
        return None
    if side == 1:
        st.session_state[ROW_KEY] = st.session_state[COL_KEY] = 0
        for key in (ROW_KEY, COL_KEY):
            urlstate.write(key)
        st.caption("This scale has a single 1×1 cell.")
        return 0, 0
    last = st.session_state.get(SIDE_KEY)
    st.session_state[SIDE_KEY] = side

    def fit(v) -> int:
        """The same place on another scale's map: the centre stays the centre (8x8's (4, 4)
        is 4x4's (2, 2) and 16x16's (8, 8)), never clamped into a corner."""
        v = int(v)
        if last and last != side:
            v = int((v + 0.5) * side / last)
        return min(max(v, 0), side - 1)

    row, col = (urlstate.bind(st.slider, key, side // 2, label, 0, side - 1,
                              valid=lambda v: v >= 0, fit=fit)
                for key, label in ((ROW_KEY, "Cell row"), (COL_KEY, "Cell column")))
    return int(row), int(col)


def controls():
    """The left column -> (picked image, input size, per-scale specs, scale choice, cell)."""
    picked = sample_images.pick_image("anchors")
    size = urlstate.input_size_select("anchors.size")
    with st.expander("Sizes and ratios per scale (book defaults)", expanded=False):
        specs, errors = spec_inputs()
        st.button("Reset to book defaults", on_click=reset_defaults)
    for msg in errors:
        st.error(msg)
    layout, _ = anchors_for(size, tuple(specs))
    options = ["all"] + [str(i + 1) for i in range(NUM_SCALES)]
    choice = urlstate.bind(
        st.radio, SCALE_KEY, DEFAULT_SCALE, "Scale", options, valid=lambda v: v in options,
        horizontal=True, format_func=lambda v: "all" if v == "all"
        else f"{v} ({layout[int(v) - 1].width}²)")
    cell = None if choice == "all" else cell_choice(layout[int(choice) - 1].width)
    return picked, size, specs, choice, cell


def box_groups(layout, anchors, size, choice: str, cell):
    """Line groups ``(name, boxes px, colour)`` of the shown scales, and the highlighted cell's
    anchors (one scale only)."""
    groups, highlight = [], []
    if choice == "all":
        for s in layout:
            groups.append((f"scale {s.scale + 1}: {s.width}×{s.width}×{s.per_pixel} = "
                           f"{s.stop - s.start}", to_pixels(anchors[s.start:s.stop], size),
                           figures.SCALE_COLOURS[s.scale]))
        return groups, highlight
    s = layout[int(choice) - 1]
    labels = shape_labels(s.sizes, s.ratios)
    for j, label in enumerate(labels):
        groups.append((label, to_pixels(anchors[shape_slice(s, j)], size), figures.colour(j)))
    if cell is not None:
        boxes = to_pixels(anchors[cell_slice(s, *cell)], size)
        for j, label in enumerate(labels):
            highlight.append((f"cell {cell}: {label}", boxes[j][None], figures.colour(j)))
    return groups, highlight


def centre_points(s, w: int, h: int):
    """One scale's cell centres in display pixels, their [scale, row, col] and hover texts."""
    centres, rows, cols = cell_centres(s)
    centres = to_pixels(centres, (w, h))
    data = np.stack([np.full(len(rows), s.scale), rows, cols], axis=1)
    return centres, data, [f"scale {s.scale + 1}, cell ({r}, {c})" for r, c in zip(rows, cols)]


def anchor_chart(picked, layout, anchors, choice: str, cell) -> None:
    image = picked.image
    if image is None:
        st.info("Showing a blank canvas instead. Upload another image or pick a sample.")
        image = sample_images.gradient_image()
    disp = image.copy()
    disp.thumbnail((768, 768))
    w, h = disp.size
    groups, highlight = box_groups(layout, anchors, (w, h), choice, cell)
    # One scale only: the centres of all 1365 cells would hide the image.
    centres, data, text = (None, None, None) if choice == "all" else centre_points(
        layout[int(choice) - 1], w, h)
    fig = figures.anchors_figure(disp, groups, centres=centres, highlight=highlight,
                                 centre_data=data, centre_text=text, height=620)
    present.chart(fig, main=True, key="anchor_chart", on_select=on_chart_select,
                  selection_mode="points")
    st.caption(f"Image: {picked.desc} ({image.size[0]}×{image.size[1]}). Anchors are "
               "normalized, so they cover any image; the input size sets how many cells each "
               "scale has.")


def anchor_counts(layout) -> None:
    st.subheader("Anchor count")
    m = st.columns(NUM_SCALES + 1)
    for s in layout:
        side, a = s.width, s.per_pixel
        m[s.scale].metric(f"Scale {s.scale + 1}", s.stop - s.start,
                          help=f"{side}×{side} cells × {a} anchors", border=True)
        m[s.scale].caption(f"{side}×{side} × {a}")
    total = layout[-1].stop
    m[-1].metric("Total anchors", total, border=True)
    st.caption(f"Book defaults at 256×256: (32² + 16² + 8² + 4² + 1²) × 4 = 5444. Now: {total}.")


present.page_top("Anchors", (
    "Every cell of each of TinySSD's five feature maps is the centre of "
    "`len(sizes) + len(ratios) - 1` anchors: each size with the first ratio, then the first size "
    "with every other ratio (`multibox_prior`). The page opens as the book's `display_anchors`: "
    "one scale with one cell's anchors highlighted. Click a white anchor centre to pick another "
    "cell, or choose scale \"all\" to see every anchor at once."))
left, right = present.figure_first((1, 2.3))
with left:
    picked, size, specs, scale_choice, cell = controls()
layout, anchors = anchors_for(size, tuple(specs))
with right:
    anchor_chart(picked, layout, anchors, scale_choice, cell)
anchor_counts(layout)
anchor_fit_view(size, specs)  # how a dataset's objects fit these and other anchor sizes
