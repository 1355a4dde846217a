"""Chapter: the chapter's code cells in order, each output reproduced live by ssd_core.chapter,
each linked to the page that explores it; the chapter's Problems linked to their switches."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import chapter_cells, figures, figures_model, model_picker, present, sample_images
from app.pages import PAGES
from ssd_core import chapter
from ssd_core.checkpoint import load_checkpoint
from ssd_core.resources import shipped_checkpoint
from ssd_core.suppression import near_duplicates

TRAIN_KEY = "chapter.training_run"
FOLD_LINES = 12  # code cells longer than this start folded
NMS_THRESHOLD = 0.5  # the book's multibox_detection default
ICONS = {p.path: p.icon for p in PAGES}


def link(path: str, what: str) -> None:
    """A link to a registered page (one not in the registry is left out, never an error)."""
    title = next((p.title for p in PAGES if p.path == path), None)
    if title is not None:
        st.page_link(path, label=f"{title}: {what}", icon=ICONS[path])


@st.cache_data(show_spinner=False)
def shape_outputs() -> dict:
    """The printed outputs of the shape cells (In [3], [5], [7], [8], [11], [13])."""
    total, formula = chapter.anchor_count(256)
    return {
        "predictor_shapes": str(chapter.cell_predictor_shapes()),
        "concat_shape": str(chapter.cell_concat_shape()),
        "down_sample_shape": str(chapter.cell_down_sample_shape()),
        "base_net_shape": str(chapter.cell_base_net_shape()),
        "sizes": str(chapter.cell_sizes()["num_anchors"]),
        "tinyssd": "\n".join(f"output {name}: {shape}" for name, shape in zip(
            ("anchors", "class preds", "bbox preds"), chapter.cell_tinyssd().values()))
        + f"\n\n# {formula} anchors (the book's count)",
    }


@st.cache_data(show_spinner=False)
def shipped_lines() -> tuple[chapter.TrainingPrintout, str] | None:
    """The shipped checkpoint's saved record as the book's print-out, and how it was trained."""
    path = shipped_checkpoint()
    if not path.exists():
        return None
    ckpt = load_checkpoint(path)
    c = ckpt.config
    how = (f"{c.optimizer.upper()} lr {c.lr:g}, {c.loss.box_loss}, {c.loss.cls_loss}, "
           f"{'hard negative mining, ' if c.loss.hard_negative_mining else ''}"
           f"{ckpt.metrics.get('images', 0)} images per epoch")
    return chapter.shipped_printout(ckpt.metrics), how


@st.cache_data(show_spinner="Running the shipped model on the image ...", max_entries=8)
def prediction(png: bytes, model_key: str, _det) -> dict:
    res = chapter.cell_predict(_det.model, sample_images.open_png(png), _det.input_size)
    return {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in res.items()}


@st.cache_resource(show_spinner="Timing In [18]'s loop on this machine (a few seconds) ...")
def machine_speed() -> float:
    """examples/sec of the book's training loop on this machine, measured once per server."""
    return chapter.measured_speed()


def training_output() -> None:
    """In [18]'s print-out: the shipped model's saved record with the speed of this machine
    measured now, and a real short run on demand."""
    saved = shipped_lines()
    if saved is not None:
        shipped, how = saved
        speed = machine_speed()
        last = shipped.records[-1]
        st.code("\n".join(shipped.epoch_lines + shipped.torch_lines[:1]
                          + [chapter.TORCH_SPEED_LINE.format(speed, "cpu")]), language=None)
        st.caption(
            f"Epoch line and errors: from {shipped.source}, trained with {how}; its "
            f"{last.get('epoch_time', 0):.0f} s is one epoch of {last.get('images', 0)} images "
            "on a shared 2-core CPU (the book: 11.6 s per epoch of 1000 images on a GPU). "
            f"Speed line: **measured now on this machine**: {speed:.1f} examples/sec of the "
            f"book's loop ({chapter.SPEED_RUN['epochs']} short epochs of "
            f"{chapter.SPEED_RUN['num_images']} images at 256 px, the last one timed; other "
            "work on the machine slows it).")
    demo = chapter.TRAIN_DEMO
    label = (f"Run In [18] for real: {demo['num_images']} images, {demo['epochs']} epochs, "
             "the book's settings (about a minute on two CPU cores)")
    if st.button(label, key="chapter.train", icon=":material/play_arrow:"):
        with st.spinner("Training TinySSD on tiny synthetic data ..."):
            st.session_state[TRAIN_KEY] = chapter.cell_training(**demo)
    run = st.session_state.get(TRAIN_KEY)
    if run is not None:
        st.code("\n".join(run.epoch_lines + run.torch_lines), language=None)
        st.caption(f"From {run.source}, printed every epoch (the book prints every 5th). "
                   "The class error is already small: almost every anchor is background.")


