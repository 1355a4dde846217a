"""Labeling: how the book's assignment turns anchors into training targets."""

from __future__ import annotations

import figures
import numpy as np
import pandas as pd
import state
import streamlit as st
import torch
import torch.nn.functional as F

from ssd_core.matching import hard_negative_mask, match_anchors, multibox_target

COLUMNS = ["class", "x1", "y1", "x2", "y2"]
LOSS_IOU = "overlap: max IoU with any object (near misses are hardest)"
LOSS_NET = "cross-entropy of an untrained TinySSD (random weights, seed 0)"


def default_table(extra: dict, size: tuple[int, int], class_names: list[str]) -> pd.DataFrame:
    """The synthetic sample's own boxes, or one centred box for any other image."""
    if "boxes" in extra:
        rows = [[class_names[int(c)], *map(float, b)] for b, c in
                zip(extra["boxes"], extra["labels"])]
    else:
        w, h = size
        rows = [[class_names[0], 0.3 * w, 0.3 * h, 0.7 * w, 0.7 * h]]
    return pd.DataFrame(rows, columns=COLUMNS)


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
        try:
            x1, y1, x2, y2 = (float(v) for v in values)
        except (TypeError, ValueError):
            errors.append(f"row {i}: x1, y1, x2, y2 must all be numbers (pixels)")
            continue
        if not all(np.isfinite([x1, y1, x2, y2])):
            errors.append(f"row {i}: x1, y1, x2, y2 must all be filled in (pixels)")
            continue
        if not (x1 < x2 and y1 < y2):
            errors.append(f"row {i}: need x1 < x2 and y1 < y2 (top-left, then bottom-right)")
            continue
        x1, x2 = max(0.0, x1), min(float(w), x2)
        y1, y2 = max(0.0, y1), min(float(h), y2)
        if not (x1 < x2 and y1 < y2):
            errors.append(f"row {i}: the box lies outside the {w}×{h} image")
            continue
        rows.append([class_names.index(r[0]), x1 / w, y1 / h, x2 / w, y2 / h])
        kept.append(i)
    labels = torch.tensor(rows, dtype=torch.float32).reshape(1, -1, 5)
    return labels, kept, errors


@st.cache_data(show_spinner="Running the untrained TinySSD once ...", max_entries=8)
def untrained_logits(png: bytes, input_size: int) -> np.ndarray:
    """Class logits ``(N, C+1)`` of the untrained seeded TinySSD for one image (cached: the
    sliders on this page never rerun the network)."""
    from ssd_core.images import image_to_tensor

    model, _, _ = state.load_model(None)
    x = image_to_tensor(state.open_png(png).convert("RGB"), input_size)[None]
    with torch.no_grad():
        _, cls_preds, _ = model(x)
    return cls_preds[0].numpy()


def anchor_shape(k: int, a: int) -> str:
    sizes, ratios = ["s1", "s2"], ["r=2", "r=0.5"]
    return f"{sizes[k]}, r=1" if k < 2 else f"s1, {ratios[k - 2]}" if a == 4 else f"#{k}"


st.title("Labeling")
st.markdown(
    "Training needs a target for each of the 5444 anchors. The book's rule: each object first "
    "takes its best free anchor (greedy, highest IoU first), then every other anchor whose IoU "
    "with some object reaches the threshold takes that object. All the rest are background "
    "(negatives)."
)

left, right = st.columns([1, 2.3])
with left:
    image, desc, extra = state.image_picker(
        "labeling", sources=["Synthetic sample", "Shipped sample", "Upload", "Blank canvas"])
    if image is None:
        st.info("Using a blank canvas until a readable image is chosen.")
        image, desc, extra = state.gradient_image(), "gradient", {}
    size = state.input_size_select("labeling.size", label="Input size (sets the anchors)")
    state.qp_init("labeling.iou", 0.5, float, lambda v: 0.05 <= v <= 0.95)
    thr = st.slider("IoU threshold", 0.05, 0.95, step=0.05, key="labeling.iou",
                    help="Anchors with IoU ≥ this with an object become positives.")
    state.qp_sync("labeling.iou")
    state.qp_init("labeling.hnm", False, state.as_bool)
    hnm = st.toggle("Hard negative mining", key="labeling.hnm",
                    help="Keep only the hardest negatives: neg_ratio per positive.")
    state.qp_sync("labeling.hnm")
    if hnm:
        state.qp_init("labeling.ratio", 3, int, lambda v: 1 <= v <= 10)
        neg_ratio = st.slider("neg_ratio (negatives kept per positive)", 1, 10,
                              key="labeling.ratio")
        state.qp_sync("labeling.ratio")
        loss_kind = st.radio("Stand-in per-anchor loss for ranking negatives",
                             [LOSS_IOU, LOSS_NET], key="labeling.loss")

class_names = extra.get("class_names") or ["banana", "ring", "star"]
w, h = image.size
st.subheader("Ground truth (pixels; edit, add or delete rows)")
table = st.data_editor(
    default_table(extra, (w, h), class_names), key=f"labeling.gt.{desc}.{w}x{h}",
    num_rows="dynamic", width="stretch", hide_index=True,
    column_config={
        "class": st.column_config.SelectboxColumn("class", options=class_names, required=True),
        **{c: st.column_config.NumberColumn(c, format="%.1f", step=1.0) for c in COLUMNS[1:]},
    },
)
labels, kept_rows, errors = table_to_labels(table, (w, h), class_names)
for msg in errors:
    st.error(f"Ground-truth table, {msg}. That row is ignored until it is fixed.")

