"""Experiments: the chapter's Problems answered by measurement. One click queues a matched pair
(or small grid) of short runs on the same data and seed through the server's training queue;
their curves are overlaid and their final AP50 and mAP tabulated with the differences."""

from __future__ import annotations

import figures_metrics
import jobs
import pandas as pd
import present
import streamlit as st

from ssd_core.errors import SSDError
from ssd_core.experiments import (
    EXPERIMENTS,
    experiment_results,
    list_experiments,
    submit_experiment,
)
from ssd_core.recipes import RECIPES
from ssd_core.runs import ACTIVE_STATES, DataSpec

POLL_S = 2.0
ACTIVE = ACTIVE_STATES + ("stopping",)
SHOWN_GROUPS = 5  # the newest experiments drawn in full; older ones are listed


def experiment_form() -> None:
    """Choose a Problem, the recipe the runs start from and their size; queue every arm."""
    keys = list(EXPERIMENTS)
    key = st.selectbox("Problem", keys, key="experiments.key",
                       format_func=lambda k: EXPERIMENTS[k].title)
    exp = EXPERIMENTS[key]
    st.caption(f"The chapter asks: *{exp.problem}* Runs: "
               + " · ".join(f"**{a.label}**" for a in exp.arms))
    c1, c2, c3, c4, c5 = st.columns(5)
    recipe = c1.selectbox("Start from", list(RECIPES), key="experiments.recipe",
                          format_func=lambda r: RECIPES[r].label,
                          help="Every run uses this recipe's settings except the one the "
                               "experiment changes.")
    epochs = c2.number_input("Epochs per run", 1, 50, 3, key="experiments.epochs")
    images = c3.number_input("Training images", 16, 5000, 256, step=16,
                             key="experiments.images")
    val_n = c4.number_input("Validation images", 1, 1000, RECIPES[recipe].val_images,
                            key="experiments.val_n",
                            help="Held-out synthetic images (another seed) scored after each "
                                 "epoch; the same for every run.")
    seed = c5.number_input("Data and model seed", 0, 10**6, 0, key="experiments.seed")
    minutes = len(exp.arms) * epochs * images / 14 / 60  # ~14 img/s on a 2-core CPU at 256 px
    when = "under a minute" if minutes < 1 else f"about {minutes:.0f} min"
    st.caption(f"{len(exp.arms)} runs of {epochs} epochs on the same {images} images; they "
               f"wait in the server's training queue ({when} or less on a laptop CPU, much "
               "less on a GPU).")
    if st.button("Queue the experiment", type="primary", key="experiments.run"):
        r = RECIPES[recipe]
        try:
            base = r.config(epochs=int(epochs), seed=int(seed))
            data = DataSpec(n=int(images), seed=int(seed), val_n=int(val_n),
                            augment=r.augment)
            group = submit_experiment(jobs.job_manager(), key, base, data)
        except SSDError as e:
            st.error(f"The experiment could not start: {e}")
            return
        st.session_state["experiments.last"] = group
        st.success(f"Queued {len(exp.arms)} runs ({group}); they appear below and on the "
                   "Training page.")


def results_table(rows) -> pd.DataFrame:
    def fmt(v, signed=False):
        if v is None:
            return "—"
        v = round(v, 3) + 0.0  # no "-0.000"
        return f"{v:+.3f}" if signed else f"{v:.3f}"

    return pd.DataFrame([{
        "run": r["label"], "state": r["state"], "progress": f"{100 * r['progress']:.0f}%",
        "val AP50": fmt(r["ap50"]), "Δ AP50": fmt(r["d_ap50"], True),
        "val mAP": fmt(r["map"]), "Δ mAP": fmt(r["d_map"], True), "run id": r["run_id"],
    } for r in rows])


def group_panel(group: dict) -> None:
    """One experiment: its table and overlaid curves (a fragment that polls while it runs)."""
    rows = experiment_results(jobs.job_manager(), group)
    st.dataframe(results_table(rows), hide_index=True, width="stretch")
    if any(r["records"] for r in rows):
        present.chart(figures_metrics.training_curves_figure(
            {r["label"]: r["records"] for r in rows}, height=460),
            key=f"experiments.curves.{group['group']}", width="stretch")
    if any(r["state"] in ACTIVE for r in rows):
        st.caption("Running: the table and curves update every few seconds.")
    else:
        done = [r for r in rows if r["ap50"] is not None]
        if len(done) == len(rows) and rows:
            best = max(done, key=lambda r: r["ap50"])
            st.caption(f"Best final validation AP50: **{best['label']}** ({best['ap50']:.3f}). "
                       "Short runs on small data: repeat with another seed before concluding.")


def groups_section() -> None:
    groups = list_experiments(jobs.runs_dir())
    if not groups:
        st.info("No experiments yet: choose a Problem above and queue one.")
        return
    for g in groups[:SHOWN_GROUPS]:
        active = any(r["state"] in ACTIVE for r in experiment_results(jobs.job_manager(), g))
        with st.expander(f"{g.get('title', g['key'])} · {g['group']}", expanded=g is groups[0]):
            st.fragment(run_every=POLL_S if active else None)(group_panel)(g)
    if len(groups) > SHOWN_GROUPS:
        st.caption(f"{len(groups) - SHOWN_GROUPS} older experiment(s): "
                   + ", ".join(g["group"] for g in groups[SHOWN_GROUPS:]))


st.title("Experiments")
st.markdown("The chapter's *Problems* ask what happens if you change the loss, mine the "
            "negatives, weight the losses or enlarge the input. Here each question is a set of "
            "short runs that differ in that one setting only: same images, same seed, same "
            "everything else.")
experiment_form()
st.subheader("Experiments in this runs folder")
groups_section()
