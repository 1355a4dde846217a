"""Training: train TinySSD in a background job and watch it learn.

The job belongs to ``ssd_core.jobs`` (a process-wide JobManager, so a browser refresh finds it
still running); this page only submits, stops and resumes jobs and polls their snapshots from an
``st.fragment(run_every=...)``. Runs live in the runs folder and can be compared, downloaded and
made the active model of the Detection and Evaluation pages.
"""

import time
from pathlib import Path

import numpy as np
import streamlit as st

from app import figures, figures_metrics, job_queue, model_picker, present, sample_images, urlstate
from app.views._training_form import (
    FORM_OPEN_KEY,
    RUN_KEY,
    STARTED_KEY,
    config_form,
    recipe_choice,
)
from ssd_core import TrainConfig, anchor_layout
from ssd_core import runfolder as rf
from ssd_core.boxes import to_pixels
from ssd_core.checkpoint import build_model
from ssd_core.config import flat_settings
from ssd_core.detection import Detector
from ssd_core.errors import SSDError

POLL_S = 1.0
REPLAY_HEIGHT, REPLAY_HEIGHT_PRESENT = 500, 440  # px: whole on a 1280x720 screen
BADGES = {rf.QUEUED: ":material/schedule:", rf.RUNNING: ":material/directions_run:",
          rf.STOPPING: ":material/hourglass_top:", rf.FINISHED: ":material/check_circle:",
          rf.STOPPED: ":material/stop_circle:", rf.FAILED: ":material/error:",
          rf.INTERRUPTED: ":material/warning:"}
