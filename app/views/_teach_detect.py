"""Teach, step 5 (Detect live): the taught model (by default this set's newest run) on the
camera as continuous video with its boxes (``views._live``), and on a snapshot or an upload."""

from __future__ import annotations

import hashlib

import streamlit as st

from app import figures, model_picker, present, sample_images
from app.views import _live
from app.views._teach_train import set_runs

MODEL_KEY = "teach.model"


@st.cache_resource(show_spinner="Running the network ...", max_entries=16)
def _detections(model_key: str, digest: str, _det, _png: bytes, conf: float):
    return _det.predict(_png, conf_threshold=conf)


def default_model(ds) -> None:
    """Open the picker on this set's newest taught model (once per session and set)."""
    seen = f"teach.model_default.{ds.slug}"
    if st.session_state.get(seen):
        return
    st.session_state[seen] = True
    newest = next((r.checkpoint for r in set_runs(ds) if r.checkpoint is not None), None)
    if newest is not None and str(newest) in model_picker.model_choices():
        st.session_state[MODEL_KEY] = str(newest)


def still(det) -> None:
    """A snapshot or an uploaded photo with the model's boxes."""
    picked = sample_images.pick_image("teach.detect", [sample_images.CAMERA, sample_images.UPLOAD],
                               waiting="Choose a photo to detect your objects in.")
    if picked.png is None:
        return
    conf = st.slider("Confidence threshold", 0.0, 1.0, 0.5, 0.01, key="teach.detect_conf")
    choice = st.session_state.get(MODEL_KEY, model_picker.SHIPPED)
    d = _detections(model_picker.model_key(choice), hashlib.sha1(picked.png).hexdigest(), det,
                    picked.png, conf)
    fig = figures.detections_figure(picked.image, d.boxes.tolist(), d.scores.tolist(),
                                    d.labels.tolist(), list(d.class_names), height=520,
                                    title=f"{len(d)} box(es) with score ≥ {conf:.2f}")
    present.chart(fig, width="stretch", key="teach_detect_chart")


def detect(ds) -> None:
    """Step 5."""
    default_model(ds)
    c1, c2 = st.columns([1, 2])
    with c1:
        det, label = model_picker.model_picker(MODEL_KEY)
    c2.caption(f"Classes of this model: **{', '.join(det.class_names)}**. Anything else in "
               "view will be called one of them, or nothing.")
    if list(det.class_names) != list(ds.class_names) and ds.class_names:
        st.info(f"This model does not know this set's classes ({', '.join(ds.class_names)}): "
                "train one in step 4, or pick its run above.")
    live, photo = st.tabs(["Live camera", "Snapshot or upload"])
    with live:
        st.caption("Press START: the camera streams to the server, the model boxes every "
                   "frame, and the video comes back with them.")
        _live.live_view(det, key="teach_live")
    with photo:
        still(det)
