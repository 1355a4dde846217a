"""Issue 21's Detection bug in a real browser: upload one image, replace it with another upload,
and the sliders must still show the thresholds that are applied (0.50 / 0.50); the next touch of
a slider moves it by one step from there, in the URL and in what is applied.

Before the fix both sliders showed 0.00 after the second upload while 0.50 was still applied,
and the next touch applied ``conf=0.01&nms=0``."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from .browser import drawn, goto, no_exception, nudge_slider, shot, wait_idle

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

pytestmark = pytest.mark.e2e

FILE_INPUT = '[data-testid="stFileUploader"] input[type="file"]'


def slider_value(page, label: str) -> str:
    """The value a Streamlit slider shows on its thumb."""
    block = page.locator('[data-testid="stSlider"]').filter(has_text=label).first
    return block.locator('[data-testid="stSliderThumbValue"]').first.inner_text()


def caption(page) -> str:
    """The chart caption, which says which thresholds are applied."""
    return page.get_by_text(re.compile(r"confidence ≥ \d\.\d\d")).first.inner_text()


def upload(page, path, name: str) -> None:
    page.locator(FILE_INPUT).set_input_files(str(path))
    page.get_by_text(name).first.wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    wait_idle(page, timeout=90)
    drawn(page.locator(".js-plotly-plot").first, timeout=60)
    no_exception(page)


def noise(path, seed: int, size=(160, 120)) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(path)


def test_replacing_an_upload_keeps_the_sliders_and_the_url_consistent(page, app_url, tmp_path):
    goto(page, f"{app_url}/detection", "Detection")
    page.get_by_text("Upload", exact=True).click()
    wait_idle(page)
    page.get_by_text("Choose an image file to detect objects in.").wait_for(timeout=30_000)
    a, b = tmp_path / "first.png", tmp_path / "second.png"
    noise(a, 1)
    noise(b, 2, size=(200, 150))

    upload(page, a, "first.png")
    assert slider_value(page, "Confidence threshold") == "0.50"
    assert slider_value(page, "NMS IoU threshold") == "0.50"
    assert "confidence ≥ 0.50, NMS IoU 0.50" in caption(page)

    upload(page, b, "second.png")  # replaces the first upload
    page.get_by_text("200×150").first.wait_for(timeout=30_000)
    shot(page, "detection-upload-swap")
    shown = (slider_value(page, "Confidence threshold"), slider_value(page, "NMS IoU threshold"))
    applied = caption(page)
    assert shown == ("0.50", "0.50"), f"sliders show {shown} while the page applies: {applied}"
    assert "confidence ≥ 0.50, NMS IoU 0.50" in applied
    expect(page).to_have_url(re.compile(r"conf=0\.5(&|$)"))
    expect(page).to_have_url(re.compile(r"nms=0\.5(&|$)"))

    # One step down on the confidence slider: 0.49 applied, NMS untouched.
    nudge_slider(page, "Confidence threshold", "ArrowLeft")
    no_exception(page)
    expect(page).to_have_url(re.compile(r"conf=0\.49(&|$)"), timeout=10_000)
    expect(page).to_have_url(re.compile(r"nms=0\.5(&|$)"))
    assert slider_value(page, "Confidence threshold") == "0.49"
    assert slider_value(page, "NMS IoU threshold") == "0.50"
    assert "confidence ≥ 0.49, NMS IoU 0.50" in caption(page)