def _eta(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def job_message(snap) -> str:
    """A job's message as the page shows it: an image a dataset could not decode says what to
    do about it (the job records that as a structured field, ssd_core.jobs.failure)."""
    if snap.error and snap.error.get("bad_image"):
        return (snap.message + " Fix or remove that image (and its annotations), then upload "
                "the zip again.")
    return snap.message


def metrics_row(snap, per_row: int = 6) -> None:
    """Loss, class error, box MAE, AP50, mAP and speed: one row, or ``per_row`` to a row."""
    last = snap.records[-1] if snap.records else {}  # step or epoch: both carry the losses
    ep = snap.epochs[-1] if snap.epochs else {}
    cols = [c for _ in range(-(-6 // per_row)) for c in st.columns(per_row)]
    for col, (label, value, fmt) in zip(cols, [
        ("Loss", last.get("loss"), "{:.4f}"), ("Class error", last.get("class_error"), "{:.4f}"),
        ("Box MAE", last.get("box_mae"), "{:.4f}"), ("Val AP50", ep.get("val_ap50"), "{:.3f}"),
        ("Val mAP", ep.get("val_map"), "{:.3f}"), ("Images/s", last.get("images_per_s"),
                                                   "{:.1f}"),
    ]):
        col.metric(label, "–" if value is None else fmt.format(value))


def replay_choice(snap) -> dict | None:
    """The preview to draw: the newest epoch's, or the one the replay slider picks. While the
    slider stays on the newest epoch it follows new epochs; moved back, it stays put."""
    epochs = [int(p["epoch"]) for p in snap.previews if isinstance(p.get("epoch"), int)]
    if len(epochs) < 2:
        return snap.preview
    key, last_key = f"training.replay.{snap.run_id}", f"training.replay_last.{snap.run_id}"
    kept = st.session_state.get(key)
    if kept not in epochs or kept == st.session_state.get(last_key):
        st.session_state[key] = epochs[-1]
    st.session_state[last_key] = epochs[-1]
    epoch = st.select_slider(
        "Replay: the fixed image after epoch", epochs, key=key,
        help="Every epoch's detections are kept with the run: slide back to watch the boxes "
             "appear and tighten. The network does not run again.")
    return next(p for p in reversed(snap.previews) if p.get("epoch") == epoch)


@st.cache_data(show_spinner=False, max_entries=16)
def untrained_frame(run_path: str, png: bytes, names: tuple) -> dict:
    """Epoch 0 of the replay: what the run's TinySSD finds on the fixed image before any step
    (its settings, random weights from the run's seed), boxes with score >= 0.3."""
    cfg = TrainConfig.from_dict(rf.read_config(Path(run_path)))
    model = build_model(cfg, len(names)).eval()  # exactly the weights the run started from
    found = Detector(model, list(names), cfg.input_size, device="cpu").predict(
        sample_images.open_png(png), conf_threshold=0.3)
    return {"boxes": found.boxes.numpy(), "scores": found.scores.numpy(),
            "labels": found.labels.numpy()}


def replay_frames(snap, image, png: bytes) -> list[dict]:
    """Epoch 0 (untrained) and every kept epoch's detections as replay_figure frames."""
    def pixels(rows, start: int) -> list:
        """Rows holding normalized corners at ``start:start + 4`` -> pixel boxes (lists)."""
        boxes = np.reshape([r[start:start + 4] for r in rows], (-1, 4))
        return to_pixels(boxes, image.size).tolist()

    kept = [p for p in snap.previews if isinstance(p.get("epoch"), int)]
    gt = pixels((kept[-1] if kept else {}).get("ground_truth", []), 1)
    frames = []
    try:
        names = tuple(kept[-1].get("class_names", [])) if kept else ()
        zero = untrained_frame(str(snap.path), png, names)
        frames.append({"name": "0", "title": "Epoch 0 (untrained, random weights): "
                       f"{len(zero['scores'])} boxes with score ≥ 0.3", "gt_boxes": gt, **zero})
    except (OSError, ValueError, RuntimeError, KeyError, SSDError):
        pass  # a run without its settings on disk: the replay starts at epoch 1
    for p in kept:
        dets = p.get("detections", [])
        frames.append({"name": str(p["epoch"]),
                       "title": f"Epoch {p['epoch']}: detections with score ≥ 0.3",
                       "boxes": pixels(dets, 2),
                       "scores": [r[1] for r in dets], "labels": [int(r[0]) for r in dets],
                       "gt_boxes": gt})
    return frames


def preview(snap, p: dict | None, height: int) -> None:
    """The replay figure of preview ``p`` (replay_choice), epoch 0 to the newest."""
    if not p:
        st.caption("After each epoch the current model's detections on a fixed validation "
                   "image appear here.")
        return
    try:
        png = job_queue.preview_image(str(snap.path))
        image = sample_images.open_png(png)
    except (OSError, ValueError, RuntimeError) as e:
        st.caption(f"The preview image could not be rebuilt ({e}).")
        return
    frames = replay_frames(snap, image, png)
    names = p.get("class_names", [])
    active = next(i for i, f in enumerate(frames) if f["name"] == str(p.get("epoch")))
    fig = figures.replay_figure(image, frames, names, active=active, height=height)
    present.chart(fig, main=True, present_height=height, key="training_preview")
    st.caption("▶ plays every epoch from the untrained network (epoch 0) in the browser; the "
               "Replay slider picks one. White dashed: the ground truth.")


def run_controls(snap) -> None:
    manager = job_queue.job_manager()
    b = [c for _ in range(2) for c in st.columns(2)]  # a narrow column beside the replay
    if snap.state in rf.STOPPABLE and b[0].button("Stop", key="training.stop",
                                                            icon=":material/stop:"):
        manager.stop(snap.run_id)
        st.rerun()
    if snap.resumable and b[0].button("Resume", key="training.resume",
                                      icon=":material/play_arrow:"):
        try:
            manager.resume(snap.run_id)
        except SSDError as e:
            st.error(str(e))
        st.rerun()
    ckpt = snap.checkpoint
    if ckpt is not None and snap.state not in rf.ACTIVE:
        b[1].download_button("Download checkpoint", lambda: Path(ckpt).read_bytes(),
                             file_name=f"{snap.run_id}-{ckpt.name}",
                             mime="application/octet-stream", on_click="ignore",
                             key="training.download")
        if b[2].button("Use for detection", key="training.use",
                       icon=":material/center_focus_strong:",
                       help="Make this checkpoint the active model (Detection, Evaluation)."):
            st.session_state[model_picker.ACTIVE_KEY] = str(ckpt)
            st.rerun()
        if model_picker.active_checkpoint() == str(ckpt):
            b[3].success("Active model")


def class_error_note(snap) -> str:
    """Why the class error can fall while AP stays near zero, with this run's numbers."""
    cfg = flat_settings(snap.config)
    try:
        anchors = anchor_layout(sizes=cfg.get("anchor_sizes"), ratios=cfg.get("anchor_ratios"),
                                input_size=int(cfg.get("input_size", 256)))[-1].stop
    except (TypeError, ValueError):
        anchors = None
    positives = next((r.get("positives_per_image") for r in reversed(snap.records)
                      if r.get("positives_per_image") is not None), None)
    numbers = ""
    if anchors and positives is not None:
        numbers = (f" Here an image has {anchors} anchors and on average {positives:.1f} of "
                   f"them cover an object, so answering \"background\" for every anchor "
                   f"already gives a class error of {positives / anchors:.4f}.")
    return ("**Why the class error can fall while AP stays near zero:** almost every anchor "
            "is background, so a model that predicts background everywhere already classifies "
            "about 99% of anchors correctly." + numbers + " AP counts the objects the model "
            "finds (a box of the right class with IoU ≥ 0.5), so it only rises once the few "
            "object anchors are found and their boxes fit.")


def run_panel(run_id: str, was_live: bool) -> None:
    """One run: status, progress, controls, curves, preview. Polled while the job is live."""
    snap = job_queue.live_snapshot(run_id, was_live)
    if snap is None:
        return
    badge = BADGES.get(snap.state, "")
    message = job_message(snap)
    st.markdown(f"**{badge} {snap.state}** · run `{snap.run_id}` · {message}")
    if snap.state == rf.QUEUED and snap.queue_position:
        st.info(f"Queued: position {snap.queue_position} in line. The server trains "
                f"{job_queue.job_manager().max_running} model(s) at a time "
                "(SSD_MAX_TRAINING_JOBS).")
    if snap.state == rf.FAILED:
        st.error(f"Training failed: {message}")
    last = snap.records[-1] if snap.records else {}
    text = (f"epoch {last.get('epoch', 0)}/{last.get('epochs', snap.config.get('epochs', '?'))}"
            f" · step {last.get('step', 0)}/{last.get('total_steps', '?')}"
            f" · ETA {_eta(last.get('eta_s')) if snap.state in rf.ACTIVE else '–'}")
    st.progress(snap.progress, text=text)
    # The replay first and large, the numbers and controls beside it, the curves below.
    replay, side = st.columns([1.3, 1])
    with side:
        p = replay_choice(snap)
        metrics_row(snap, per_row=2)
        run_controls(snap)
    with replay:
        preview(snap, p, height=REPLAY_HEIGHT_PRESENT if present.on() else REPLAY_HEIGHT)
    if snap.records:
        present.chart(figures_metrics.training_curves_figure({snap.run_id: snap.records},
                                                             height=520),
                      key="training_curves")
        st.caption(class_error_note(snap))
    else:
        st.caption("Curves appear after the first logged steps.")


def runs_section(listed, box=None) -> None:
    """The selected run (live while it trains); its choice in ``box`` (default: here)."""
    ids = [r.run_id for r in listed]
    # Static labels (no state): a selectbox keeps showing an option's first label.
    labels = {r.run_id: f"{r.run_id} · {r.config.get('epochs')} epochs, "
                        f"{r.config.get('input_size')} px" for r in listed}
    run_id = urlstate.bind((box or st).selectbox, RUN_KEY, ids[0], "Run", ids,
                           valid=lambda v: v in ids, fit=lambda v: v if v in ids else ids[0],
                           format_func=labels.get,
                           label_visibility="collapsed" if box is not None else "visible")
    # The same snapshot as the label: if the job ends after this, the fragment sees it and
    # reruns the page once (a fresh snapshot here could miss that and leave a stale label).
    live = next(r for r in listed if r.run_id == run_id).state in rf.ACTIVE
    st.fragment(run_every=POLL_S if live else None)(run_panel)(run_id, live)


def compare(listed) -> None:
    """Curves and settings of finished runs side by side."""
    done = [r for r in listed if r.records]
    if len(done) < 2:
        return
    st.subheader("Compare runs")
    chosen = st.multiselect("Runs to overlay", [r.run_id for r in done],
                            default=[r.run_id for r in done[:2]], key="training.compare")
    if not chosen:
        return
    by_id = {r.run_id: r for r in done}
    present.chart(figures_metrics.training_curves_figure(
        {i: by_id[i].records for i in chosen}, height=560), width="stretch",
        key="compare_curves")
    rows = []
    for i in chosen:
        run, cfg = by_id[i], flat_settings(by_id[i].config)
        rows.append({"run": i, "state": run.state, "epochs": cfg.get("epochs"),
                     "lr": cfg.get("lr"), "cls loss": cfg.get("cls_loss"),
                     "box loss": cfg.get("box_loss"),
                     "val AP50": run.epochs[-1].get("val_ap50") if run.epochs else None,
                     "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created))})
    st.dataframe(rows, hide_index=True, width="stretch")


def new_run() -> None:
    """The "New run" expander: the setting recipe, synthetic data or an uploaded zip, then the
    form."""
    recipe = recipe_choice()
    source = st.radio("Data", ["Synthetic", "Upload a dataset (.zip)"], horizontal=True,
                      key="training.data")
    upload = None
    if source != "Synthetic":
        upload = st.file_uploader(
            "Dataset zip: COCO (annotations/*.json), VOC (Annotations/*.xml), YOLO "
            "(labels/*.txt + classes.txt) or the book's banana CSV", type=["zip"],
            key="training.zip")
        if upload is None:
            sample_images.upload_hint("Upload a .zip to train on it, or switch to synthetic data.")
    if source == "Synthetic" or upload is not None:
        config_form(upload, recipe)


choices = present.page_top("Training", (
    "Train the chapter's TinySSD: every step labels the anchors (`multibox_target`), computes "
    "the class and box losses and takes an optimizer step. The job runs in the background on "
    "the server; leave or reload the page and it keeps going. Curves show the book's **class "
    "error** and **box MAE** next to the losses, and each epoch validates (AP50, mAP)."))

# st.stop() is avoided on purpose: under st.navigation it can drop the sidebar and page menu.
listed_runs = job_queue.job_manager().list_runs()
# The form's fold is decided once per session: once there is a run, the run comes first and
# the form waits folded below it (a reload too); it opens by itself only while no run exists.
st.session_state.setdefault(FORM_OPEN_KEY, not listed_runs)
if STARTED_KEY in st.session_state:  # queued by the form on the previous run
    st.session_state[RUN_KEY] = st.session_state.pop(STARTED_KEY)
if listed_runs:
    runs_section(listed_runs, choices)
with st.expander("New run", expanded=st.session_state[FORM_OPEN_KEY] or not listed_runs):
    new_run()
if listed_runs:
    compare(listed_runs)
else:
    st.info("No runs yet: start one above (tiny settings such as 64 px, 64 images and 2 epochs "
            "finish in under a minute on a CPU).")
