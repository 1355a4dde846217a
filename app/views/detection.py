"""Detection: a trained TinySSD on any image, with thresholds and NMS you can move.

The network runs once per (image, model): its raw output (class probabilities and decoded boxes
of every anchor) is cached, and the sliders only re-filter it inside an ``st.fragment``.
"""

import hashlib
import io
import json

import figures
import state
import streamlit as st
import timing

from ssd_core.errors import InvalidImageError

SOURCES = ["Shipped sample", "Synthetic sample", "Upload", "Camera"]
MAX_DRAWN = 1000  # raw candidates drawn at most (the table lists them all)


@st.cache_resource(show_spinner="Running the network ...", max_entries=32)
def raw_output(model_key: str, digest: str, _det, _png: bytes):
    """The Detector's RawOutput for one image (keyed on model + image digest; the network
    runs here and nowhere else on this page)."""
    return _det.raw(_png)


@st.cache_resource(show_spinner=False, max_entries=16)
def display_image(digest: str, _png: bytes):
    """(PIL image, its PNG data URI) of one decoded image, made once per image."""
    image = state.open_png(_png)
    return image, figures.image_uri(image)


def pick_image():
    """-> (display PNG bytes or None, description, ground truth (boxes, labels) or None)."""
    files = state.sample_files()
    sources = [s for s in SOURCES if s != "Shipped sample" or files]
    state.qp_init("detection.image", sources[0], str, lambda v: v in sources)
    source = st.radio("Image", sources, key="detection.image", horizontal=True)
    state.qp_sync("detection.image")
    data, desc, gt = None, "", None
    if source == "Synthetic sample":
        state.qp_init("detection.sample", 0, int, lambda v: 0 <= v <= 999)
        i = st.number_input("Sample number", 0, 999, key="detection.sample", step=1,
                            help="Deterministic synthetic images (seed 0); their ground truth "
                                 "is drawn dashed.")
        state.qp_sync("detection.sample")
        data, boxes, labels, _ = state.synthetic_sample(int(i))
        desc, gt = f"synthetic sample {int(i)}", (boxes, labels)
    elif source == "Shipped sample":
        names = [p.name for p in files]
        state.qp_init("detection.file", names[0], str, lambda v: v in names)
        name = st.selectbox("Sample image", names, key="detection.file")
        state.qp_sync("detection.file")
        data, desc = files[names.index(name)].read_bytes(), name
    elif source == "Upload":
        up = st.file_uploader("Upload an image", key="detection.upload",
                              help="PNG, JPEG, GIF, BMP, TIFF, WebP ... (first frame is used)")
        if up is None:
            state.upload_hint("Choose an image file to detect objects in.")
            return None, "", None
        data, desc = up.getvalue(), up.name
    else:
        shot = st.camera_input("Take a picture", key="detection.camera",
                               help="The browser asks for the camera (HTTPS or localhost only).")
        if shot is None:
            st.info("Allow the camera and take a picture to detect objects in it.")
            return None, "", None
        data, desc = shot.getvalue(), "camera picture"
    try:
        return state.decode_image(data), desc, gt
    except InvalidImageError as e:
        state.image_error(desc, e)
        return None, desc, None


def hover_text(det, d) -> list[str]:
    """One hover string per detection: class, score, box, and the anchor that produced it."""
    out = []
    for (x1, y1, x2, y2), s, c, a in zip(d.boxes.tolist(), d.scores.tolist(), d.labels.tolist(),
                                         d.anchor_index.tolist()):
        info = det.anchor_info(a)
        out.append(
            f"<b>{d.class_names[c]}</b> {s:.3f}<br>box ({x1:.0f}, {y1:.0f}) – ({x2:.0f}, {y2:.0f})"
            f"<br>scale {info['scale'] + 1} ({info['feature_map']}×{info['feature_map']} map), "
            f"cell ({info['row']}, {info['col']})<br>anchor #{a}: shape {info['shape']}, "
            f"size {info['size']:g}, ratio {info['ratio']:g}")
    return out


def table_rows(det, d) -> list[dict]:
    rows = []
    for rec, a in zip(d.to_records(), d.anchor_index.tolist()):
        info = det.anchor_info(a)
        rows.append({**rec, "scale": info["scale"] + 1, "feature_map": info["feature_map"],
                     "cell": f"({info['row']}, {info['col']})", "anchor_size": info["size"],
                     "anchor_ratio": info["ratio"], "anchor_index": a})
    return rows


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@st.fragment
def results(det, raw, png: bytes, desc: str, model_label: str, gt) -> None:
    """Sliders and everything they change; reruns alone, never touches the network."""
    with timing.timed("detection results"):
        _results(det, raw, png, desc, model_label, gt)


