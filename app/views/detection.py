"""Detection: a trained TinySSD on any image, with thresholds and NMS you can move.

The network runs once per (image, model): its raw output (class probabilities and decoded boxes
of every anchor) is cached, and the sliders only re-filter it inside an ``st.fragment``.
"""

import hashlib
import json
from typing import NamedTuple

import streamlit as st

from app import figures, model_picker, present, sample_images, timing, urlstate
from app.views._nms_steps import nms_steps
from ssd_core.anchors import locate_anchor
from ssd_core.drawing import draw_detections
from ssd_core.suppression import near_duplicates

SOURCES = [sample_images.SHIPPED, sample_images.SYNTHETIC, sample_images.UPLOAD,
           sample_images.CAMERA]
NMS_MODES = ["class-agnostic (book)", "per class"]
MAX_DRAWN = 1000  # raw candidates drawn at most (the table lists them all)


@st.cache_resource(show_spinner="Running the network ...", max_entries=32)
def raw_output(model_key: str, digest: str, _det, _png: bytes):
    """The Detector's RawOutput for one image (keyed on model + image digest; the network
    runs here and nowhere else on this page)."""
    return _det.raw(_png)


@st.cache_resource(show_spinner=False, max_entries=16)
def display_image(digest: str, _png: bytes):
    """(PIL image, its PNG data URI) of one decoded image, made once per image."""
    image = sample_images.open_png(_png)
    return image, figures.image_uri(image)


def anchor_infos(det, d) -> list[dict]:
    """For each detection, the scale, cell and shape of the anchor behind it (locate_anchor)."""
    layout = det.model.layout(input_size=det.input_size)
    return [locate_anchor(layout, a) for a in d.anchor_index.tolist()]


def hover_text(d, infos) -> list[str]:
    """One hover string per detection: class, score, box, and the anchor that produced it."""
    out = []
    for (x1, y1, x2, y2), s, c, a, info in zip(d.boxes.tolist(), d.scores.tolist(),
                                               d.labels.tolist(), d.anchor_index.tolist(), infos):
        out.append(
            f"<b>{d.class_names[c]}</b> {s:.3f}<br>box ({x1:.0f}, {y1:.0f}) – ({x2:.0f}, {y2:.0f})"
            f"<br>scale {info['scale'] + 1} ({info['feature_map']}×{info['feature_map']} map), "
            f"cell ({info['row']}, {info['col']})<br>anchor #{a}: shape {info['shape']}, "
            f"size {info['size']:g}, ratio {info['ratio']:g}")
    return out


def table_rows(d, infos) -> list[dict]:
    """JSON-ready detections with their anchors (the table and the JSON download)."""
    return [{**rec, "scale": info["scale"] + 1, "feature_map": info["feature_map"],
             "cell": f"({info['row']}, {info['col']})", "anchor_size": info["size"],
             "anchor_ratio": info["ratio"], "anchor_index": a}
            for rec, a, info in zip(d.to_records(), d.anchor_index.tolist(), infos)]


class Filters(NamedTuple):
    conf: float
    nms_iou: float
    apply_nms: bool
    mode: str
    classes: list

    @property
    def per_class(self) -> bool:
        return self.mode == "per class"


