"""Teach, step 3 (See SSD on your data), from the pieces other pages use: the anchor fit of the
set's boxes (which objects no anchor reaches), one photo's labeled anchors (the book's greedy
and threshold matches), and the teach recipe's augmentation applied to one photo."""

from __future__ import annotations

import json

import numpy as np
import streamlit as st
import torch

from app import figures, figures_steps, figures_teach, present, sample_images
from app.views._anchor_fit import fit_arrays
from app.views._teach_store import image_index
from ssd_core.anchor_fit import dataset_labels
from ssd_core.anchors import TINYSSD_RATIOS, anchor_layout, layout_anchors
from ssd_core.data import resolve_augment
from ssd_core.errors import SSDError
from ssd_core.matching import match_anchors
from ssd_core.recipes import get_recipe
from ssd_core.userdata import ANNOTATIONS, UserDataset

IOU = 0.5


def teach_anchors() -> tuple[list, list, int]:
    """The teach recipe's anchor sizes, ratios and input size."""
    s = get_recipe("teach").config().flat()
    return s.get("anchor_sizes"), s.get("anchor_ratios") or TINYSSD_RATIOS, int(s["input_size"])


@st.cache_data(show_spinner="Reading the set's boxes ...", max_entries=16)
def set_labels(path: str, stamp: int, size: int) -> np.ndarray:
    """Targets ``(B, M, 5)`` of the set (``stamp``: its annotations' mtime, the cache key)."""
    return dataset_labels(UserDataset.open(path).to_dataset(size)).numpy()


def anchor_fit(ds, sizes, ratios, size) -> None:
    stamp = (ds.path / ANNOTATIONS).stat().st_mtime_ns
    labels = set_labels(str(ds.path), stamp, size)
    f = fit_arrays(labels, json.dumps(sizes), json.dumps(ratios), size, IOU)
    s = f["summary"]
    m = st.columns(3)
    m[0].metric("Objects", s["objects"])
    m[1].metric(f"No anchor with IoU ≥ {IOU:g}", s["unreached"])
    m[2].metric("Positive anchors per object", f"{s['positives_per_object']:.1f}")
    w, h = f["boxes"][:, 2] - f["boxes"][:, 0], f["boxes"][:, 3] - f["boxes"][:, 1]
    present.chart(figures_steps.anchor_fit_figure(w, h, f["best_iou"], IOU, f["shapes"]),
                    key="teach_fit", width="stretch")
    st.caption("Each dot is one of your boxes (width, height as fractions of the photo); "
               "the marks are the anchor shapes of the teach recipe's scales. A box far from "
               "every shape has no anchor that overlaps it well: it trains from a single "
               "poorly matched anchor.")


def labeled_anchors(ds, data, i: int, sizes, ratios, size) -> None:
    img, boxes, labels = data.sample(i)
    if len(boxes) == 0:
        st.info("This photo has no boxes: every anchor is background here.")
        return
    w, h = img.size
    norm = np.asarray(boxes, dtype=np.float32) / np.array([w, h, w, h], dtype=np.float32)
    target = torch.cat([torch.as_tensor(labels, dtype=torch.float32)[:, None],
                        torch.from_numpy(norm)], 1)[None]
    anchors = layout_anchors(anchor_layout(sizes=sizes, ratios=ratios, input_size=size))[0]
    match = match_anchors(anchors, target, IOU)
    gt, greedy = match.gt_index[0].numpy(), match.greedy[0].numpy()
    a = anchors.numpy()
    disp = img.copy()
    disp.thumbnail((640, 640))
    px = np.array([disp.width, disp.height] * 2, dtype=np.float64)
    positives = [(a[(gt == j) & greedy] * px, a[(gt == j) & ~greedy] * px)
                 for j in range(len(norm))]
    names = [f"{data.class_names[int(c)]} {j + 1}" for j, c in enumerate(labels)]
    present.chart(figures.labeling_figure(disp, norm * px, names, positives, height=440),
                    key="teach_labeled", width="stretch")
    st.caption(f"Photo {i + 1}: {int((gt >= 0).sum())} of {len(a)} anchors are labeled with "
               f"an object (solid: each box's greedy best anchor; dotted: IoU ≥ {IOU:g}); "
               "all others are background.")


def augmented(data, i: int, seeds: int = 4) -> None:
    img, boxes, labels = data.sample(i)
    aug = resolve_augment(get_recipe("teach").augment)
    cols = st.columns(seeds + 1)
    names = list(data.class_names)
    lab = [names[int(c)] for c in labels]
    cols[0].image(sample_images.png_bytes(figures_teach.thumbnail(img, boxes, lab, names, 240)),
                  caption="the photo", width="stretch")
    for k, col in enumerate(cols[1:]):
        a_img, a_boxes, a_labels = aug(img, boxes, labels, np.random.default_rng(k))
        col.image(sample_images.png_bytes(figures_teach.thumbnail(
            a_img, a_boxes, [names[int(c)] for c in a_labels], names, 240)),
            caption=f"augmented (draw {k + 1})", width="stretch")
    st.caption("The teach recipe's strong augmentation (flips, crops, zoom-out, colour, small "
               "rotations, blur): every epoch sees new versions of your few photos, with the "
               "boxes moved along.")


def see(ds) -> None:
    """Step 3."""
    if ds.problems():
        st.info("Label some boxes first (step 2): " + " ".join(ds.problems()))
        return
    sizes, ratios, size = teach_anchors()
    try:
        data = ds.to_dataset(size)
    except (SSDError, ValueError, OSError) as e:
        st.error(f"The set could not be read: {e}")
        return
    i = image_index(len(data))
    st.subheader("Anchor fit of your boxes")
    anchor_fit(ds, sizes, ratios, size)
    left, right = st.columns([1, 1])
    with left:
        st.subheader(f"Labeled anchors of photo {i + 1}")
        labeled_anchors(ds, data, i, sizes, ratios, size)
    with right:
        st.subheader("Augmentation")
        augmented(data, i)