def predict_output() -> None:
    """In [19]-[21]: the shipped model on a shipped sample, boxes with score >= 0.3."""
    files = sample_images.sample_files()
    if not files or not shipped_checkpoint().exists():
        st.info("The shipped model or its sample images are not installed; the Detection page "
                "runs any model on any image.")
        return
    names = [p.name for p in files]
    if sample_images.DEFAULT_SAMPLE in names:  # one clean detection per object, as the book shows
        names.remove(sample_images.DEFAULT_SAMPLE)
        names.insert(0, sample_images.DEFAULT_SAMPLE)
    name = st.selectbox("Sample image", names, key="chapter.sample")
    png = sample_images.decode_image(next(f for f in files if f.name == name).read_bytes())
    det = model_picker.detector(model_picker.SHIPPED)
    res = prediction(png, model_picker.model_key(model_picker.SHIPPED), det)
    shown = res["shown"]
    labels = shown[:, 0].astype(int)
    fig = figures.detections_figure(sample_images.open_png(png), res["pixels"], shown[:, 1], labels,
                                    det.class_names, height=480)
    left, right = st.columns([1.4, 1])
    present.chart(fig, left, key="chapter_prediction")
    right.caption(f"`output` holds {len(res['output'])} rows with class ≠ -1; "
                  f"`display` draws the {len(shown)} with score ≥ {res['threshold']}.")
    right.dataframe(pd.DataFrame({
        "class": [det.class_names[c] for c in labels], "score": shown[:, 1].round(3),
        **{k: (shown[:, 2 + i]).round(3) for i, k in enumerate(("x1", "y1", "x2", "y2"))},
    }), hide_index=True, width="stretch")
    st.caption(f"The shipped TinySSD ({', '.join(det.class_names)}) on `{name}`.")
    duplicate_note(shown, det.class_names, right)


def duplicate_note(shown, names, box) -> None:
    """Say why two boxes of one class can both stay: NMS removes a box only above its IoU
    threshold (0.5 in the book), and these overlap by less."""
    pairs = near_duplicates(shown[:, 2:6], shown[:, 0].astype(int), NMS_THRESHOLD)
    for i, j, iou in pairs[:2]:
        a, b = (f"{names[int(shown[k, 0])]} {shown[k, 1]:.2f}" for k in (i, j))
        box.info(f"**{b}** beside **{a}**: the two boxes overlap by IoU {iou:.2f}, just under "
                 f"NMS's threshold {NMS_THRESHOLD:g}, so NMS keeps both. With the threshold "
                 f"below {iou:.2f} NMS removes {b}: try it on the Detection page (NMS step by "
                 "step shows each removal).", icon=":material/info:")


def problem_output(key: str) -> None:
    if key == "smooth_l1":
        x, curves = chapter.cell_smooth_l1()
        fig = figures_model.curves_figure(x, curves, "x", "smooth_l1(x, sigma)")
    else:
        x, curves = chapter.cell_focal()
        fig = figures_model.curves_figure(x, curves, "p (probability of the true class)",
                                          "focal loss")
    present.chart(fig, key=f"chapter_{key}", width="stretch")


def anchor(cell: chapter_cells.Cell) -> str:
    return f"in-{cell.number}"


def show_cell(cell: chapter_cells.Cell, outputs: dict) -> None:
    st.html(f'<div id="{anchor(cell)}"></div>')
    st.markdown(f"**In [{cell.number}]** · {cell.title}")
    lines = cell.code.count("\n") + 1
    if lines > FOLD_LINES:  # long code folded: the outputs stay in view
        with st.expander(f"Code: {lines} lines"):
            st.code(cell.code, language="python")
    else:
        st.code(cell.code, language="python")
    if cell.output in outputs:
        how = ("on PyTorch's meta device: the same forward code on shapes alone, so the "
               "32-image batch costs nothing" if cell.output == "tinyssd" else "")
        st.caption(f"Out [{cell.number}] (computed now by ssd_core{', ' + how if how else ''})")
        st.code(outputs[cell.output], language=None)
    elif cell.output == "training":
        training_output()
    elif cell.output == "predict":
        predict_output()
    elif cell.output in ("smooth_l1", "focal"):
        problem_output(cell.output)
    for path, what in cell.links:
        link(path, what)


SECTIONS = [("Model", chapter_cells.CELLS[:13]), ("Training", chapter_cells.CELLS[13:18]),
            ("Prediction", chapter_cells.CELLS[18:19]),
            ("Problems", chapter_cells.PROBLEM_CELLS)]


def table_of_contents() -> None:
    """Every cell by section (the Model's 13 in two columns), each a link to its place."""
    columns = [("Model", SECTIONS[0][1][:7]), ("Model (continued)", SECTIONS[0][1][7:]),
               *SECTIONS[1:]]
    with st.container(key="chapter-toc", border=True):
        for col, (section, cells) in zip(st.columns([1.2, 1.2, 1, 0.8, 0.8]), columns):
            col.markdown(f"**{section}**  \n" + "  \n".join(
                f":small[[In [{c.number}] {c.title}](#{anchor(c)})]" for c in cells))


present.page_top("Chapter", (
    "The chapter *Single Shot Multibox Detection (SSD)*, cell by cell, in the book's PyTorch "
    "form with this project's names. Every output below is computed now by `ssd_core` "
    "(`ssd_core.chapter` has one function per cell) and equals the book's printed value; each "
    "cell links to the page that explores it. Code longer than "
    f"{FOLD_LINES} lines is folded: open it with its arrow."))
table_of_contents()
outputs = shape_outputs()
st.header("Model")
for cell in chapter_cells.CELLS[:13]:
    show_cell(cell, outputs)
st.header("Training")
for cell in chapter_cells.CELLS[13:18]:
    show_cell(cell, outputs)
st.header("Prediction")
show_cell(chapter_cells.CELLS[18], outputs)
st.header("Problems")
st.subheader("Loss function")
for cell in chapter_cells.PROBLEM_CELLS:
    show_cell(cell, outputs)
st.subheader("Training and prediction")
for problem, links in chapter_cells.PROBLEMS:
    st.markdown(f"- {problem}")
    for path, what in links:
        link(path, what)
if any(p.path == chapter_cells.EXPERIMENTS for p in PAGES):
    link(chapter_cells.EXPERIMENTS, "the problems answered by measurement, as matched runs")
