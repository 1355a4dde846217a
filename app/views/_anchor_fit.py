"""Anchor fit of a dataset (Anchors page): every object's width and height against each scale's
anchor shapes, each object's best anchor IoU, the objects no anchor reaches at the threshold,
and sizes spread over the data's object sizes by the book's rule (ssd_core.anchor_fit), for the
book's sizes, the picked model's (the shipped one, or any run's: a taught model's own anchors at
its own input size), this page's and the suggestion side by side. The data: a synthetic preset,
an uploaded dataset zip, or a Teach photo set from the runs folder.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import streamlit as st
import torch

from app import figures_steps, job_queue, model_picker, present, sample_images
from ssd_core.anchor_fit import (
    anchor_shapes,
    dataset_labels,
    fit_anchor_set,
    fit_summary,
    object_sizes,
    object_wh,
    suggest_sizes,
)
from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES
from ssd_core.data import PRESETS, SyntheticDetection, load_dataset
from ssd_core.errors import SSDError
from ssd_core.userdata import UserDataset, list_datasets

K = "anchors.fit_"
MODEL_KEY = "anchors.model"  # the page's picker (the sidebar names its choice)
TEACH_SET_KEY = "teach.set"  # the Teach page's chosen set: the first one offered here
SYNTHETIC, UPLOAD, TEACH = "Synthetic preset", "Upload a dataset (.zip)", "A Teach photo set"


@st.cache_data(show_spinner="Reading the objects of the synthetic images ...", max_entries=8)
def synthetic_labels(preset: str, n: int) -> np.ndarray:
    """Targets ``(n, M, 5)`` of the synthetic training set (seed 0) of ``preset``."""
    return dataset_labels(SyntheticDetection(n, seed=0, preset=preset)).numpy()


@st.cache_data(show_spinner="Reading the dataset's annotations ...", max_entries=4)
def uploaded_labels(digest: str, _data: bytes, name: str) -> np.ndarray:
    """Targets ``(B, M, 5)`` of an uploaded dataset zip (annotations only, no image decoded)."""
    return dataset_labels(load_dataset(_data, name=name)).numpy()


@st.cache_data(show_spinner="Reading the set's boxes ...", max_entries=8)
def teach_set_labels(digest: str, _ds: UserDataset) -> np.ndarray:
    """Targets ``(B, M, 5)`` of a Teach photo set (``digest``: of its boxes, the cache key)."""
    return dataset_labels(_ds.to_dataset()).numpy()


def set_digest(ds: UserDataset) -> str:
    """A digest of a set's photos, sizes, boxes and classes: changes with any edit."""
    content = (str(ds.path), ds.class_names,
               [(im.id, im.width, im.height, im.boxes) for im in ds.images])
    return hashlib.sha1(repr(content).encode()).hexdigest()


@st.cache_data(show_spinner="Matching every object to the anchors ...", max_entries=32)
def fit_arrays(labels: np.ndarray, sizes_json: str, ratios_json: str, input_size: int,
               threshold: float) -> dict:
    """Per-object arrays of :func:`anchor_fit` and its summary for one anchor set."""
    layout, fit = fit_anchor_set(torch.from_numpy(labels), json.loads(sizes_json),
                                 json.loads(ratios_json), input_size, threshold)
    shapes = [(s, w.numpy(), h.numpy()) for s, w, h in anchor_shapes(layout)]
    w, h = object_wh(fit.boxes)
    return {"boxes": fit.boxes.numpy(), "widths": w.numpy(), "heights": h.numpy(),
            "sizes": object_sizes(fit.boxes).numpy(), "best_iou": fit.best_iou.numpy(),
            "positives": fit.positives.numpy(), "summary": fit_summary(fit), "shapes": shapes}


def _teach_set_choice(sets: list[UserDataset]) -> tuple[np.ndarray | None, str]:
    names = [d.name for d in sets]
    if st.session_state.get(K + "set") not in names:  # the Teach page's set, else the newest
        chosen = st.session_state.get(TEACH_SET_KEY)
        st.session_state[K + "set"] = chosen if chosen in names else names[0]
    name = st.selectbox("Photo set", names, key=K + "set", format_func=lambda n: next(
        f"{n} ({len(d)} photos; boxes: " + (", ".join(f"{c} {k}" for c, k in d.counts().items())
                                            or "none") + ")" for d in sets if d.name == n))
    ds = next(d for d in sets if d.name == name)
    if ds.problems():
        st.info(f"The set '{ds.name}' has no boxes to fit yet: " + " ".join(ds.problems())
                + " Label its photos on the Teach page.")
        return None, ""
    try:
        return teach_set_labels(set_digest(ds), ds), f"the Teach set '{ds.name}'"
    except (SSDError, ValueError, OSError) as e:
        st.error(f"The set '{ds.name}' could not be read: {e}")
        return None, ""