def filter_controls(names: list[str], stacked: bool = False) -> Filters:
    """The thresholds, NMS choices and class filter (sliders mirrored in the URL); ``stacked``:
    one above the other (a narrow column beside the figure), else side by side."""
    c1, c2, c3 = [st.container()] * 3 if stacked else st.columns([1.2, 1.2, 1.6])
    conf = urlstate.bind(c1.slider, "detection.conf", 0.5, "Confidence threshold", 0.0, 1.0,
                         step=0.01, valid=lambda v: 0 <= v <= 1,
                         help="Anchors whose best class probability is below this are dropped.")
    nms_iou = urlstate.bind(c2.slider, "detection.nms", 0.5, "NMS IoU threshold", 0.0, 1.0,
                            step=0.01, valid=lambda v: 0 <= v <= 1,
                            help="A box overlapping a better one by more than this is "
                                 "suppressed.")
    with c3:
        apply_nms = urlstate.bind(st.toggle, "detection.apply_nms", True, "Apply NMS",
                                  omit_default=True,
                                  help="Off: every raw candidate above the confidence "
                                       "threshold.")
        mode = urlstate.bind(st.radio, "detection.nms_mode", NMS_MODES[0], "NMS", NMS_MODES,
                             valid=lambda v: v in NMS_MODES, omit_default=True, horizontal=True,
                             disabled=not apply_nms)
    every = list(range(len(names)))
    if not set(st.session_state.get("detection.classes", every)) <= set(every):
        st.session_state["detection.classes"] = every  # a model with fewer classes
    keep = urlstate.held(st.multiselect, "detection.classes", every, "Classes", every,
                         format_func=lambda c: names[c])
    return Filters(conf, nms_iou, apply_nms, mode, keep)


def count_metrics(d, raw, conf: float, stacked: bool = False) -> None:
    m = [c for row in (st.columns(2), st.columns(2)) for c in row] if stacked else st.columns(4)
    m[0].metric("Detections", len(d))
    m[1].metric("Candidates ≥ threshold", int((raw.scores >= conf).sum()),
                help="Anchors above the confidence threshold, before NMS.")
    m[2].metric("Anchors", len(raw.scores))
    m[3].metric("Best score", f"{float(raw.scores.max()):.3f}")


def detections_chart(d, infos, image, uri, desc: str, model_label: str, f: Filters,
                     gt, box) -> None:
    """The detections (the best MAX_DRAWN) over the image, with the ground truth if known."""
    drawn = min(len(d), MAX_DRAWN)
    gt_boxes, gt_labels = gt if gt is not None else (None, None)
    fig = figures.detections_figure(
        uri, d.boxes[:drawn].numpy(), d.scores[:drawn].numpy(), d.labels[:drawn].numpy(),
        d.class_names, hover=hover_text(d, infos) if drawn <= 300 else None,
        gt_boxes=gt_boxes, gt_labels=gt_labels, height=600)
    present.chart(fig, box, main=True, key="detection_chart")
    caption = (f"{desc} ({image.size[0]}×{image.size[1]}), model: {model_label}; "
               f"confidence ≥ {f.conf:.2f}, "
               + (f"NMS IoU {f.nms_iou:.2f} ({f.mode}). " if f.apply_nms else "no NMS. ")
               + "Hover a box corner for its score and the anchor (scale, cell, shape) behind it.")
    if drawn < len(d):
        caption += f" Drawing the {drawn} best of {len(d)} boxes."
    box.caption(caption)


def downloads(d, image, desc: str, model_label: str, f: Filters, rows: list[dict]) -> None:
    """The annotated PNG (ssd_core.drawing, as ``detect --draw``) and the detections as JSON."""
    stem = desc.rsplit(".", 1)[0].replace(" ", "_") or "image"
    b1, b2 = st.columns(2)
    b1.download_button(
        "Download annotated PNG", lambda: sample_images.png_bytes(draw_detections(
            image, d.boxes.numpy(), d.scores.numpy(), d.labels.numpy(), d.class_names,
            width=3)),
        file_name=f"{stem}_detections.png", mime="image/png", on_click="ignore",
        key="detection.dl_png")
    payload = {"image": desc, "model": model_label, "image_size": list(d.image_size),
               "conf_threshold": f.conf, "nms_threshold": f.nms_iou if f.apply_nms else None,
               "per_class_nms": f.per_class, "detections": rows}
    b2.download_button("Download detections (JSON)", json.dumps(payload, indent=1),
                       file_name=f"{stem}_detections.json", mime="application/json",
                       on_click="ignore", key="detection.dl_json")


