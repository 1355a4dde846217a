"""Teach, step 2 (Label): draw boxes on each photo with the mouse, each with a class name (typed
once, then picked); move, resize or delete a box with the mouse or in its table; previous / next
photo; how many more boxes each class needs.

Drawing uses ``app.box_editor``, a component made with Streamlit's public Custom Components v2
API (``st.components.v2``) from a small ES module and a stylesheet in the package: a drag on the
photo draws a box of the class picked here, a drag inside a box moves it, its handles resize it,
Delete or the x in its tag removes it. No third-party component, no build step, nothing fetched.
When a gesture ends the editor sends every box of the photo; :func:`apply_edit` checks and saves
them (in the component's callback, so the run that follows draws what was saved). The table
beside it is the keyboard way to do the same.
"""

from __future__ import annotations

import functools

import streamlit as st

from app import box_editor, figures_style, present
from app.views._teach_store import bump, counter, image_index, photo_path, set_image_index
from ssd_core.drawing import colour
from ssd_core.errors import SSDError
from ssd_core.userdata import Box

CLASS_KEY = "teach.class"
ERROR_KEY = "teach.edit_error"  # what the last mouse edit could not save, shown once
VERSION_KEY = "teach.boxes_v"  # bumped by every handled edit: fresh table, editor redrawn
MIN_SIDE = box_editor.MIN_SIDE  # px: a smaller drag is a click, not a box


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
    bump(VERSION_KEY)
    st.rerun()


def apply_edit(ds, image_id: int, payload) -> str | None:
    """Save the box editor's payload (every box of photo ``image_id``) -> None, or the message
    to show when nothing was saved (what to do)."""
    if isinstance(payload, dict) and payload.get("image_id", image_id) != image_id:
        return "That edit was made on another photo; draw the box again."
    try:
        entry = ds.image(image_id)
        boxes = box_editor.boxes_from_payload(payload, entry.width, entry.height)
        ds.set_boxes(image_id, boxes)
    except box_editor.EditError as e:
        return str(e)
    except (SSDError, ValueError, OSError) as e:
        return f"The boxes could not be saved: {e}"
    return None


def edited(ds, image_id: int, payload) -> None:
    """The editor's callback (before the script runs): save, remember a refusal for the run."""
    message = apply_edit(ds, image_id, payload)
    if message:
        st.session_state[ERROR_KEY] = message
    bump(VERSION_KEY)


def draw(ds, entry, raw: bytes, label: str | None) -> None:
    """The photo with its boxes in the mouse box editor; a drag adds a box of class ``label``."""
    message = st.session_state.pop(ERROR_KEY, None)
    if message:
        st.error(message)
    names = list(dict.fromkeys([*ds.class_names, *([label] if label else [])]))
    box_editor.editor(
        raw, entry.id, entry.boxes, label, {n: colour(i) for i, n in enumerate(names)},
        key=f"teach.editor.{entry.id}", on_edit=functools.partial(edited, ds, entry.id),
        rev=counter(VERSION_KEY),
        max_height=present.PRESENT_HEIGHT if present.on() else present.MAIN_HEIGHT,
        font_px=figures_style.PRESENT_TEXT if present.on() else figures_style.TEXT)


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
        rows, key=f"teach.table.{entry.id}.{counter(VERSION_KEY)}", num_rows="dynamic",
        hide_index=True, width="stretch",
        column_config={"class": st.column_config.SelectboxColumn("class", options=names,
                                                                 required=True, width="small"),
                       **{k: num(k, min_value=0.0, format="%.0f", required=True, width=48)
                          for k in ("x1", "y1", "x2", "y2")}})
    st.caption("Or with the keyboard: edit a corner to move or resize a box; select a row and "
               "delete it to remove the box.")
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
    # The photo first, at the top of the step; the controls beside it (a projector at
    # 1280x720 shows the whole photo without scrolling).
    left, right = st.columns([2.4, 1])
    with right:
        name = class_picker(ds)
        nav = st.columns(2)
        if nav[0].button("Previous", key="teach.prev", icon=":material/arrow_back:",
                         disabled=i == 0, width="stretch"):
            set_image_index(i - 1)
            st.rerun()
        if nav[1].button("Next", key="teach.next", icon=":material/arrow_forward:",
                         disabled=i >= n - 1, width="stretch"):
            set_image_index(i + 1)
            st.rerun()
        st.markdown(f"**Photo {i + 1} of {n}** · {len(entry.boxes)} box(es)")
    try:
        raw = photo_path(ds, entry).read_bytes()
        box_editor.photo_url(raw)
    except (OSError, SSDError, ValueError) as e:
        st.error(f"Photo {i + 1} could not be read ({e}); delete it in step 1.")
        return
    with left:
        draw(ds, entry, raw, name)
        st.caption("Drag on the photo to box an object (the class on the right); drag a box "
                   "to move it, its handles to resize it; **Delete** or **×** removes the "
                   "selected box. Shift-drag draws inside another box.")
    with right:
        needs_note(ds)
        box_table(ds, entry, sorted({*ds.class_names, *([name] if name else [])}))
