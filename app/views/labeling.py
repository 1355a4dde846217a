"""Labeling: how the book's assignment turns anchors into training targets."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app import figures, model_picker, present, sample_images, urlstate
from app.views._mining import mining_view, model_logits
from app.views._offset_sandbox import offset_sandbox
from ssd_core.anchors import layout_anchors, locate_anchor
from ssd_core.boxes import to_pixels
from ssd_core.detection import Detector
from ssd_core.matching import label_anchors
from ssd_core.mining import iou_negatives, mine

COLUMNS = ["class", "x1", "y1", "x2", "y2"]
LOSS_IOU = "overlap: max IoU with any object (near misses are hardest)"
LOSS_NET = "cross-entropy of the picked model"
MODEL_KEY, SIZE_KEY = "labeling.model", "labeling.size"


class Settings(NamedTuple):
    det: Detector  # the picked model: its anchors, its class names, its loss
    model_label: str  # the picker's label of it
    model_key: str  # model_picker.model_key of it (for cache keys)
    size: int
    iou: float
    mining: bool
    neg_ratio: int
    loss_kind: str


class Assignment(NamedTuple):
    """Per anchor ``(N,)``: matched object or -1, taken greedily?, class label (0 background);
    ``iou (N, M)`` and the offset targets ``(N, 4)``."""

    gt_index: np.ndarray
    greedy: np.ndarray
    cls_labels: torch.Tensor
    iou: np.ndarray
    offsets: np.ndarray


def default_table(picked, size: tuple[int, int], class_names: list[str]) -> pd.DataFrame:
    """The synthetic sample's own boxes (named by the sample's classes when the model has them,
    else as the model's first class), or one centred box for any other image."""
    if picked.boxes is not None:
        own = list(picked.class_names or [])

        def name(c: int) -> str:
            return own[c] if 0 <= c < len(own) and own[c] in class_names else class_names[0]

        rows = [[name(int(c)), *map(float, b)] for b, c in zip(picked.boxes, picked.labels)]
    else:
        w, h = size
        rows = [[class_names[0], 0.3 * w, 0.3 * h, 0.7 * w, 0.7 * h]]
    return pd.DataFrame(rows, columns=COLUMNS)


def _row_box(r, w: int, h: int) -> tuple[list[float] | None, str | None]:
    """One table row's box clipped to the image, normalized -> (box or None, problem)."""
    try:
        x1, y1, x2, y2 = (float(getattr(r, c)) for c in COLUMNS[1:])
    except (TypeError, ValueError):
        return None, "x1, y1, x2, y2 must all be numbers (pixels)"
    if not all(np.isfinite([x1, y1, x2, y2])):
        return None, "x1, y1, x2, y2 must all be filled in (pixels)"
    if not (x1 < x2 and y1 < y2):
        return None, "need x1 < x2 and y1 < y2 (top-left, then bottom-right)"
    x1, x2 = max(0.0, x1), min(float(w), x2)
    y1, y2 = max(0.0, y1), min(float(h), y2)
    if not (x1 < x2 and y1 < y2):
        return None, f"the box lies outside the {w}×{h} image"
    return [x1 / w, y1 / h, x2 / w, y2 / h], None


def table_to_labels(df: pd.DataFrame, size: tuple[int, int], class_names: list[str]):
    """Edited table (pixel corners) -> (labels (1, M, 5) normalized, kept row numbers, errors)."""
    w, h = size
    rows, kept, errors = [], [], []
    for i, r in enumerate(df.itertuples(index=False), start=1):
        values = [getattr(r, c) for c in COLUMNS[1:]]
        if r[0] is None and all(v is None or pd.isna(v) for v in values):
            continue  # an empty row being typed in
        if r[0] not in class_names:
            errors.append(f"row {i}: choose a class ({', '.join(class_names)})")
            continue
        box, problem = _row_box(r, w, h)
        if problem:
            errors.append(f"row {i}: {problem}")
            continue
        rows.append([class_names.index(r[0]), *box])
        kept.append(i)
    labels = torch.tensor(rows, dtype=torch.float32).reshape(1, -1, 5)
    return labels, kept, errors


def anchor_shape(info: dict, num_sizes: int) -> str:
    """"s2, r=1": which of its scale's sizes (s1, s2, ...) and which ratio an anchor has
    (``info`` from locate_anchor; the first ``num_sizes`` shapes of a cell are the sizes)."""
    size = info["shape"] + 1 if info["shape"] < num_sizes else 1
    return f"s{size}, r={info['ratio']:g}"


def follow_model(det: Detector) -> None:
    """Set the input size to the picked model's own when the model changes (and on a fresh
    session whose link names no size), so its anchors are the ones it was trained with."""
    seen = MODEL_KEY + ".seen"
    choice = st.session_state.get(MODEL_KEY)
    if st.session_state.get(seen) == choice:
        return
    fresh = seen not in st.session_state
    st.session_state[seen] = choice
    if det.input_size in urlstate.INPUT_SIZES and not (
            fresh and urlstate.param(SIZE_KEY) in st.query_params):
        st.session_state[SIZE_KEY] = det.input_size


