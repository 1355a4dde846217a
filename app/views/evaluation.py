"""Evaluation: how good is a model on a held-out set? AP50 and mAP, precision-recall curves,
a confidence-threshold sweep and the images it gets most wrong.

Predictions are made in cached chunks (so a progress bar can move and a rerun is instant);
scores come from ``ssd_core.evaluate`` (the same code as training's validation).
"""

import numpy as np
import streamlit as st

from app import figures, figures_metrics, job_queue, model_picker, present, sample_images
from ssd_core.boxes import to_pixels
from ssd_core.data import FORMATS, PRESETS, SyntheticDetection, load_dataset
from ssd_core.errors import SSDError
from ssd_core.evaluate import evaluate_detections, match_detections, predict_range

CHUNK = 16
IOU = 0.5
GALLERY = 6
THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


@st.cache_resource(show_spinner="Preparing the dataset ...", max_entries=4)
def dataset(data_key: tuple, _name: str | None = None):
    """The held-out dataset for a settings tuple (synthetic or an uploaded zip's path);
    ``_name``: what errors call the zip (the name it was uploaded under)."""
    kind, *rest = data_key
    if kind == "synthetic":
        preset, n, seed, size = rest
        return SyntheticDetection(n, seed=seed, image_size=size, preset=preset)
    path, fmt, size = rest
    return load_dataset(path, fmt=fmt, image_size=size, name=_name)


@st.cache_data(show_spinner=False, max_entries=256)
def predict_chunk(model_key: str, data_key: tuple, start: int, stop: int, _det, _ds):
    """Images start..stop-1 -> per image (det boxes (K,4), scores (K,), labels (K,), gt boxes
    (M,4), gt labels (M,)), numpy, normalized corners (the book's multibox_detection rows)."""
    dets, gts = predict_range(_det.model, _ds, start, stop, _det.input_size, _det.device)
    return [(b.numpy(), s.numpy(), lab.numpy(), gb.numpy(), gl.numpy())
            for (b, s, lab), (gb, gl) in zip(dets, gts)]


@st.cache_data(show_spinner=False, max_entries=32)
def score(model_key: str, data_key: tuple, _preds, names: tuple):
    """EvalResult of cached predictions (AP50, mAP, per class, PR curves)."""
    dets = [(b, s, lab) for b, s, lab, _, _ in _preds]
    gts = [(gb, gl) for _, _, _, gb, gl in _preds]
    return evaluate_detections(dets, gts, len(names), list(names))


