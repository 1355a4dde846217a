"""Hostile uploads in a real browser (Detection page): a 200 MB file is refused by Streamlit's
upload limit (server.maxUploadSize = 50) and the app keeps working; random bytes named
photo.jpg show a clear error and no traceback. Screenshots go to test-artifacts/hostile-*.png."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from .browser import goto, metric_value, no_exception, shot, wait_idle

pytestmark = pytest.mark.e2e

# Before the session's server starts (it inherits the environment): keep runs out of the repo.

FILE_INPUT = '[data-testid="stFileUploader"] input[type="file"]'


def no_traceback(page) -> None:
    no_exception(page)
    body = page.inner_text("body")
    assert "Traceback" not in body and 'File "/' not in body


def upload_source(page, app_url: str) -> None:
    goto(page, f"{app_url}/detection", "Detection")
    page.get_by_text("Upload", exact=True).click()
    wait_idle(page)
    hint = page.get_by_text("Choose an image file to detect objects in.")
    hint.wait_for(timeout=30_000)
    assert "At most 50 MB per file" in hint.inner_text()  # the limit, said before it bites


def test_oversized_upload_is_refused_and_the_app_keeps_working(page, app_url, tmp_path):
    upload_source(page, app_url)
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.truncate(200 * 1024 * 1024)  # sparse: 200 MB of zeros, no disk used
    page.locator(FILE_INPUT).set_input_files(str(huge))
    # Streamlit marks the file red (for screen readers: an alert with the reason) and never
    # sends it; hovering the file shows the reason.
    chip = page.locator('[data-testid="stFileChip"][aria-invalid="true"]')
    chip.wait_for(timeout=30_000)
    refusal = page.get_by_role("alert").filter(
        has_text=re.compile(r"File must be 50(\.0)? ?MB or smaller"))
    assert refusal.count() == 1
    wait_idle(page)
    no_traceback(page)
    assert page.locator(".js-plotly-plot").count() == 0  # nothing was run on it
    assert page.get_by_text("At most 50 MB per file").count() == 1
    chip.hover()
    page.get_by_text(re.compile(r"File must be 50(\.0)? ?MB or smaller")).last.wait_for(
        timeout=10_000)
    shot(page, "hostile-oversize")

    # A real image next: detections, no error.
    small = tmp_path / "after.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)).save(small)
    page.locator(FILE_INPUT).set_input_files(str(small))
    page.get_by_text("after.png").first.wait_for(timeout=30_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    wait_idle(page)
    no_traceback(page)
    assert page.get_by_text("160×120").count() > 0  # the caption: the image as uploaded
    assert int(metric_value(page, "Anchors")) > 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    shot(page, "hostile-after-oversize")


def test_random_bytes_named_photo_jpg_is_a_clear_error(page, app_url, tmp_path):
    upload_source(page, app_url)
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(np.random.default_rng(1).bytes(4096).lstrip(b"\x89\xff"))
    page.locator(FILE_INPUT).set_input_files(str(bad))
    alert = page.locator('[data-testid="stAlertContentError"]').filter(
        has_text="could not be used")
    alert.first.wait_for(timeout=30_000)
    wait_idle(page)
    text = alert.first.inner_text()
    assert "photo.jpg" in text and "not a recognised image" in text, text
    assert "Choose an image file in one of PNG, JPEG" in text, text
    assert "numpy" not in text
    no_traceback(page)
    assert page.locator(".js-plotly-plot").count() == 0
    shot(page, "hostile-random-bytes")
