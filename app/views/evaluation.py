"""Evaluation: how good is a model on a held-out set? AP50 and mAP, precision-recall curves,
a confidence-threshold sweep and the images it gets most wrong.

Predictions are made in cached chunks (so a progress bar can move and a rerun is instant);
scores come from ``ssd_core.evaluate`` (the same code as training's validation).
"""

import hashlib

import figures
import numpy as np
import state
import streamlit as st
import torch

from ssd_core.data import FORMATS, PRESETS
from ssd_core.evaluate import evaluate_detections, match_detections
from ssd_core.train import predict_batch

CHUNK = 16
IOU = 0.5
GALLERY = 6
THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


@st.cache_resource(show_spinner="Preparing the dataset ...", max_entries=4)
def dataset(data_key: tuple):
    """The held-out dataset for a settings tuple (synthetic or an uploaded zip's path)."""
    from ssd_core.data import SyntheticDetection, load_dataset

    kind, *rest = data_key
    if kind == "synthetic":
        preset, n, seed, size = rest
        return SyntheticDetection(n, seed=seed, image_size=size, preset=preset)
    path, fmt, size = rest
    return load_dataset(path, fmt=fmt, image_size=size)


@st.cache_data(show_spinner=False, max_entries=256)
def predict_chunk(model_key: str, data_key: tuple, start: int, stop: int, _det, _ds):
    """Images start..stop-1 -> per image (det boxes (K,4), scores (K,), labels (K,), gt boxes
    (M,4), gt labels (M,)), numpy, normalized corners (the book's multibox_detection rows)."""
    items = [_ds[i] for i in range(start, stop)]
    X = torch.stack([x for x, _ in items]).to(_det.device)
    if X.shape[-1] != _det.input_size:
        X = torch.nn.functional.interpolate(X, size=(_det.input_size,) * 2, mode="bilinear",
                                            align_corners=False)
    rows = predict_batch(_det.model, X).cpu()
    out = []
    for r, (_, target) in zip(rows, items):
        r = r[r[:, 0] >= 0]
        t = target[target[:, 0] >= 0]
        out.append((r[:, 2:6].numpy(), r[:, 1].numpy(), r[:, 0].long().numpy(),
                    t[:, 1:5].numpy(), t[:, 0].long().numpy()))
    return out


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


def settings_form():
    """-> data_key tuple or None (with a message) for the chosen held-out set."""
    source = st.radio("Held-out data", ["Synthetic", "Upload a dataset (.zip)"], horizontal=True,
                      key="evaluation.data")
    size = DET.input_size
    if source == "Synthetic":
        presets = list(PRESETS)
        default = next((p for p in presets
                        if list(PRESETS[p]["classes"]) == DET.class_names), presets[0])
        st.session_state.setdefault("evaluation.preset", default)
        preset = st.selectbox("Synthetic preset", presets, key="evaluation.preset")
        c1, c2 = st.columns(2)
        n = c1.number_input("Images", 1, 2000, 32, key="evaluation.n")
        seed = c2.number_input("Seed", 0, 2**31 - 1, 10_000, key="evaluation.seed",
                               help="Training uses seed 0 and validation 10000 by default; "
                                    "pick another seed for images no run has seen.")
        return ("synthetic", preset, int(n), int(seed), size)
    up = st.file_uploader("Dataset zip (COCO, VOC, YOLO or banana CSV)", type=["zip"],
                          key="evaluation.zip")
    fmt = st.selectbox("Format", ["auto", *FORMATS], key="evaluation.fmt")
    if up is None:
        state.upload_hint("Upload a dataset .zip to evaluate on it.")
        return None
    data = up.getvalue()
    # Kept with the Training page's uploads (same name for the same zip), not in the shared /tmp.
    path = state.runs_dir() / "_uploads" / f"{hashlib.sha1(data).hexdigest()[:16]}.zip"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return ("zip", str(path), None if fmt == "auto" else fmt, size)


def run_predictions(mkey: str, data_key: tuple, ds):
    n = len(ds)
    bar = st.progress(0.0, text=f"Running the model on {n} images ...")
    preds = []
    try:
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            preds += predict_chunk(mkey, data_key, start, stop, DET, ds)
            bar.progress(stop / n, text=f"Running the model: {stop}/{n} images")
    finally:
        bar.empty()
    return preds