def dataset_choice() -> tuple[np.ndarray | None, str]:
    """The dataset controls -> (targets (B, M, 5) or None, a description). A Teach photo set
    of the runs folder is offered when there is one."""
    try:
        sets = list_datasets(job_queue.runs_dir())
    except OSError:
        sets = []
    sources = [SYNTHETIC, UPLOAD] + ([TEACH] if sets else [])
    if st.session_state.get(K + "source") not in sources:
        st.session_state[K + "source"] = SYNTHETIC
    source = st.radio("Dataset", sources, horizontal=True, key=K + "source")
    if source == TEACH:
        return _teach_set_choice(sets)
    if source == SYNTHETIC:
        c1, c2 = st.columns(2)
        preset = c1.selectbox("Preset", list(PRESETS), key=K + "preset")
        n = c2.slider("Images", 20, 500, 200, step=10, key=K + "n")
        return synthetic_labels(preset, int(n)), f"synthetic preset '{preset}', {n} images"
    up = st.file_uploader("Dataset zip (COCO, VOC, YOLO or banana CSV)", type=["zip"],
                          key=K + "zip")
    if up is None:
        sample_images.upload_hint("Upload a dataset .zip to see how its objects fit the anchors.")
        return None, ""
    data = up.getvalue()
    try:
        return uploaded_labels(hashlib.sha1(data).hexdigest(), data, up.name), up.name
    except ValueError as e:  # AnnotationError: not a dataset, a bad annotation ...
        st.error(f"`{up.name}` could not be read as a dataset: {e}")
        return None, ""


def model_set_name(choice: str, label: str, model, input_size: int, page_size: int) -> str:
    """The comparison's name for the picked model's anchors."""
    span = f"{model.sizes[0][0]:g} → {model.sizes[-1][0]:g}"
    at = f", at its {input_size} px" if input_size != page_size else ""
    if choice == model_picker.SHIPPED:
        return f"shipped model ({span}{at})"
    return f"picked model: {label} ({span}{at})"


def anchor_sets(labels, page_specs, low: float, high: float, input_size: int,
                picked=None) -> dict:
    """Name -> (sizes, ratios, input size): the book's, the picked model's (``picked``:
    ``(choice, label, Detector)``; its own anchors at its own input size), this page's and the
    suggestion (the last three at the page's ``input_size``)."""
    sets = {"book (0.2 → 0.88)": (TINYSSD_SIZES, TINYSSD_RATIOS, input_size)}
    if picked is not None:
        choice, label, det = picked
        sizes = [list(map(float, s)) for s in det.model.sizes]
        ratios = [list(map(float, r)) for r in det.model.ratios]
        sets[model_set_name(choice, label, det.model, det.input_size, input_size)] = (
            sizes, ratios, det.input_size)
    page = ([list(s) for s, _ in page_specs], [list(r) for _, r in page_specs])
    if page != (TINYSSD_SIZES, TINYSSD_RATIOS):
        sets["this page's sizes and ratios"] = (*page, input_size)
    boxes = torch.from_numpy(labels[labels[..., 0] >= 0][:, 1:])
    suggested = suggest_sizes(boxes, low=low, high=high)
    sets[f"suggested ({suggested[0][0]:g} → {suggested[-1][0]:g})"] = (
        suggested, TINYSSD_RATIOS, input_size)
    return sets


def comparison_table(fits: dict, sets: dict) -> None:
    rows = []
    for name, f in fits.items():
        s = f["summary"]
        rows.append({"anchor set": name, "s_k (first size per scale)":
                     ", ".join(f"{v[0]:g}" for v in sets[name][0]),
                     "input px": sets[name][2],
                     "objects": s["objects"], "best IoU < threshold": s["unreached"],
                     "share": f"{100 * s['unreached_share']:.1f}%",
                     "mean best IoU": s["mean_best_iou"],
                     "positive anchors per object": s["positives_per_object"]})
    st.dataframe(rows, hide_index=True, width="stretch", key=K + "table",
                 column_config={"mean best IoU": st.column_config.NumberColumn(format="%.3f"),
                                "positive anchors per object":
                                    st.column_config.NumberColumn(format="%.1f")})