def controls() -> tuple:
    """The left column -> (picked image, :class:`Settings`)."""
    det, model_label = model_picker.model_picker(MODEL_KEY)
    follow_model(det)
    st.caption(f"Its anchors and classes ({', '.join(det.class_names)}) are used below.")
    picked = sample_images.pick_image("labeling")
    if picked.png is None:
        st.info("Using a blank canvas until a readable image is chosen.")
        picked = sample_images.blank_canvas()
    size = urlstate.input_size_select(SIZE_KEY, label="Input size (sets the anchors)",
                                      help=f"The picked model's own: {det.input_size}. TinySSD "
                                           "needs a multiple of 32; the book uses 256.")
    thr = urlstate.bind(st.slider, "labeling.iou", 0.5, "IoU threshold", 0.05, 0.95, step=0.05,
                        valid=lambda v: 0.05 <= v <= 0.95,
                        help="Anchors with IoU ≥ this with an object become positives.")
    mining = urlstate.bind(st.toggle, "labeling.hnm", False, "Hard negative mining",
                           help="Keep only the hardest negatives: neg_ratio per positive.")
    ratio, loss_kind = 3, LOSS_IOU
    if mining:
        ratio = urlstate.bind(st.slider, "labeling.ratio", 3,
                              "neg_ratio (negatives kept per positive)", 1, 10,
                              valid=lambda v: 1 <= v <= 10)
        loss_kind = st.radio("Stand-in per-anchor loss for ranking negatives",
                             [LOSS_IOU, LOSS_NET], key="labeling.loss")
    key = model_picker.model_key(model_picker.loaded_choice(MODEL_KEY, det))
    return picked, Settings(det, model_label, key, size, thr, mining, ratio, loss_kind)


def ground_truth(picked, image, class_names: list[str]) -> tuple[torch.Tensor, list[str]]:
    """The editable ground-truth table (classes: the picked model's ``class_names``) ->
    (labels (1, M, 5) normalized, the objects' names)."""
    w, h = image.size
    st.subheader("Ground truth (pixels; edit, add or delete rows)")
    table = st.data_editor(
        default_table(picked, (w, h), class_names),
        key=f"labeling.gt.{picked.desc}.{w}x{h}.{'|'.join(class_names)}",
        num_rows="dynamic", width="stretch", hide_index=True,
        column_config={
            "class": st.column_config.SelectboxColumn("class", options=class_names,
                                                      required=True),
            **{c: st.column_config.NumberColumn(c, format="%.1f", step=1.0)
               for c in COLUMNS[1:]},
        },
    )
    labels, _, errors = table_to_labels(table, (w, h), class_names)
    for msg in errors:
        st.error(f"Ground-truth table, {msg}. That row is ignored until it is fixed.")
    names = [f"{j + 1}. {class_names[int(c)]}" for j, c in enumerate(labels[0, :, 0].tolist())]
    return labels, names


def assign(anchors: torch.Tensor, labels: torch.Tensor, thr: float) -> Assignment:
    """The book's assignment of ``anchors (N, 4)`` to the ground truth at IoU ``thr``."""
    lab = label_anchors(anchors, labels, thr)
    return Assignment(lab.gt_index[0].numpy(), lab.greedy[0].numpy(), lab.cls_labels,
                      lab.iou[0].numpy(), lab.offsets[0].numpy())


def kept_negatives(a: Assignment, settings: Settings, png: bytes) -> np.ndarray | None:
    """The negatives hard negative mining keeps ``(N,)`` bool, ranked by the stand-in loss."""
    if not settings.mining:
        return None
    if settings.loss_kind == LOSS_IOU:
        kept = iou_negatives(torch.from_numpy(a.iou)[None], a.cls_labels, settings.neg_ratio)
    else:
        logits = torch.from_numpy(model_logits(settings.model_key, hashlib.sha1(png).hexdigest(),
                                               settings.det, png, settings.size))[None]
        kept = mine(logits, a.cls_labels, settings.neg_ratio).kept
    return kept[0].numpy()


def count_metrics(a: Assignment, kept, settings: Settings) -> None:
    positive = a.gt_index >= 0
    n_pos = int(positive.sum())
    m = st.columns(4 if settings.mining else 3)
    m[0].metric("Positives", n_pos, border=True,
                help="Anchors labelled with an object (class + offsets).")
    m[1].metric("Greedy best anchors", int((positive & a.greedy).sum()), border=True,
                help="One per object: taken first, whatever its IoU.")
    m[2].metric("Negatives (background)", len(positive) - n_pos, border=True)
    if settings.mining:
        m[3].metric("Kept negatives", int(kept.sum()), border=True,
                    help=f"At most neg_ratio × positives = {settings.neg_ratio} × {n_pos}.")


