"""Experiments: the chapter's Problems answered by measurement. One click queues a matched pair
(or small grid) of short runs on the same data and seed through the server's training queue;
their curves are overlaid and their final AP50 and mAP tabulated with the differences."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import figures_metrics, job_queue, present
from ssd_core.errors import SSDError
from ssd_core.experiments import (
    EXPERIMENTS,
    experiment_results,
    list_experiments,
    submit_experiment,
    verdict,
)
from ssd_core.recipes import RECIPES
from ssd_core.runfolder import ACTIVE
from ssd_core.runs import DataSpec

POLL_S = 2.0
SHOWN_GROUPS = 5  # the newest experiments drawn in full; older ones are listed
# The defaults: the Classroom demo for 2 epochs of 4096 images, past its warm-up by far.
# Measured (box_loss, 2026-12-07, validation on 64 images), final AP50 after epoch 2:
#   seed 0: L1 0.668, smooth-L1 0.697 (difference 0.029; machine busy: 1688 s and 2601 s)
#   seed 1: L1 0.597, smooth-L1 0.605 (difference 0.008; the smooth-L1 arm took 190 s with the
#           machine less busy, the L1 arm 813 s beside other work)
# so both arms answer well above AP50 0.5, and one arm's final AP50 moves by 0.07 (L1) and
# 0.09 (smooth-L1) between seeds: more than the arms differ. (Seed 0 ran before the weights
# were drawn from the run's own generator, seed 1 after: the same distribution.)
DEFAULT_EPOCHS, DEFAULT_IMAGES = 2, 4096
# Training speed on this project's 2-core CPU in a quiet phase (README, bench/time_to_ap.py:
# the Classroom demo's first 4096 images in about 36 s); a busy machine is much slower (the
# default L1 arm measured on 2026-12-07 with two other test suites running: 4.5-6.9 images/s).
IMAGES_PER_S = {"classroom": 110, "book": 14}
# The run-to-run spread used for a group with one seed per arm: the largest range of one arm's
# final AP50 over the two seeds measured at the defaults (above); a group with several seeds
# per arm measures its own.
DEFAULT_SPREAD_AP50 = 0.09


def experiment_form() -> None:
    """Choose a Problem, the recipe the runs start from and their size; queue every arm."""
    keys = list(EXPERIMENTS)
    key = st.selectbox("Problem", keys, key="experiments.key",
                       format_func=lambda k: EXPERIMENTS[k].title)
    exp = EXPERIMENTS[key]
    st.caption(f"The chapter asks: *{exp.problem}* Runs: "
               + " · ".join(f"**{a.label}**" for a in exp.arms))
    c1, c2, c3, c4, c5, c6 = st.columns(6)
    recipe = c1.selectbox("Start from", list(RECIPES), key="experiments.recipe",
                          format_func=lambda r: RECIPES[r].label,
                          help="Every run uses this recipe's settings except the one the "
                               "experiment changes.")
    epochs = c2.number_input("Epochs per run", 1, 50, DEFAULT_EPOCHS, key="experiments.epochs")
    images = c3.number_input("Training images", 16, 20000, DEFAULT_IMAGES, step=16,
                             key="experiments.images")
    val_n = c4.number_input("Validation images", 1, 1000, RECIPES[recipe].val_images,
                            key="experiments.val_n",
                            help="Held-out synthetic images (another seed) scored after each "
                                 "epoch; the same for every run.")
    seed = c5.number_input("Data and model seed", 0, 10**6, 0, key="experiments.seed")
    seeds = c6.number_input("Seeds per arm", 1, 3, 1, key="experiments.seeds",
                            help="2 or more: every arm runs again with the next seeds, and the "
                                 "verdict compares the arms with their own run-to-run spread.")
    steps = epochs * -(-images // RECIPES[recipe].config().batch_size)
    warmup = RECIPES[recipe].config().warmup_steps
    speed = IMAGES_PER_S.get(recipe, 14)
    minutes = seeds * len(exp.arms) * epochs * images / speed / 60
    when = "under a minute" if minutes < 1 else f"about {minutes:.0f} min"
    st.caption(f"{seeds * len(exp.arms)} runs of {epochs} epochs ({steps} steps) on the same "
               f"{images} images; they wait in the server's training queue ({when} on this "
               "project's 2-core CPU with nothing else running, much longer on a busy one, "
               "much less on a GPU).")
    if steps < 4 * warmup:
        st.warning(f"Only {steps} steps per run, against {warmup} warm-up steps: the runs stop "
                   "before the model finds much, and the arms are unlikely to differ by more "
                   "than chance. The defaults (Classroom demo, "
                   f"{DEFAULT_EPOCHS} × {DEFAULT_IMAGES} images) reach AP50 above 0.5.")
    if st.button("Queue the experiment", type="primary", key="experiments.run"):
        r = RECIPES[recipe]
        try:
            base = r.config(epochs=int(epochs), seed=int(seed))
            data = DataSpec(n=int(images), seed=int(seed), val_n=int(val_n),
                            augment=r.augment)
            group = submit_experiment(job_queue.job_manager(), key, base, data, seeds=int(seeds))
        except SSDError as e:
            st.error(f"The experiment could not start: {e}")
            return
        st.session_state["experiments.last"] = group
        st.success(f"Queued {int(seeds) * len(exp.arms)} runs ({group}); they appear below "
                   "and on the Training page.")


def results_table(rows) -> pd.DataFrame:
    several = len({r.get("seed") for r in rows}) > 1
    def fmt(v, signed=False):
        if v is None:
            return "—"
        v = round(v, 3) + 0.0  # no "-0.000"
        return f"{v:+.3f}" if signed else f"{v:.3f}"

    return pd.DataFrame([{
        "run": r["label"], **({"seed": r["seed"]} if several else {}), "state": r["state"],
        "progress": f"{100 * r['progress']:.0f}%",
        "val AP50": fmt(r["ap50"]), "Δ AP50": fmt(r["d_ap50"], True),
        "val mAP": fmt(r["map"]), "Δ mAP": fmt(r["d_map"], True), "run id": r["run_id"],
    } for r in rows])


def verdict_text(rows) -> str:
    """The answer in words: the best arm only when the arms differ by more than the run-to-run
    spread (the group's own with several seeds, else the one measured at the defaults)."""
    v = verdict(rows, DEFAULT_SPREAD_AP50)
    means = " vs ".join(f"{k} {m:.3f}" for k, m in v["means"].items())
    source = ("measured between this group's seeds" if v["measured"] else
              "measured at the default settings with seeds 0 and 1; queue 2 seeds per arm to "
              "measure this group's own")
    if v["clear"]:
        return (f"Best final validation AP50: **{v['best']}** ({means}). The arms differ by "
                f"{v['difference']:.3f}, more than the run-to-run spread of {v['spread']:.3f} "
                f"({source}).")
    return (f"Best final validation AP50: **no clear difference** ({means}): the arms differ "
            f"by {v['difference']:.3f}, not more than the run-to-run spread of "
            f"{v['spread']:.3f} ({source}).")


def group_panel(group: dict) -> None:
    """One experiment: its curves, table and verdict (a fragment that polls while it runs)."""
    rows = experiment_results(job_queue.job_manager(), group)
    if any(r["records"] for r in rows):
        present.chart(figures_metrics.training_curves_figure(
            {f"{r['label']} (seed {r['seed']})" if len({x.get('seed') for x in rows}) > 1
             else r["label"]: r["records"] for r in rows}, height=460),
            main=True, present_height=420, key=f"experiments.curves.{group['group']}")
    if any(r["state"] in ACTIVE for r in rows):
        st.caption("Running: the table and curves update every few seconds.")
    else:
        done = [r for r in rows if r["ap50"] is not None]
        if len(done) == len(rows) and rows:
            st.caption(verdict_text(rows))
    st.dataframe(results_table(rows), hide_index=True, width="stretch")


def groups_section() -> None:
    groups = list_experiments(job_queue.runs_dir())
    if not groups:
        st.info("No experiments yet: choose a Problem above and queue one.")
        return
    for g in groups[:SHOWN_GROUPS]:
        active = any(r["state"] in ACTIVE for r in experiment_results(job_queue.job_manager(), g))
        with st.expander(f"{g.get('title', g['key'])} · {g['group']}", expanded=g is groups[0]):
            st.fragment(run_every=POLL_S if active else None)(group_panel)(g)
    if len(groups) > SHOWN_GROUPS:
        st.caption(f"{len(groups) - SHOWN_GROUPS} older experiment(s): "
                   + ", ".join(g["group"] for g in groups[SHOWN_GROUPS:]))


choices = present.page_top("Experiments", (
    "The chapter's *Problems* ask what happens if you change the loss, mine the negatives, "
    "weight the losses or enlarge the input. Here each question is a set of short runs that "
    "differ in that one setting only: same images, same seed, same everything else."))
# Once there are experiments they come first; the form to queue another waits in a fold.
if list_experiments(job_queue.runs_dir()):
    with (choices or st).expander("New experiment"):
        experiment_form()
else:
    experiment_form()
if not present.on():
    st.subheader("Experiments in this runs folder")
groups_section()
