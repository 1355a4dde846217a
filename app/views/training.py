"""Training: train TinySSD in a background job and watch it learn.

The job belongs to ``ssd_core.jobs`` (a process-wide JobManager, so a browser refresh finds it
still running); this page only submits, stops and resumes jobs and polls their snapshots from an
``st.fragment(run_every=...)``. Runs live in the runs folder and can be compared, downloaded and
made the active model of the Detection and Evaluation pages.
"""

import hashlib
import re
import time
from pathlib import Path

import figures
import state
import streamlit as st

from ssd_core.data import FORMATS, PRESETS
from ssd_core.errors import ConfigError, SSDError
from ssd_core.jobs import DataSpec
from ssd_core.train import OPTIMIZERS, TrainConfig

POLL_S = 1.0
LIVE = ("queued", "running", "stopping")
RUN_KEY = "training.run"
FORM_OPEN_KEY = "training.form_open"
BOOK = TrainConfig()  # the chapter's defaults fill the form


def _eta(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def job_message(text: str) -> str:
    """A job's message as the page shows it. An error raised in a DataLoader worker (GPU
    servers use them) carries the worker's traceback: keep only the error it ends with. An
    image that cannot be decoded says what to do about it."""
    lines = str(text).splitlines()
    start = next((k for k, line in enumerate(lines) if "Traceback (most recent call last)"
                  in line), None)
    if start is not None:
        error = " ".join(line for line in lines[start + 1:] if line and not line[0].isspace())
        text = re.sub(r"^[\w.]+: ", "", error)  # "ssd_core.errors.AnnotationError: ..."
    if " Accepted: " in text:  # ssd_core.images' list of inputs (PIL images, arrays) is for code
        text = text.split(" Accepted: ")[0] + (" Fix or remove that image (and its "
                                               "annotations), then upload the zip again.")
    return text


def save_upload(data: bytes) -> Path:
    """Keep an uploaded dataset zip where the job can read it: ``<runs>/_uploads/<sha1>.zip``."""
    folder = state.runs_dir() / "_uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha1(data).hexdigest()[:16]}.zip"
    if not path.exists():
        path.write_bytes(data)
    return path


@st.cache_data(show_spinner=False, max_entries=16)
def preview_image(run_path: str):
    """PNG bytes of the fixed validation image a run's preview detections refer to."""
    import json

    from ssd_core.train import TrainConfig as Cfg

    root = Path(run_path)
    spec = DataSpec.from_dict(json.loads((root / "data.json").read_text()))
    cfg = Cfg.from_dict(json.loads((root / "config.json").read_text()))
    train, val = spec.build(cfg.input_size)
    data = val if val is not None and len(val) else train
    return state._png(data.sample(0)[0])


def log_every(num_images: int, batch_size: int) -> int:
    """Log about 5 times per epoch (at most every 10 steps) so short runs still draw curves."""
    steps = max(1, -(-num_images // batch_size))
    return max(1, min(10, steps // 5))


def start_job(spec: DataSpec, form: dict, num_images: int) -> None:
    try:
        config = TrainConfig(**form["config"], log_every=log_every(
            num_images, form["config"]["batch_size"]))
        run_id = state.job_manager().submit(config, spec, form["name"] or None)
    except (ConfigError, SSDError) as e:
        st.error(f"The run could not start: {e}")
        return
    st.session_state[RUN_KEY] = run_id
    st.session_state[FORM_OPEN_KEY] = False
    st.query_params["run"] = run_id


def config_form(upload) -> None:
    """The training form: the chapter's defaults; submitting queues a job."""
    with st.form("training.form"):
        c1, c2, c3 = st.columns(3)
        with c1:
            st.markdown("**Data**")
            if upload is None:
                preset = st.selectbox("Synthetic preset", list(PRESETS), key="training.preset",
                                      help="default: bananas, rings and stars, 1-6 per image; "
                                           "book: one banana per image, like the chapter.")
                n = st.number_input("Training images", 1, 100_000, 512, key="training.n")
                val_n = st.number_input("Validation images", 0, 10_000, 64, key="training.val_n")
                seed = st.number_input("Data seed", 0, 2**31 - 1, 0, key="training.seed")
            else:
                fmt = st.selectbox("Format", ["auto", *FORMATS], key="training.fmt")
                val_fraction = st.slider("Validation fraction", 0.0, 0.5, 0.1, 0.05,
                                         key="training.val_fraction")
            augment = st.checkbox("Augment (flip, crop, colour)", False, key="training.augment")
            name = st.text_input("Run name (optional)", key="training.name", max_chars=40)
        with c2:
            st.markdown("**Optimisation**")
            epochs = st.number_input("Epochs", 1, 1000, BOOK.epochs, key="training.epochs")
            batch = st.number_input("Batch size", 1, 1024, BOOK.batch_size,
                                    key="training.batch")
            lr = st.number_input("Learning rate", 1e-6, 10.0, BOOK.lr, format="%.4g",
                                 key="training.lr", help="The book: 0.2 with SGD; Adam: ~1e-3.")
            opt = st.selectbox("Optimizer", list(OPTIMIZERS), key="training.optimizer")
            size = st.select_slider("Input size", state.INPUT_SIZES, BOOK.input_size,
                                    key="training.input_size")
        with c3:
            st.markdown("**Loss**")
            cls_loss = st.radio("Class loss", ["ce", "focal"], horizontal=True,
                                key="training.cls_loss",
                                format_func={"ce": "cross-entropy", "focal": "focal"}.get)
            g1, g2 = st.columns(2)
            gamma = g1.number_input("Focal γ", 0.0, 10.0, BOOK.focal_gamma, 0.5,
                                    key="training.gamma")
            alpha = g2.number_input("Focal α", 0.01, 1.0, BOOK.focal_alpha, 0.05,
                                    key="training.alpha")
            box_loss = st.radio("Box loss", ["l1", "smooth_l1"], horizontal=True,
                                key="training.box_loss",
                                format_func={"l1": "L1", "smooth_l1": "smooth-L1"}.get)
            sigma = st.number_input("Smooth-L1 σ", 0.01, 100.0, BOOK.smooth_l1_sigma,
                                    key="training.sigma")
            w1, w2 = st.columns(2)
            cls_w = w1.number_input("Class weight", 0.0, 100.0, BOOK.cls_weight,
                                    key="training.cls_weight")
            box_w = w2.number_input("Box weight", 0.0, 100.0, BOOK.box_weight,
                                    key="training.box_weight")
            hnm = st.checkbox("Hard negative mining (3:1)", BOOK.hard_negative_mining,
                              key="training.hnm")
        submitted = st.form_submit_button("Start training", type="primary")
    if not submitted:
        return
    form = {"name": name, "config": dict(
        epochs=int(epochs), batch_size=int(batch), lr=float(lr), optimizer=opt,
        input_size=int(size), cls_loss=cls_loss, focal_gamma=float(gamma),
        focal_alpha=float(alpha), box_loss=box_loss, smooth_l1_sigma=float(sigma),
        cls_weight=float(cls_w), box_weight=float(box_w), hard_negative_mining=bool(hnm))}
    if upload is None:
        spec = DataSpec("synthetic", n=int(n), seed=int(seed), preset=preset, val_n=int(val_n),
                        augment=augment)
        num_images = int(n)
    else:
        from ssd_core.data import load_dataset

        path = save_upload(upload.getvalue())
        try:  # check it now, so a bad zip is an error here rather than a failed job
            ds = load_dataset(path, fmt=None if fmt == "auto" else fmt, image_size=int(size))
            if len(ds) < 2:
                raise ConfigError("the dataset needs at least 2 images (train + validation)")
        except (ValueError, RuntimeError) as e:  # name the user's file, not the saved copy
            st.error(f"That dataset could not be used: "
                     f"{str(e).replace(path.name, upload.name)}")
            return
        spec = DataSpec("path", path=str(path), fmt=None if fmt == "auto" else fmt,
                        val_fraction=float(val_fraction), augment=augment)
        num_images = len(ds)
    start_job(spec, form, num_images)


def metrics_row(snap) -> None:
    last = snap.records[-1] if snap.records else {}  # step or epoch: both carry the losses
    ep = snap.epochs[-1] if snap.epochs else {}
    cols = st.columns(6)
    for col, (label, value, fmt) in zip(cols, [
        ("Loss", last.get("loss"), "{:.4f}"), ("Class error", last.get("class_error"), "{:.4f}"),
        ("Box MAE", last.get("box_mae"), "{:.4f}"), ("Val AP50", ep.get("val_ap50"), "{:.3f}"),
        ("Val mAP", ep.get("val_map"), "{:.3f}"), ("Images/s", last.get("images_per_s"),
                                                   "{:.1f}"),
    ]):
        col.metric(label, "–" if value is None else fmt.format(value))


def preview(snap) -> None:
    p = snap.preview
    if not p:
        st.caption("After each epoch the current model's detections on a fixed validation "
                   "image appear here.")
        return
    try:
        image = state.open_png(preview_image(str(snap.path)))
    except (OSError, ValueError, RuntimeError) as e:
        st.caption(f"The preview image could not be rebuilt ({e}).")
        return
    w, h = image.size
    scale = [w, h, w, h]
    dets = [r for r in p.get("detections", [])]
    gts = p.get("ground_truth", [])
    names = p.get("class_names", [])
    boxes = [[v * s for v, s in zip(r[2:6], scale)] for r in dets]
    hover = [f"{names[int(r[0])]} {r[1]:.3f}" for r in dets]
    fig = figures.detections_figure(
        image, boxes, [r[1] for r in dets], [int(r[0]) for r in dets], names, hover=hover,
        gt_boxes=[[v * s for v, s in zip(g[1:5], scale)] for g in gts],
        gt_labels=[int(g[0]) for g in gts], height=380,
        title=f"Epoch {p.get('epoch')}: detections with score ≥ 0.3")
    st.plotly_chart(fig, width="stretch", key="training_preview")


def run_controls(snap) -> None:
    jobs = state.job_manager()
    b = st.columns(4)
    if snap.state in ("queued", "running") and b[0].button("Stop", key="training.stop",
                                                            icon=":material/stop:"):
        jobs.stop(snap.run_id)
        st.rerun()
    if snap.resumable and b[0].button("Resume", key="training.resume",
                                      icon=":material/play_arrow:"):
        try:
            jobs.resume(snap.run_id)
        except (ConfigError, SSDError) as e:
            st.error(str(e))
        st.rerun()
    ckpt = snap.checkpoint
    if ckpt is not None and snap.state not in LIVE:
        b[1].download_button("Download checkpoint", lambda: Path(ckpt).read_bytes(),
                             file_name=f"{snap.run_id}-{ckpt.name}",
                             mime="application/octet-stream", on_click="ignore",
                             key="training.download")
        if b[2].button("Use for detection", key="training.use",
                       icon=":material/center_focus_strong:",
                       help="Make this checkpoint the active model (Detection, Evaluation)."):
            st.session_state["active_checkpoint"] = str(ckpt)
            st.rerun()
        if state.active_checkpoint() == str(ckpt):
            b[3].success("Active model")


def run_panel(run_id: str, was_live: bool) -> None:
    """One run: status, progress, controls, curves, preview. Polled while the job is live."""
    try:
        snap = state.job_manager().snapshot(run_id)
    except ConfigError as e:
        st.warning(str(e))
        return
    if was_live and snap.state not in LIVE:
        st.rerun()  # the job ended: one full rerun stops the polling and refreshes the list
    badge = {"queued": ":material/schedule:", "running": ":material/directions_run:",
             "stopping": ":material/hourglass_top:", "finished": ":material/check_circle:",
             "stopped": ":material/stop_circle:", "failed": ":material/error:",
             "interrupted": ":material/warning:"}.get(snap.state, "")
    message = job_message(snap.message)
    st.markdown(f"**{badge} {snap.state}** · run `{snap.run_id}` · {message}")
    if snap.state == "queued" and snap.queue_position:
        st.info(f"Queued: position {snap.queue_position} in line. The server trains "
                f"{state.job_manager().max_running} model(s) at a time "
                "(SSD_MAX_TRAINING_JOBS).")
    if snap.state == "failed":
        st.error(f"Training failed: {message}")
    last = snap.records[-1] if snap.records else {}
    text = (f"epoch {last.get('epoch', 0)}/{last.get('epochs', snap.config.get('epochs', '?'))}"
            f" · step {last.get('step', 0)}/{last.get('total_steps', '?')}"
            f" · ETA {_eta(last.get('eta_s')) if snap.state in LIVE else '–'}")
    st.progress(snap.progress, text=text)
    run_controls(snap)
    metrics_row(snap)
    left, right = st.columns([2.2, 1])
    with left:
        if snap.records:
            st.plotly_chart(figures.training_curves_figure({snap.run_id: snap.records},
                                                           height=520),
                            width="stretch", key="training_curves")
        else:
            st.caption("Curves appear after the first logged steps.")
    with right:
        preview(snap)


def runs_section(runs) -> None:
    """The selected run (live while it trains) and the comparison of finished runs."""
    ids = [r.run_id for r in runs]
    # Static labels (no state): a selectbox keeps showing an option's first label.
    labels = {r.run_id: f"{r.run_id} · {r.config.get('epochs')} epochs, "
                        f"{r.config.get('input_size')} px" for r in runs}
    if RUN_KEY not in st.session_state and st.query_params.get("run") in ids:
        st.session_state[RUN_KEY] = st.query_params["run"]
    if st.session_state.get(RUN_KEY) not in ids:
        st.session_state[RUN_KEY] = ids[0]
    run_id = st.selectbox("Run", ids, key=RUN_KEY, format_func=labels.get)
    if st.query_params.get("run") != run_id:
        st.query_params["run"] = run_id

    # The same snapshot as the label: if the job ends after this, the fragment sees it and
    # reruns the page once (a fresh snapshot here could miss that and leave a stale label).
    live = next(r for r in runs if r.run_id == run_id).state in LIVE
    st.fragment(run_every=POLL_S if live else None)(run_panel)(run_id, live)
    compare(runs)


def compare(runs) -> None:
    done = [r for r in runs if r.records]
    if len(done) < 2:
        return
    st.subheader("Compare runs")
    chosen = st.multiselect("Runs to overlay", [r.run_id for r in done],
                            default=[r.run_id for r in done[:2]], key="training.compare")
    if not chosen:
        return
    by_id = {r.run_id: r for r in done}
    st.plotly_chart(figures.training_curves_figure(
        {i: by_id[i].records for i in chosen}, height=560), width="stretch",
        key="compare_curves")
    st.dataframe([{"run": i, "state": by_id[i].state,
                   "epochs": by_id[i].config.get("epochs"),
                   "lr": by_id[i].config.get("lr"),
                   "cls loss": by_id[i].config.get("cls_loss"),
                   "box loss": by_id[i].config.get("box_loss"),
                   "val AP50": (by_id[i].epochs[-1].get("val_ap50")
                                if by_id[i].epochs else None),
                   "created": time.strftime("%Y-%m-%d %H:%M",
                                            time.localtime(by_id[i].created))}
                  for i in chosen], hide_index=True, width="stretch")


st.title("Training")
st.markdown(
    "Train the chapter's TinySSD: every step labels the anchors (`multibox_target`), computes "
    "the class and box losses and takes an optimizer step. The job runs in the background on "
    "the server; leave or reload the page and it keeps going. Curves show the book's **class "
    "error** and **box MAE** next to the losses, and each epoch validates (AP50, mAP).")

jobs = state.job_manager()
# Decided once per session: a newcomer sees the form open even when classmates' runs fill the
# list below; a session that came for a run (?run=...) or has started one sees it closed.
st.session_state.setdefault(FORM_OPEN_KEY, "run" not in st.query_params)
with st.expander("New run", expanded=st.session_state[FORM_OPEN_KEY]):
    source = st.radio("Data", ["Synthetic", "Upload a dataset (.zip)"], horizontal=True,
                      key="training.data")
    upload = None
    if source != "Synthetic":
        upload = st.file_uploader(
            "Dataset zip: COCO (annotations/*.json), VOC (Annotations/*.xml), YOLO "
            "(labels/*.txt + classes.txt) or the book's banana CSV", type=["zip"],
            key="training.zip")
        if upload is None:
            state.upload_hint("Upload a .zip to train on it, or switch to synthetic data.")
    if source == "Synthetic" or upload is not None:
        config_form(upload)

# st.stop() is avoided on purpose: under st.navigation it can drop the sidebar and page menu.
runs = jobs.list_runs()
if runs:
    runs_section(runs)
else:
    st.info("No runs yet: start one above (tiny settings such as 64 px, 64 images and 2 epochs "
            "finish in under a minute on a CPU).")