def _explain(fits: dict, threshold: float) -> None:
    names = list(fits)
    book, others = fits[names[0]]["summary"], names[1:]
    text = (f"With the book's sizes, **{book['unreached']} of {book['objects']} objects "
            f"({100 * book['unreached_share']:.1f}%)** have no anchor with IoU ≥ {threshold:g}. "
            "They are not unlabelled: the book's greedy step first gives every object its best "
            "free anchor, whatever its IoU, so each of them trains from exactly **one** positive "
            f"anchor with IoU < {threshold:g} (large offsets to learn), while a well-fitted object "
            "gets many. ")
    text += " ".join(f"{n}: {fits[n]['summary']['unreached']} such objects." for n in others)
    f = fits[names[0]]
    sizes = f["sizes"]
    low = f["best_iou"] < threshold
    if low.any() and np.median(sizes[low]) < np.median(sizes):
        text += (f" Those objects are small (median size {np.median(sizes[low]):.3f} against "
                 f"{np.median(sizes):.3f} for all): the book's smallest anchor, 0.2, is too "
                 "large for them, which is why the shipped model starts its sizes at 0.1.")
    st.markdown(text)


def anchor_fit_view(input_size: int, page_specs) -> None:
    """The whole view; ``page_specs``: this page's per-scale ``(sizes, ratios)``."""
    st.subheader("Anchor fit of a dataset")
    st.markdown("Do a dataset's objects have anchors of their size? Each object's best IoU "
                "with any anchor decides whether the threshold step can label anchors for it.")
    if not st.toggle("Fit a dataset to the anchors (the book's sizes, a model's, a "
                     "suggestion)", key=K + "on"):
        return
    det, model_label = model_picker.model_picker(MODEL_KEY)
    st.caption(f"The picked model's anchors (classes: {', '.join(det.class_names)}) are one of "
               "the sets compared below. A model you taught on the Teach page is listed here.")
    labels, desc = dataset_choice()
    if labels is None:
        return
    if not (labels[..., 0] >= 0).any():
        st.info("This dataset has no objects.")
        return
    c1, c2 = st.columns(2)
    threshold = c1.slider("IoU threshold", 0.1, 0.9, 0.5, 0.05, key=K + "iou")
    low, high = c2.slider("Suggest sizes from … to … (object size quantiles)", 0.0, 1.0,
                          (0.0, 1.0), 0.01, key=K + "quantiles",
                          help="0 and 1: from the smallest to the largest object, as the book "
                               "spreads s_k; the second size of each scale is sqrt(s_k s_k+1).")
    picked = (model_picker.loaded_choice(MODEL_KEY, det), model_label, det)
    sets = anchor_sets(labels, page_specs, low, high, input_size, picked)
    fits = {name: fit_arrays(labels, json.dumps(s), json.dumps(r), size, threshold)
            for name, (s, r, size) in sets.items()}
    comparison_table(fits, sets)
    _explain(fits, threshold)
    if st.session_state.get(K + "shown") not in fits:  # another model: another set's name
        st.session_state[K + "shown"] = next(iter(fits))
    shown = st.radio("Anchor set in the pictures", list(fits), horizontal=True,
                     key=K + "shown")
    f = fits[shown]
    s = f["summary"]
    m = st.columns(4)
    m[0].metric("Objects", s["objects"])
    m[1].metric("Best IoU < threshold", s["unreached"])
    m[2].metric("Positive anchors", s["positives"], help="As multibox_target labels them.")
    m[3].metric("Object sizes √(wh)", "{:.3f} – {:.3f}".format(
        *[float(v) for v in np.quantile(f["sizes"], [0, 1])]))
    present.chart(figures_steps.anchor_fit_figure(f["widths"], f["heights"], f["best_iou"],
                                                  threshold, f["shapes"]), key=K + "scatter",
                  width="stretch")
    present.chart(figures_steps.best_iou_histogram(
        {n: v["best_iou"] for n, v in fits.items()}, threshold), key=K + "hist",
        width="stretch")
    st.caption(f"{desc}, input {sets[shown][2]}×{sets[shown][2]} (the picked model's anchors "
               "are laid out at its own input size, every other set at this page's). Sizes are "
               "fractions of the image side; an anchor of size s and ratio r is s·√r wide and "
               "s/√r high.")