def threshold_sweep(result, thresholds=THRESHOLDS):
    """Precision, recall, F1 (T,) over all classes when only detections with score >= t count,
    read off the per-class PR curves (point k = the k best detections of that class)."""
    tp = np.zeros(len(thresholds))
    n_det = np.zeros(len(thresholds))
    total_gt = sum(v["num_gt"] for v in result.per_class.values())
    for name, (rec, _, scores) in result.pr_curves.items():
        k = np.searchsorted(-np.asarray(scores), -thresholds, side="right")  # scores >= t
        num_gt = result.per_class[name]["num_gt"]
        rec = np.concatenate([[0.0], np.asarray(rec)])
        tp += np.rint(rec[k] * num_gt)
        n_det += k
    precision = np.where(n_det > 0, tp / np.maximum(n_det, 1), 1.0)
    recall = tp / max(total_gt, 1)
    f1 = np.where(precision + recall > 0,
                  2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return precision, recall, f1


def settings_form(det):
    """-> (data_key tuple or None with a message, the uploaded zip's name or None)."""
    source = st.radio("Held-out data", ["Synthetic", "Upload a dataset (.zip)"], horizontal=True,
                      key="evaluation.data")
    size = det.input_size
    if source == "Synthetic":
        presets = list(PRESETS)
        default = next((p for p in presets
                        if list(PRESETS[p]["classes"]) == det.class_names), presets[0])
        st.session_state.setdefault("evaluation.preset", default)
        preset = st.selectbox("Synthetic preset", presets, key="evaluation.preset")
        c1, c2 = st.columns(2)
        n = c1.number_input("Images", 1, 2000, 32, key="evaluation.n")
        seed = c2.number_input("Seed", 0, 2**31 - 1, 10_000, key="evaluation.seed",
                               help="Training uses seed 0 and validation 10000 by default; "
                                    "pick another seed for images no run has seen.")
        return ("synthetic", preset, int(n), int(seed), size), None
    up = st.file_uploader("Dataset zip (COCO, VOC, YOLO or banana CSV)", type=["zip"],
                          key="evaluation.zip")
    fmt = st.selectbox("Format", ["auto", *FORMATS], key="evaluation.fmt")
    if up is None:
        sample_images.upload_hint("Upload a dataset .zip to evaluate on it.")
        return None, None
    path = job_queue.save_upload(up.getvalue())  # with the Training page's uploads, not in /tmp
    return ("zip", str(path), None if fmt == "auto" else fmt, size), up.name


def run_predictions(det, mkey: str, data_key: tuple, ds):
    n = len(ds)
    bar = st.progress(0.0, text=f"Running the model on {n} images ...")
    preds = []
    try:
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            preds += predict_chunk(mkey, data_key, start, stop, det, ds)
            bar.progress(stop / n, text=f"Running the model: {stop}/{n} images")
    finally:
        bar.empty()
    return preds


def image_errors(pred, threshold: float):
    """One image at ``threshold`` -> (kept detections mask, their true-positive flags, which
    objects were found)."""
    b, s, lab, gb, gl = pred
    keep = s >= threshold
    tp, found = match_detections(b[keep], s[keep], lab[keep], gb, gl, IOU)
    return keep, tp, found


def error_figure(ds, pred, i: int, names, errors, legend: bool):
    """One gallery image: true positives in class colours, false positives and misses marked."""
    b, s, lab, gb, _ = pred
    keep, tp, found = errors
    image = ds.sample(i)[0]
    bk, sk, lk = to_pixels(b[keep], image.size), s[keep], lab[keep]
    hover = [f"{names[c]} {v:.3f} ({'true positive' if t else 'FALSE POSITIVE'})"
             for c, v, t in zip(lk, sk, tp)]
    fig = figures.detections_figure(
        image, bk[tp], sk[tp], lk[tp], names, hover=np.asarray(hover, dtype=object)[tp],
        height=300, label_limit=12,
        title=f"image {i}: {int((~tp).sum())} false positive(s), {int((~found).sum())} "
              "miss(es)",
        extra_boxes=[("false positive", bk[~tp], "#FF1744", "dot"),
                     ("missed object", to_pixels(gb[~found], image.size), "#FF00FF", "dash")])
    fig.update_layout(showlegend=legend, title_font_size=13,
                      legend=dict(orientation="h", yanchor="top", y=-0.08, x=0))
    return fig


def gallery(ds, preds, names, threshold: float) -> None:
    """The images with the most errors (false positives + misses) at ``threshold``."""
    errors = [image_errors(p, threshold) for p in preds]
    counts = [(int((~tp).sum() + (~found).sum()), i) for i, (_, tp, found) in enumerate(errors)]
    worst = sorted((c for c in counts if c[0] > 0), key=lambda c: (-c[0], c[1]))[:GALLERY]
    if not worst:
        st.success(f"No errors at threshold {threshold:.2f}: every object found, no false box.")
        return
    cols = st.columns(3)
    for j, (_, i) in enumerate(worst):
        with cols[j % 3]:
            present.chart(error_figure(ds, preds[i], i, names, errors[i], legend=j == 0),
                            width="stretch", key=f"evaluation.gallery{j}")


def checked_dataset(data_key, zip_name):
    """The dataset, or None after an st.error saying why it cannot be used."""
    try:
        ds = dataset(data_key, zip_name)
    except (ValueError, RuntimeError) as e:  # AnnotationError, ConfigError, ...
        st.error(f"That dataset could not be used: {e}")
        return None
    return ds


def fits_model(ds, det) -> bool:
    """Whether the dataset suits the model (same classes, some images); st.error if not."""
    names = list(ds.class_names)
    if names != det.class_names:
        st.error(f"The model predicts {det.class_names} but the dataset has classes {names}; "
                 "pick a matching model or dataset (e.g. the synthetic preset with the same "
                 "classes).")
        return False
    if len(ds) == 0:
        st.error("The dataset has no images.")
        return False
    return True


def score_section(result, preds, det, model_label: str) -> int:
    """Metrics, the per-class table, the PR curves and the threshold sweep -> best-F1 index."""
    m = st.columns(4)
    m[0].metric("AP50", f"{result.ap50:.3f}", help="Mean over classes of AP at IoU 0.5")
    m[1].metric("mAP (0.50:0.95)", f"{result.map:.3f}")
    m[2].metric("Images", len(preds))
    m[3].metric("Objects", sum(len(p[4]) for p in preds))
    precision, recall, f1 = threshold_sweep(result)
    best = int(np.argmax(f1))
    c1, c2 = st.columns([1.25, 1])
    curves = {k: (*v, result.per_class[k]["ap50"]) for k, v in result.pr_curves.items()}
    present.chart(figures_metrics.pr_curves_figure(curves), c1, main=True, present_height=430,
                  key="evaluation.pr")
    present.chart(figures_metrics.threshold_sweep_figure(THRESHOLDS, precision, recall, f1, best),
                  c2, main=True, present_height=430, key="evaluation.sweep")
    st.caption(f"Model: {model_label}; data: {len(preds)} images at "
               f"{det.input_size}×{det.input_size}.")
    st.dataframe([{"class": k, "AP50": v["ap50"], "mAP": v["map"], "objects": v["num_gt"]}
                  for k, v in result.per_class.items()], hide_index=True, width="stretch")
    return best


def report(det, model_label: str, data_key, zip_name, right) -> None:
    """Scores, curves and the error gallery for the chosen model and held-out set."""
    with right:
        ds = checked_dataset(data_key, zip_name)
        if ds is None or not fits_model(ds, det):
            return
        mkey = model_picker.model_key(st.session_state["evaluation.model"])
        try:
            preds = run_predictions(det, mkey, data_key, ds)
        except ValueError as e:  # AnnotationError: an image inside is corrupt (found on decoding)
            reason = e.reason if isinstance(e, SSDError) else str(e)
            st.error(f"That dataset could not be used: {reason} Fix or remove that image (and "
                     "its annotations), then upload the zip again.")
            return
        names = list(ds.class_names)
        result = score(mkey, data_key, preds, tuple(names))
        best = score_section(result, preds, det, model_label)
    st.subheader("Most errors")
    thr = st.slider("Confidence threshold for the gallery", 0.01, 0.99, float(THRESHOLDS[best]),
                    0.01, key=f"evaluation.gallery_thr.{mkey}.{data_key}",
                    help="Starts at the best-F1 threshold of the sweep.")
    st.caption(f"At threshold {thr:.2f}: boxes in class colours are true positives, red dotted "
               "ones false positives, magenta dashed ones the objects the model missed.")
    gallery(ds, preds, names, thr)


choices = present.page_top("Evaluation", (
    "Average precision summarises a precision-recall curve: detections are ranked by score, "
    "each is a true positive when it overlaps a still-unmatched object of its class by IoU ≥ 0.5. "
    "**AP50** averages that over classes; **mAP** also averages over IoU thresholds 0.50-0.95 "
    "(COCO), so it rewards tight boxes."))

if present.on():  # the scores get the page's width; the choices wait in a fold
    left, right = choices.expander("Model and data"), st.container()
else:
    left, right = st.columns([1, 2.8])
with left:
    detector, label = model_picker.model_picker("evaluation.model")
    chosen_data, uploaded_name = settings_form(detector)
if chosen_data is not None:  # no st.stop(): under st.navigation it can drop the sidebar
    report(detector, label, chosen_data, uploaded_name, right)
