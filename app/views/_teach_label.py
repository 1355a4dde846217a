"""Teach, step 2 (Label): drag boxes on each photo with the mouse, each with a class name (typed
once, then picked); move, resize or delete a box in its table; previous / next photo; how many
more boxes each class needs.

Drawing uses Streamlit's own ``st.plotly_chart`` box selection (an invisible scatter grid over
the photo makes Plotly report the dragged rectangle; DESIGN.md's pitfall): no third-party
component, the same Plotly the rest of the app draws with, and a real mouse drag in the browser.
"""

from __future__ import annotations

import streamlit as st

from app import figures_teach, present, sample_images
from app.views._teach_store import bump, counter, image_index, photo_path, set_image_index
from ssd_core.errors import SSDError
from ssd_core.userdata import Box

CLASS_KEY = "teach.class"
MIN_SIDE = 2.0  # px: a smaller drag is a click, not a box


def dragged_box(event, width: int, height: int):
    """The newest box selection of a chart event -> ``(x1, y1, x2, y2)`` pixel corners inside
    the photo, or None (no box, or one too small to be a drag)."""
    boxes = (event or {}).get("selection", {}).get("box", []) if event else []
    if not boxes:
        return None
    xs, ys = boxes[-1].get("x", []), boxes[-1].get("y", [])
    if len(xs) < 2 or len(ys) < 2:
        return None
    x1, x2 = sorted(min(max(float(v), 0.0), width) for v in xs[:2])
    y1, y2 = sorted(min(max(float(v), 0.0), height) for v in ys[:2])
    if x2 - x1 < MIN_SIDE or y2 - y1 < MIN_SIDE:
        return None
    return x1, y1, x2, y2


def class_picker(ds) -> str | None:
    """The class of the next box: one of the set's names, or a new one typed once."""
    typed = st.session_state.get(CLASS_KEY)
    if typed and typed not in ds.class_names:
        try:
            st.session_state[CLASS_KEY] = ds.add_class(typed)  # a class of the set from now
        except (SSDError, ValueError) as e:
            st.error(f"That class name cannot be used: {e}")
            st.session_state[CLASS_KEY] = None
    return st.selectbox("Class of the next box", ds.class_names, index=None, key=CLASS_KEY,
                        accept_new_options=True, placeholder="type a new class name",
                        help="Type a name once (e.g. mug) and press Enter; later pick it.")


def save(ds, entry, boxes) -> None:
    try:
        ds.set_boxes(entry.id, boxes)
    except (SSDError, ValueError) as e:
        st.error(f"The boxes could not be saved: {e}")
        return
    bump("teach.boxes_v")
    st.rerun()


def draw(ds, entry, image, label: str | None) -> None:
    """The photo with its boxes; a drag adds a box of class ``label``."""
    fig = figures_teach.label_figure(
        image, [(b.x1, b.y1, b.x2, b.y2) for b in entry.boxes], [b.label for b in entry.boxes],
        ds.class_names, height=560)
    event = present.chart(fig, main=True,
                          key=f"teach.draw.{entry.id}.{counter('teach.boxes_v')}",
                          on_select="rerun", selection_mode="box",
                          config={"displaylogo": False, "scrollZoom": False})
    box = dragged_box(event, *image.size)
    if box is None:
        return
    if not label:
        st.error("Choose or type the class name first, then drag the box again.")
        return
    save(ds, entry, [*entry.boxes, Box(label, *box)])


def box_table(ds, entry, names: list[str]) -> None:
    """The photo's boxes as an editable table: change a class or a corner (move, resize), or
    delete rows."""
    rows = [{"class": b.label, "x1": round(b.x1, 1), "y1": round(b.y1, 1), "x2": round(b.x2, 1),
             "y2": round(b.y2, 1)} for b in entry.boxes]
    if not rows:
        st.caption("No boxes on this photo yet.")
        return
    num = st.column_config.NumberColumn
    edited = st.data_editor(
        rows, key=f"teach.table.{entry.id}.{counter('teach.boxes_v')}", num_rows="dynamic",
        hide_index=True, width="stretch",
        column_config={"class": st.column_config.SelectboxColumn("class", options=names,
                                                                 required=True, width="small"),
                       **{k: num(k, min_value=0.0, format="%.0f", required=True, width=48)
                          for k in ("x1", "y1", "x2", "y2")}})
    st.caption("Edit a corner to move or resize a box; select a row and delete it to remove "
               "the box.")
    if edited == rows:
        return
    new = []
    for r in edited:
        if any(r.get(k) is None for k in ("class", "x1", "y1", "x2", "y2")):
            return  # a row being filled in
        if r["x2"] - r["x1"] < MIN_SIDE or r["y2"] - r["y1"] < MIN_SIDE:
            st.error("A box needs x2 > x1 and y2 > y1 (at least 2 px); it was not saved.")
            return
        new.append(Box(r["class"], float(r["x1"]), float(r["y1"]), float(r["x2"]),
                             float(r["y2"])))
    save(ds, entry, new)


def needs_note(ds) -> None:
    needs, problems = ds.needs(), ds.problems()
    missing = {n: k for n, k in needs.items() if k > 0}
    if missing:
        st.info("For a first model: " + ", ".join(
            f"**{k}** more box(es) of **{n}**" for n, k in sorted(missing.items())) + ".")
    elif needs:
        st.success("Every class has enough boxes for a first model.")
    for p in problems:
        st.caption(f"Before training: {p}")


def label(ds) -> None:
    """Step 2: one photo at a time."""
    if not ds.images:
        st.info("No photos yet: add some in step 1 (Collect).")
        return
    n = len(ds.images)
    i = image_index(n)
    entry = ds.images[i]
    nav = st.columns([1.3, 1, 2.5, 3])
    if nav[0].button("Previous", key="teach.prev", icon=":material/arrow_back:",
                     disabled=i == 0):
        set_image_index(i - 1)
        st.rerun()
    if nav[1].button("Next", key="teach.next", icon=":material/arrow_forward:",
                     disabled=i >= n - 1):
        set_image_index(i + 1)
        st.rerun()
    nav[2].markdown(f"**Photo {i + 1} of {n}** · {len(entry.boxes)} box(es)")
    with nav[3]:
        name = class_picker(ds)
    try:
        raw = photo_path(ds, entry).read_bytes()
        image = sample_images.open_png(sample_images.decode_image(raw, max_side=100_000))
    except (OSError, SSDError) as e:
        st.error(f"Photo {i + 1} could not be read ({e}); delete it in step 1.")
        return
    left, right = st.columns([2.4, 1])
    with left:
        st.caption("Drag a rectangle over an object to box it (the class above).")
        draw(ds, entry, image, name)
    with right:
        needs_note(ds)
        box_table(ds, entry, sorted({*ds.class_names, *([name] if name else [])}))
