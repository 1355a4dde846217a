"""NMS step by step (Detection page): greedy suppression one kept box at a time, over the
cached network output (ssd_core.nms_trace), with the page's thresholds and NMS mode.

The Plotly figure plays and scrubs the steps in the browser (frames); the Step slider and the
Back / Next buttons pick the step the table details, in a fragment that never runs the network.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import figures_steps, present
from ssd_core.boxes import to_pixels
from ssd_core.nms_trace import trace_raw

STEP = "detection.nms_step"


def _step_controls(num_steps: int) -> int:
    """Back / Next buttons and the Step slider -> the chosen step (0-based)."""
    st.session_state[STEP] = int(np.clip(st.session_state.get(STEP, 1), 1, num_steps))

    def move(delta: int) -> None:
        st.session_state[STEP] = int(np.clip(st.session_state[STEP] + delta, 1, num_steps))

    b1, b2, s = st.columns([0.6, 0.6, 4])
    b1.button("◀ Back", key="detection.nms_back", on_click=move, args=(-1,),
              disabled=st.session_state[STEP] <= 1, width="stretch")
    b2.button("Next ▶", key="detection.nms_next", on_click=move, args=(1,),
              disabled=st.session_state[STEP] >= num_steps, width="stretch")
    if num_steps > 1:
        s.slider("Step (one kept box each)", 1, num_steps, key=STEP)
    else:
        s.caption("One step: a single candidate.")
    return st.session_state[STEP] - 1


def _removed_table(rt, s: int, names) -> None:
    t = rt.trace
    removed = t.removed_at(s).tolist()
    k = int(t.kept[s])
    st.markdown(f"**Step {s + 1}: keep candidate #{k}** ({names[int(rt.labels[k])]}, score "
                f"{float(rt.scores[k]):.3f}, anchor {int(rt.anchor[k])}); it removes "
                f"**{len(removed)}** box(es) with IoU > the NMS threshold:")
    if removed:
        st.dataframe([{"candidate": i, "anchor": int(rt.anchor[i]),
                       "class": names[int(rt.labels[i])], "score": float(rt.scores[i]),
                       "IoU with kept box": float(t.iou[i])} for i in removed],
                     hide_index=True, width="stretch", height=min(300, 40 + 35 * len(removed)),
                     key="detection.nms_removed")


@st.fragment
def nms_steps(det, raw, uri, f) -> None:
    """The step-through for the page's Filters ``f`` over ``raw`` (a cached RawOutput)."""
    st.subheader("NMS step by step")
    rt = trace_raw(raw, f.conf, f.nms_iou, per_class=f.per_class)
    t = rt.trace
    if t.num_steps == 0:
        st.info(f"No candidate scores ≥ {f.conf:.2f}: nothing to suppress.")
        return
    s = _step_controls(t.num_steps)
    m = st.columns(4)
    m[0].metric("NMS step", f"{s + 1} / {t.num_steps}")
    m[1].metric("Kept so far", s + 1)
    m[2].metric("Removed by this box", len(t.removed_at(s)))
    m[3].metric("Candidates left", len(t.remaining_after(s)))
    boxes = to_pixels(rt.boxes.numpy(), raw.image_size, clip=True)
    arrays = {k: getattr(t, k).numpy() for k in ("kept", "step", "removed_by", "iou")}
    fig = figures_steps.nms_steps_figure(uri, boxes, rt.scores.numpy(), rt.labels.numpy(),
                                         det.class_names, arrays, active=s, height=560)
    present.chart(fig, key="detection.nms_chart", width="stretch")
    mode = "per class: a box only removes boxes of its own class" if f.per_class else \
        "class-agnostic, as the book: a box removes overlapping boxes of any class"
    st.caption(f"{len(rt.scores)} candidates score ≥ {f.conf:.2f}; visited by descending score, "
               f"each kept box removes every later box overlapping it by IoU > {f.nms_iou:.2f} "
               f"({mode}). ▶ plays the steps in the browser and its slider scrubs them; green: "
               "kept earlier, orange: kept now, dashed red: removed now (with IoU), dotted "
               "grey: candidates left.")
    _removed_table(rt, s, det.class_names)