def duplicate_note(d, f: Filters) -> None:
    """Two kept boxes of one class that overlap just under the NMS threshold: say why NMS
    kept both and what would remove the weaker one."""
    if not f.apply_nms:
        return
    for i, j, iou in near_duplicates(d.boxes[:MAX_DRAWN], d.labels[:MAX_DRAWN], f.nms_iou)[:2]:
        a, b = (f"{d.class_names[int(d.labels[k])]} {float(d.scores[k]):.2f}" for k in (i, j))
        st.info(f"**{b}** beside **{a}**: they overlap by IoU {iou:.2f}, not more than the NMS "
                f"threshold {f.nms_iou:.2f}, so NMS keeps both. Set the NMS IoU threshold "
                f"below {iou:.2f} and NMS removes {b} (NMS step by step below shows why).",
                icon=":material/info:")


@st.fragment
def results(det, raw, png: bytes, desc: str, model_label: str, gt) -> None:
    """Sliders and everything they change; reruns alone, never touches the network. The figure
    comes first: beside the controls in presentation mode, above them otherwise."""
    with timing.timed("detection results"):
        stacked = present.on()
        if stacked:
            figure_box, side = st.columns([2.5, 1])
        else:
            figure_box, side = st.container(), st.container()
        with side:
            f = filter_controls(det.class_names, stacked)
            d = det.filter(raw, f.conf, f.nms_iou, per_class=f.per_class, classes=f.classes,
                           apply_nms=f.apply_nms)
            count_metrics(d, raw, f.conf, stacked)
        infos = anchor_infos(det, d)
        image, uri = display_image(hashlib.sha1(png).hexdigest(), png)
        detections_chart(d, infos, image, uri, desc, model_label, f, gt, figure_box)
        duplicate_note(d, f)
        if len(d) == 0:
            st.info(f"No box scores ≥ {f.conf:.2f} (best: {float(raw.scores.max()):.3f}). "
                    "Lower the confidence threshold to see the weaker candidates.")
        rows = table_rows(d, infos)
        if rows:
            st.dataframe(rows[:2000], width="stretch", height=min(400, 40 + 35 * len(rows)),
                         hide_index=True)
        downloads(d, image, desc, model_label, f, rows)
    nms_steps(det, raw, uri, f)  # greedy NMS one kept box at a time (its own fragment)


pickers = present.page_top("Detection", (
    "TinySSD predicts a class and four offsets for each of its anchors (5444 at 256×256). "
    "Decoding the offsets turns anchors into boxes; the **confidence threshold** drops the weak "
    "ones and **non-maximum suppression** keeps the best of each overlapping group, as the "
    "book's `multibox_detection` does. The network runs once per image; the sliders only "
    "re-filter its cached output."))

if present.on():  # the figure gets the page's width; the choices wait in a fold
    left = pickers.expander("Model and image")
    right = st.container()
else:
    left, right = st.columns([1, 2.6])
with left:
    det, model_label = model_picker.model_picker("detection.model")
    picked = sample_images.pick_image("detection", SOURCES,
                               waiting="Choose an image file to detect objects in.")
    st.caption(f"Input {det.input_size}×{det.input_size}, classes: {', '.join(det.class_names)}")
    if (st.session_state.get("detection.model") == model_picker.SHIPPED
            and st.session_state.get("detection.image") in (sample_images.UPLOAD,
                                                            sample_images.CAMERA)):
        # A lesson, not an error: a detector only knows the classes it was trained on.
        st.info(f"The shipped model knows only **{', '.join(det.class_names)}** (synthetic "
                "shapes). Anything else in your photo will be called one of them, or not "
                "found at all: that is what a detector does with classes it never saw. "
                "Teach it your own objects:", icon=":material/school:")
        st.page_link("views/teach.py", label="Teach", icon=":material/school:")

with right:
    if picked.png is None:
        st.info("Pick a synthetic sample, upload an image or take a picture.")
    else:
        raw = raw_output(model_picker.model_key(st.session_state["detection.model"]),
                         hashlib.sha1(picked.png).hexdigest(), det, picked.png)
        # A model with other classes: the synthetic sample's labels would mislead.
        known = picked.boxes is not None and picked.class_names == list(det.class_names)
        results(det, raw, picked.png, picked.desc, model_label,
                (picked.boxes, picked.labels) if known else None)
