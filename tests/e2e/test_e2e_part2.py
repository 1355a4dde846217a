"""Training, Detection and Evaluation in a real browser: each renders without an exception, a
tiny training run goes live and finishes, an uploaded image gets detections; a screenshot per
page goes to test-artifacts/. The server trains into a temporary runs folder."""

from __future__ import annotations

import re

import pytest

from ssd_core.data import SyntheticDetection
from ssd_core.model import feature_map_sizes

from .browser import (
    goto,
    metric_value,
    no_exception,
    nudge_slider,
    shot,
    start_training,
    wait_charts,
    wait_idle,
)

pytestmark = pytest.mark.e2e

# Before the session's server starts (it inherits the environment): keep runs out of the repo.


def test_training_live_run(page, app_url):
    goto(page, f"{app_url}/training", "Training")
    start_training(page)
    page.get_by_text(re.compile(r"finished · run")).first.wait_for(timeout=150_000)
    wait_idle(page, timeout=60)
    no_exception(page)
    assert metric_value(page, "Loss") != "–"
    wait_charts(page, 2)  # curves + preview
    assert page.locator(".js-plotly-plot").count() >= 2
    shot(page, "training")
    page.get_by_role("button", name="Use for detection").click()
    wait_idle(page)
    assert page.get_by_text("best.pt").count() > 0  # the sidebar's active checkpoint


def test_detection_upload(page, app_url, tmp_path):
    goto(page, f"{app_url}/detection", "Detection")
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    shot(page, "detection-sample")
    image = SyntheticDetection(1, seed=3, image_size=320).sample(0)[0]
    path = tmp_path / "upload.png"
    image.save(path)
    page.get_by_text("Upload", exact=True).click()
    wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(path))
    page.get_by_text("upload.png").first.wait_for(timeout=30_000)
    wait_idle(page)
    no_exception(page)
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    # the active model (the training test's 64-px run, else the shipped or untrained one)
    size = int(re.search(r"Input (\d+)×", page.get_by_text(re.compile(r"Input \d+×")).first
                         .inner_text()).group(1))
    assert metric_value(page, "Anchors") == str(sum(4 * s * s for s in feature_map_sizes(size)))
    nudge_slider(page, "Confidence", "ArrowLeft", 40)  # 0.50 -> 0.10: weak models' boxes show
    no_exception(page)
    assert page.get_by_text("320×320").count() > 0
    assert int(metric_value(page, "Detections")) > 0
    shot(page, "detection-upload")
    # a file that is not an image: an error message, and the page keeps working
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(bad))
    page.get_by_text(re.compile("could not be used")).first.wait_for(timeout=30_000)
    no_exception(page)


def test_evaluation(page, app_url):
    goto(page, f"{app_url}/evaluation", "Evaluation")
    page.get_by_text("Confidence-threshold sweep").first.wait_for(timeout=120_000)
    wait_idle(page, timeout=90)
    no_exception(page)
    assert re.fullmatch(r"\d\.\d{3}", metric_value(page, "AP50"))
    shot(page, "evaluation")
    # What the screenshot shows: drawn PR curves (with several classes a legend entry with its
    # AP each; Plotly shows no legend for one) and the sweep with its best-F1 mark.
    pr = page.locator(".js-plotly-plot").filter(has_text="Precision-recall (IoU 0.5)").first
    legend = pr.locator(".legendtext").all_text_contents()
    assert all(re.search(r"\(AP50 \d\.\d{3}\)$", t) for t in legend), legend
    assert pr.locator("path.js-line").count() >= max(1, len(legend))
    sweep = page.locator(".js-plotly-plot").filter(has_text="Confidence-threshold sweep").first
    assert {"precision", "recall", "F1", "best F1"} <= set(
        sweep.locator(".legendtext").all_text_contents())
    assert re.search(r"best F1 \d\.\d{3} at \d\.\d{2}", sweep.text_content())