def _results(det, raw, png: bytes, desc: str, model_label: str, gt) -> None:
    names = det.class_names
    c1, c2, c3 = st.columns([1.2, 1.2, 1.6])
    state.qp_init("detection.conf", 0.5, float, lambda v: 0 <= v <= 1)
    conf = c1.slider("Confidence threshold", 0.0, 1.0, step=0.01, key="detection.conf",
                     help="Anchors whose best class probability is below this are dropped.")
    state.qp_init("detection.nms", 0.5, float, lambda v: 0 <= v <= 1)
    nms_iou = c2.slider("NMS IoU threshold", 0.0, 1.0, step=0.01, key="detection.nms",
                        help="A box overlapping a better one by more than this is suppressed.")
    state.qp_sync("detection.conf", "detection.nms")
    with c3:
        apply_nms = st.toggle("Apply NMS", value=True, key="detection.apply_nms",
                              help="Off: every raw candidate above the confidence threshold.")
        mode = st.radio("NMS", ["class-agnostic (book)", "per class"], horizontal=True,
                        key="detection.nms_mode", disabled=not apply_nms)
    keep = st.multiselect("Classes", list(range(len(names))), default=list(range(len(names))),
                          format_func=lambda c: names[c], key="detection.classes")

    d = det.filter(raw, conf, nms_iou, per_class=mode == "per class",
                   classes=keep, apply_nms=apply_nms)
    candidates = int((raw.scores >= conf).sum())
    m = st.columns(4)
    m[0].metric("Detections", len(d))
    m[1].metric("Candidates ≥ threshold", candidates,
                help="Anchors above the confidence threshold, before NMS.")
    m[2].metric("Anchors", len(raw.scores))
    m[3].metric("Best score", f"{float(raw.scores.max()):.3f}")

    image, uri = display_image(hashlib.sha1(png).hexdigest(), png)
    drawn = min(len(d), MAX_DRAWN)
    gt_boxes, gt_labels = gt if gt is not None else (None, None)
    fig = figures.detections_figure(
        uri, d.boxes[:drawn].numpy(), d.scores[:drawn].numpy(), d.labels[:drawn].numpy(),
        names, hover=hover_text(det, d)[:drawn] if drawn <= 300 else None,
        gt_boxes=gt_boxes, gt_labels=gt_labels, height=600)
    st.plotly_chart(fig, key="detection_chart", width="stretch")
    caption = (f"{desc} ({image.size[0]}×{image.size[1]}), model: {model_label}; "
               f"confidence ≥ {conf:.2f}, "
               + (f"NMS IoU {nms_iou:.2f} ({mode}). " if apply_nms else "no NMS. ")
               + "Hover a box corner for its score and the anchor (scale, cell, shape) behind it.")
    if drawn < len(d):
        caption += f" Drawing the {drawn} best of {len(d)} boxes."
    st.caption(caption)
    if len(d) == 0:
        st.info(f"No box scores ≥ {conf:.2f} (best: {float(raw.scores.max()):.3f}). "
                "Lower the confidence threshold to see the weaker candidates.")

    rows = table_rows(det, d)
    if rows:
        st.dataframe(rows[:2000], width="stretch", height=min(400, 40 + 35 * len(rows)),
                     hide_index=True)
    stem = desc.rsplit(".", 1)[0].replace(" ", "_") or "image"
    b1, b2 = st.columns(2)
    b1.download_button(
        "Download annotated PNG", lambda: _png(figures.annotate_image(
            image, d.boxes.numpy(), d.scores.numpy(), d.labels.numpy(), names)),
        file_name=f"{stem}_detections.png", mime="image/png", on_click="ignore",
        key="detection.dl_png")
    payload = {"image": desc, "model": model_label, "image_size": list(d.image_size),
               "conf_threshold": conf, "nms_threshold": nms_iou if apply_nms else None,
               "per_class_nms": mode == "per class", "detections": rows}
    b2.download_button("Download detections (JSON)", json.dumps(payload, indent=1),
                       file_name=f"{stem}_detections.json", mime="application/json",
                       on_click="ignore", key="detection.dl_json")


st.title("Detection")
st.markdown(
    "TinySSD predicts a class and four offsets for each of its anchors (5444 at 256×256). "
    "Decoding the offsets turns anchors into boxes; the **confidence threshold** drops the weak "
    "ones and **non-maximum suppression** keeps the best of each overlapping group, as the "
    "book's `multibox_detection` does. The network runs once per image; the sliders only "
    "re-filter its cached output.")

left, right = st.columns([1, 2.6])
with left:
    det, model_label = state.model_picker("detection.model")
    png, desc, gt = pick_image()
    st.caption(f"Input {det.input_size}×{det.input_size}, classes: {', '.join(det.class_names)}")

with right:
    if png is None:
        st.info("Pick a synthetic sample, upload an image or take a picture.")
    else:
        digest = hashlib.sha1(png).hexdigest()
        raw = raw_output(state.model_key(st.session_state["detection.model"]), digest, det, png)
        if gt is not None and list(det.class_names) != state.synthetic_sample(0)[3]:
            gt = None  # a model with other classes: the synthetic labels would mislead
        results(det, raw, png, desc, model_label, gt)
