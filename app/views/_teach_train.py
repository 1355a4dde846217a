"""Teach, step 4 (Train): one click queues the ``teach`` recipe (ssd_core.recipes: fine-tune the
shipped model with class layers made for the set's classes, strong augmentation, a held-out
validation share) on a frozen copy of the set, through the server's job queue; its progress,
live curves and the replay of every epoch's detections, as on the Training page."""

from __future__ import annotations

import time
import uuid

import streamlit as st

from app import figures, figures_metrics, job_queue, model_picker, present, sample_images
from app.views._training_form import log_every
from ssd_core import runfolder as rf
from ssd_core.data import held_out_count
from ssd_core.errors import SSDError
from ssd_core.recipes import get_recipe, recipe_job
from ssd_core.runfolder import UPLOADS_DIR

POLL_S = 1.0


def run_key(ds) -> str:
    return f"teach.run.{ds.slug}"


def set_runs(ds) -> list:
    """This set's teach runs (their names end with the set's slug), newest first."""
    try:
        listed = job_queue.job_manager().list_runs()
    except OSError:
        return []
    return [r for r in listed if r.run_id.endswith(f"-teach-{ds.slug}")]


def train_photos(ds, recipe) -> int:
    """The photos a teach run of ``ds`` trains on: all but the recipe's held-out share."""
    n = len(ds)
    return n - held_out_count(n, recipe.holdout) if n >= 2 else n


def start(ds, epochs: int) -> None:
    """Freeze the set (a snapshot: the run never sees its photos change) and queue the teach
    recipe on it."""
    try:
        with st.spinner("Freezing a copy of the photos for the run ..."):
            frozen = ds.snapshot(job_queue.runs_dir() / UPLOADS_DIR /
                                 f"teach-{ds.slug}-{time.strftime('%Y%m%d-%H%M%S')}-"
                                 f"{uuid.uuid4().hex[:6]}")
        recipe = get_recipe("teach")
        config, data, init = recipe_job(
            "teach", path=frozen, fmt="coco", epochs=int(epochs),
            log_every=log_every(train_photos(ds, recipe), recipe.config().batch_size))
        run_id = job_queue.job_manager().submit(config, data, f"teach-{ds.slug}", init=init)
    except (SSDError, ValueError, OSError) as e:
        st.error(f"Training could not start: {e}")
        return
    st.session_state[run_key(ds)] = run_id
    st.query_params["run"] = run_id
    st.rerun()


def replay(snap) -> None:
    """The fixed photo after the epoch the slider picks (the newest by default)."""
    done = [p for p in snap.previews if isinstance(p.get("epoch"), int)]
    if not done:
        st.caption("After each epoch the model's boxes on a held-out photo appear here.")
        return
    epochs = [p["epoch"] for p in done]
    epoch = epochs[-1] if len(epochs) < 2 else st.select_slider(
        "Replay: the held-out photo after epoch", epochs, value=epochs[-1],
        key=f"teach.replay.{snap.run_id}.{len(epochs)}")
    p = next(p for p in done if p["epoch"] == epoch)
    try:
        image = sample_images.open_png(job_queue.preview_image(str(snap.path)))
    except (OSError, ValueError, RuntimeError) as e:
        st.caption(f"The preview photo could not be rebuilt ({e}).")
        return
    w, h = image.size
    s = [w, h, w, h]
    dets, gts, names = p.get("detections", []), p.get("ground_truth", []), p.get(
        "class_names", [])
    fig = figures.detections_figure(
        image, [[v * k for v, k in zip(r[2:6], s)] for r in dets], [r[1] for r in dets],
        [int(r[0]) for r in dets], names, gt_boxes=[[v * k for v, k in zip(g[1:5], s)]
                                                   for g in gts],
        gt_labels=[int(g[0]) for g in gts], height=360,
        title=f"Epoch {epoch}: boxes with score ≥ 0.3")
    present.chart(fig, width="stretch", key="teach_preview")


def use_model(ckpt: str) -> None:
    """Button callback: the run's checkpoint becomes the active model; on to step 5."""
    st.session_state[model_picker.ACTIVE_KEY] = ckpt
    st.session_state["teach.step"] = "Detect live"


def panel(run_id: str, was_live: bool) -> None:
    """One run's state, progress, curves and replay; polled while it trains."""
    snap = job_queue.live_snapshot(run_id, was_live)
    if snap is None:
        return
    st.markdown(f"**{snap.state}** · run `{snap.run_id}` · {snap.message}")
    if snap.init_report:
        st.caption(snap.init_report)
    if snap.state == rf.FAILED:
        st.error(f"Training failed: {snap.message}")
    last = snap.records[-1] if snap.records else {}
    st.progress(snap.progress, text=f"epoch {last.get('epoch', 0)}/"
                f"{last.get('epochs', snap.config.get('epochs', '?'))} · step "
                f"{last.get('step', 0)}/{last.get('total_steps', '?')}")
    left, right = st.columns([1.6, 1])
    with left:
        if snap.records:
            present.chart(figures_metrics.training_curves_figure({snap.run_id: snap.records},
                                                                   height=420),
                            width="stretch", key="teach_curves")
        else:
            st.caption("Curves appear after the first logged steps.")
    with right:
        replay(snap)
    ckpt = snap.checkpoint
    if ckpt is not None and snap.state not in rf.ACTIVE and st.button(
            "Use this model on every page and detect live", key="teach.use",
            icon=":material/center_focus_strong:", on_click=use_model, args=(str(ckpt),),
            help="Makes it the active model of every page's model picker."):
        st.rerun()  # the whole page (this runs in a fragment): on to step 5


def train(ds) -> None:
    """Step 4."""
    recipe = get_recipe("teach")
    problems = ds.problems()
    needs = {c: k for c, k in ds.needs().items() if k}
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    epochs = c1.number_input("Epochs", 1, 500, int(recipe.settings.get("epochs", 30)),
                             key="teach.epochs", help="The teach recipe's measured schedule; "
                             "fewer epochs finish sooner and fit less.")
    go = c2.button("Train on this set", type="primary", icon=":material/model_training:",
                   key="teach.train", disabled=bool(problems))
    for p in problems:
        st.error(p)
    if needs and not problems:
        st.warning("It can train, but a first model wants more boxes: " + ", ".join(
            f"{k} more of {c}" for c, k in needs.items()) + ".")
    cfg = recipe.config(epochs=int(epochs))
    n = train_photos(ds, recipe)
    per_epoch = -(-n // cfg.batch_size)
    run_epochs = cfg.epochs_for(per_epoch)  # as the Trainer will
    steps = run_epochs * per_epoch
    more = (f" (at least {cfg.min_steps} steps however few the photos: {run_epochs} epochs)"
            if run_epochs > cfg.epochs else "")
    st.caption(f"The teach recipe: starts from the shipped model (class layers made anew for "
               f"{', '.join(ds.class_names) or 'your classes'}), strong augmentation, "
               f"{recipe.holdout:.0%} of the photos held out to validate; {n} photo(s) to "
               f"train on in batches of {cfg.batch_size}: {steps} steps{more}.")
    if go:
        start(ds, epochs)
    runs = set_runs(ds)
    ids = [r.run_id for r in runs]
    run_id = st.session_state.get(run_key(ds), st.query_params.get("run"))
    if run_id not in ids:
        run_id = ids[0] if ids else None
    if run_id is None:
        st.info("No model taught on this set yet.")
        return
    live = next(r for r in runs if r.run_id == run_id).state in rf.ACTIVE
    st.fragment(run_every=POLL_S if live else None)(panel)(run_id, live)