def gallery(ds, preds, names, threshold: float) -> None:
    """The images with the most errors at ``threshold``: false positives and misses marked."""
    rows = []
    for i, (b, s, lab, gb, gl) in enumerate(preds):
        keep = s >= threshold
        tp, found = match_detections(b[keep], s[keep], lab[keep], gb, gl, IOU)
        rows.append((int((~tp).sum() + (~found).sum()), i, keep, tp, found))
    rows.sort(key=lambda r: (-r[0], r[1]))
    worst = [r for r in rows if r[0] > 0][:GALLERY]
    if not worst:
        st.success(f"No errors at threshold {threshold:.2f}: every object found, no false box.")
        return
    cols = st.columns(3)
    for j, (_, i, keep, tp, found) in enumerate(worst):
        b, s, lab, gb, gl = preds[i]
        image = ds.sample(i)[0]
        w, h = image.size
        px = np.array([w, h, w, h])
        bk, sk, lk = b[keep] * px, s[keep], lab[keep]
        hover = [f"{names[c]} {v:.3f} ({'true positive' if t else 'FALSE POSITIVE'})"
                 for c, v, t in zip(lk, sk, tp)]
        fig = figures.detections_figure(
            image, bk[tp], sk[tp], lk[tp], names, hover=np.asarray(hover, dtype=object)[tp],
            height=300, label_limit=12,
            title=f"image {i}: {int((~tp).sum())} false positive(s), {int((~found).sum())} "
                  "miss(es)",
            extra_boxes=[("false positive", bk[~tp], "#FF1744", "dot"),
                         ("missed object", gb[~found] * px, "#FF00FF", "dash")])
        fig.update_layout(showlegend=j == 0, title_font_size=13,
                          legend=dict(orientation="h", yanchor="top", y=-0.08, x=0))
        with cols[j % 3]:
            st.plotly_chart(fig, width="stretch", key=f"evaluation.gallery{j}")


def report(data_key) -> None:
    """Scores, curves and the error gallery for the chosen model and held-out set."""
    if data_key is None:
        return
    try:
        ds = dataset(data_key)
    except (ValueError, RuntimeError) as e:  # AnnotationError, ConfigError, ...
        up, msg = st.session_state.get("evaluation.zip"), str(e)
        if data_key[0] == "zip" and up is not None:  # the user's file, not the saved copy
            msg = msg.replace(data_key[1].rsplit("/", 1)[-1], up.name)
        RIGHT.error(f"That dataset could not be used: {msg}")
        return
    names = list(ds.class_names)
    if names != DET.class_names:
        RIGHT.error(f"The model predicts {DET.class_names} but the dataset has classes {names}; "
                    "pick a matching model or dataset (e.g. the synthetic preset with the same "
                    "classes).")
        return
    if len(ds) == 0:
        RIGHT.error("The dataset has no images.")
        return

    mkey = state.model_key(st.session_state["evaluation.model"])
    with RIGHT:
        try:
            preds = run_predictions(mkey, data_key, ds)
        except ValueError as e:  # AnnotationError: an image inside is corrupt (found on decoding)
            reason = str(e).split(" Accepted:")[0]
            st.error(f"That dataset could not be used: {reason} Fix or remove that image (and "
                     "its annotations), then upload the zip again.")
            return
        result = score(mkey, data_key, preds, tuple(names))
        n_obj = sum(len(p[4]) for p in preds)
        m = st.columns(4)
        m[0].metric("AP50", f"{result.ap50:.3f}", help="Mean over classes of AP at IoU 0.5")
        m[1].metric("mAP (0.50:0.95)", f"{result.map:.3f}")
        m[2].metric("Images", len(preds))
        m[3].metric("Objects", n_obj)
        st.caption(f"Model: {MODEL_LABEL}; data: {len(preds)} images at "
                   f"{DET.input_size}×{DET.input_size}.")
        st.dataframe([{"class": k, "AP50": v["ap50"], "mAP": v["map"], "objects": v["num_gt"]}
                      for k, v in result.per_class.items()], hide_index=True, width="stretch")

        precision, recall, f1 = threshold_sweep(result)
        best = int(np.argmax(f1))
        c1, c2 = st.columns(2)
        curves = {k: (*v, result.per_class[k]["ap50"]) for k, v in result.pr_curves.items()}
        c1.plotly_chart(figures.pr_curves_figure(curves), width="stretch", key="evaluation.pr")
        c2.plotly_chart(figures.threshold_sweep_figure(THRESHOLDS, precision, recall, f1, best),
                        width="stretch", key="evaluation.sweep")

    st.subheader("Most errors")
    thr = st.slider("Confidence threshold for the gallery", 0.01, 0.99, float(THRESHOLDS[best]),
                    0.01, key=f"evaluation.gallery_thr.{mkey}.{data_key}",
                    help="Starts at the best-F1 threshold of the sweep.")
    st.caption(f"At threshold {thr:.2f}: boxes in class colours are true positives, red dotted "
               "ones false positives, magenta dashed ones the objects the model missed.")
    gallery(ds, preds, names, thr)


st.title("Evaluation")
st.markdown(
    "Average precision summarises a precision-recall curve: detections are ranked by score, "
    "each is a true positive when it overlaps a still-unmatched object of its class by IoU ≥ 0.5. "
    "**AP50** averages that over classes; **mAP** also averages over IoU thresholds 0.50-0.95 "
    "(COCO), so it rewards tight boxes.")

left, RIGHT = st.columns([1, 2.8])
with left:
    DET, MODEL_LABEL = state.model_picker("evaluation.model")
    data_key = settings_form()

report(data_key)  # no st.stop(): under st.navigation it can drop the sidebar