anchors_np, layout = state.tinyssd_anchors(size)
anchors = torch.from_numpy(anchors_np)
num_anchors = len(anchors)
if labels.shape[1] == 0:
    with right:
        st.warning("No valid ground-truth box: every anchor is background. Add a row below.")
    gt_index = np.full(num_anchors, -1)
    greedy = np.zeros(num_anchors, dtype=bool)
    iou = np.zeros((num_anchors, 0))
    cls_labels = torch.zeros((1, num_anchors), dtype=torch.long)
    offsets = np.zeros((num_anchors, 4))
else:
    match = match_anchors(anchors, labels, thr)
    gt_index, greedy, iou = match.gt_index[0].numpy(), match.greedy[0].numpy(), match.iou[0].numpy()
    bbox_offset, _, cls_labels = multibox_target(anchors, labels, thr)
    offsets = bbox_offset[0].reshape(-1, 4).numpy()

positive = gt_index >= 0
n_pos, n_greedy = int(positive.sum()), int((positive & greedy).sum())
kept_neg = None
if hnm:
    if loss_kind == LOSS_IOU:
        per_anchor = torch.from_numpy(iou.max(axis=1) if iou.shape[1] else np.zeros(num_anchors))
    else:
        logits = torch.from_numpy(untrained_logits(state.png_bytes(image), size))
        per_anchor = F.cross_entropy(logits, cls_labels[0], reduction="none")
    kept_neg = hard_negative_mask(per_anchor[None].float(), cls_labels, neg_ratio)[0].numpy()

# ---- the picture
disp = image.copy()
disp.thumbnail((768, 768))
dw, dh = disp.size
px = np.array([dw, dh, dw, dh], dtype=np.float64)
gt_px = labels[0, :, 1:].numpy() * px
names = [f"{j + 1}. {class_names[int(c)]}" for j, c in enumerate(labels[0, :, 0].tolist())]
positives = [((anchors_np[positive & greedy & (gt_index == j)]) * px,
              (anchors_np[positive & ~greedy & (gt_index == j)]) * px) for j in range(len(names))]
negatives = anchors_np[kept_neg] * px if kept_neg is not None else None

with right:
    m = st.columns(4 if hnm else 3)
    m[0].metric("Positives", n_pos, border=True,
                help="Anchors labelled with an object (class + offsets).")
    m[1].metric("Greedy best anchors", n_greedy, border=True,
                help="One per object: taken first, whatever its IoU.")
    m[2].metric("Negatives (background)", num_anchors - n_pos, border=True)
    if hnm:
        m[3].metric("Kept negatives", int(kept_neg.sum()), border=True,
                    help=f"At most neg_ratio × positives = {neg_ratio} × {n_pos}.")
    fig = figures.labeling_figure(disp, gt_px, names, positives, negatives, height=600)
    st.plotly_chart(fig, key="labeling_chart", width="stretch")
    st.caption(f"Image: {desc}. Thick dashed: each object's greedy best anchor; dotted: anchors "
               f"with IoU ≥ {thr:g}; colours follow the objects." +
               (" Grey: the negatives hard negative mining keeps, ranked by "
                f"{'max IoU' if loss_kind == LOSS_IOU else 'the untrained network'}'s loss."
                if hnm else ""))
    if hnm:
        st.info(f"Stand-in loss: {loss_kind}. A real detector ranks negatives by its own class "
                "loss during training; here nothing is trained yet.", icon=":material/info:")

# ---- per-object IoU heatmaps
if len(names):
    st.subheader("IoU with one object, per scale")
    obj = st.selectbox("Object", range(len(names)), format_func=lambda j: names[j],
                       key="labeling.obj")
    grids, titles = [], []
    for k, (start, side, a) in enumerate(layout):
        block = iou[start:start + side * side * a, obj].reshape(side, side, a).max(axis=2)
        grids.append(block)
        titles.append(f"scale {k + 1} ({side}×{side}): max {block.max():.2f}")
    st.plotly_chart(figures.iou_heatmaps_figure(grids, titles), key="iou_heatmaps",
                    width="stretch")
    st.caption("Each cell shows the best IoU among its anchors with the chosen object: small "
               "objects light up the fine scales, large ones the coarse scales.")

# ---- positives table
st.subheader("Positive anchors and their targets")
st.latex(r"\left(\frac{\frac{x_b - x_a}{w_a} - \mu_x}{\sigma_x},\ "
         r"\frac{\frac{y_b - y_a}{h_a} - \mu_y}{\sigma_y},\ "
         r"\frac{\log\frac{w_b}{w_a} - \mu_w}{\sigma_w},\ "
         r"\frac{\log\frac{h_b}{h_a} - \mu_h}{\sigma_h}\right),\quad "
         r"\mu = 0,\ \sigma_x = \sigma_y = 0.1,\ \sigma_w = \sigma_h = 0.2")
idx = np.flatnonzero(positive)
if len(idx):
    scale_of = np.searchsorted([s for s, _, _ in layout], idx, side="right") - 1
    rows = []
    for i, k in zip(idx, scale_of):
        start, side, a = layout[k]
        cell, shape = divmod(int(i - start), a)
        j = int(gt_index[i])
        rows.append({
            "anchor": int(i), "scale": int(k + 1), "cell (row, col)": str(divmod(cell, side)),
            "shape": anchor_shape(shape, a), "object": names[j], "IoU": float(iou[i, j]),
            "match": "greedy" if greedy[i] else "threshold",
            "t_x": offsets[i, 0], "t_y": offsets[i, 1], "t_w": offsets[i, 2],
            "t_h": offsets[i, 3],
        })
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("IoU", "t_x", "t_y", "t_w", "t_h")})
else:
    st.info("No positive anchors: add a ground-truth box.")
