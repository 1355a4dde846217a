"""The Experiments page and the training replay in a real browser: one click queues a matched
pair of runs, the page tabulates and overlays them once they finish; one arm's run opened on
the Training page replays its epochs with the slider. Screenshots in test-artifacts/."""

from __future__ import annotations

import os
import re

import pytest

from ssd_core.experiments import list_experiments

from .browser import drawn, fill_fields, goto, no_exception, nudge_slider, shot, wait_idle

pytestmark = pytest.mark.e2e


def test_experiment_pair_and_training_replay(page, app_url):
    goto(page, f"{app_url}/experiments", "Experiments")
    fill_fields(page, [("Epochs per run", "2"), ("Training images", "16"),
                       ("Validation images", "8")])
    wait_idle(page)
    page.get_by_role("button", name="Queue the experiment").click()
    page.get_by_text(re.compile(r"Queued 2 runs")).first.wait_for(timeout=60_000)
    # both arms finish (they queue behind any run another test left in the shared server)
    page.get_by_text(re.compile("Best final validation AP50")).first.wait_for(timeout=600_000)
    wait_idle(page, timeout=60)
    no_exception(page)
    panel = page.locator('[data-testid="stExpander"]').filter(
        has_text="L1 vs smooth-L1 box loss").first
    assert panel.get_by_text("Best final validation AP50").count() == 1
    plot = drawn(panel.locator(".js-plotly-plot").first, timeout=30)
    legend = " ".join(plot.locator(".legend .legendtext").all_text_contents())
    assert "L1 (book)" in legend and "smooth-L1, sigma 1" in legend
    shot(page, "experiments-pair")

    group = list_experiments(os.environ["SSD_RUNS_DIR"])[0]  # the server's runs folder
    assert group["key"] == "box_loss" and len(group["runs"]) == 2
    run_id = group["runs"][0]["run_id"]
    goto(page, f"{app_url}/training?run={run_id}", "Training")
    page.get_by_text("Replay: the fixed image after epoch").first.wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"Epoch 2: detections")).first.wait_for(timeout=30_000)
    nudge_slider(page, "Replay", "Home")
    page.get_by_text(re.compile(r"Epoch 1: detections")).first.wait_for(timeout=30_000)
    wait_idle(page)
    no_exception(page)
    assert page.get_by_text("objects' accuracy").count() > 0  # beside the book's class error
    shot(page, "training-replay-epoch1")