def picture(image, desc, anchors_np, labels, names, a: Assignment, kept, settings) -> None:
    """Metrics and the image with the objects, their positive anchors and kept negatives."""
    disp = image.copy()
    disp.thumbnail((768, 768))
    px = to_pixels(anchors_np, disp.size)
    positive = a.gt_index >= 0
    positives = [(px[positive & a.greedy & (a.gt_index == j)],
                  px[positive & ~a.greedy & (a.gt_index == j)])
                 for j in range(len(names))]
    negatives = px[kept] if kept is not None else None
    fig = figures.labeling_figure(disp, to_pixels(labels[0, :, 1:].numpy(), disp.size), names,
                                  positives,
                                  negatives, height=600)
    present.chart(fig, main=True, key="labeling_chart")
    count_metrics(a, kept, settings)
    ranked = "max IoU" if settings.loss_kind == LOSS_IOU else "the picked model"
    st.caption(f"Image: {desc}. White: the ground truth (its name on a tag); thick dashed pink: "
               f"each object's greedy best anchor; dotted blue: anchors with IoU ≥ "
               f"{settings.iou:g}." +
               (f" Grey: the negatives hard negative mining keeps, ranked by {ranked}'s loss."
                if settings.mining else ""))
    if settings.mining:
        st.info(f"Stand-in loss: {settings.loss_kind}. In training, mining ranks negatives by "
                "the class loss of the model being trained, as it is at that step; here a "
                "finished model (or max IoU) stands in for it.", icon=":material/info:")


def heatmaps(layout, a: Assignment, names) -> None:
    """Per scale, the best IoU of each cell's anchors with one chosen object."""
    st.subheader("IoU with one object, per scale")
    obj = st.selectbox("Object", range(len(names)), format_func=lambda j: names[j],
                       key="labeling.obj")
    grids, titles = [], []
    for s in layout:
        block = a.iou[s.start:s.stop, obj].reshape(s.height, s.width, s.per_pixel).max(axis=2)
        grids.append(block)
        titles.append(f"scale {s.scale + 1} ({s.height}×{s.width}): max {block.max():.2f}")
    present.chart(figures.iou_heatmaps_figure(grids, titles), key="iou_heatmaps",
                    width="stretch")
    st.caption("Each cell shows the best IoU among its anchors with the chosen object: small "
               "objects light up the fine scales, large ones the coarse scales.")


def positives_table(layout, a: Assignment, names) -> None:
    st.subheader("Positive anchors and their targets")
    st.latex(r"\left(\frac{\frac{x_b - x_a}{w_a} - \mu_x}{\sigma_x},\ "
             r"\frac{\frac{y_b - y_a}{h_a} - \mu_y}{\sigma_y},\ "
             r"\frac{\log\frac{w_b}{w_a} - \mu_w}{\sigma_w},\ "
             r"\frac{\log\frac{h_b}{h_a} - \mu_h}{\sigma_h}\right),\quad "
             r"\mu = 0,\ \sigma_x = \sigma_y = 0.1,\ \sigma_w = \sigma_h = 0.2")
    idx = np.flatnonzero(a.gt_index >= 0)
    if not len(idx):
        st.info("No positive anchors: add a ground-truth box.")
        return
    rows = []
    for i in idx:
        info, j, t = locate_anchor(layout, i), int(a.gt_index[i]), a.offsets[i]
        rows.append({
            "anchor": int(i), "scale": info["scale"] + 1,
            "cell (row, col)": f"({info['row']}, {info['col']})",
            "shape": anchor_shape(info, len(layout[info["scale"]].sizes)), "object": names[j],
            "IoU": float(a.iou[i, j]), "match": "greedy" if a.greedy[i] else "threshold",
            "t_x": t[0], "t_y": t[1], "t_w": t[2], "t_h": t[3],
        })
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("IoU", "t_x", "t_y", "t_w", "t_h")})


present.page_top("Labeling", (
    "Training needs a target for each of the 5444 anchors. The book's rule: each object first "
    "takes its best free anchor (greedy, highest IoU first), then every other anchor whose IoU "
    "with some object reaches the threshold takes that object. All the rest are background "
    "(negatives)."))
left, right = present.figure_first((1, 2.3))
with left:
    picked, settings = controls()
image = picked.image
labels, names = ground_truth(picked, image, settings.det.class_names)
layout = settings.det.model.layout(input_size=settings.size)  # the picked model's anchors
anchors = layout_anchors(layout)[0]
assignment = assign(anchors, labels, settings.iou)
kept = kept_negatives(assignment, settings, picked.png)
with right:
    if not names:
        st.warning("No valid ground-truth box: every anchor is background. Add a row below.")
    picture(image, picked.desc, anchors.numpy(), labels, names, assignment, kept, settings)
if names:
    heatmaps(layout, assignment, names)
offset_sandbox(layout, image)  # drag an anchor's offsets / a box (its own fragment)
mining_view(picked, labels, settings.iou, settings.det,  # the 3:1 rule with the picked model
            settings.model_label, settings.model_key)
positives_table(layout, assignment, names)
