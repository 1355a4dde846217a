"""Chart text is readable on every page (issue 21): every font size in every Plotly figure a
page draws (base font, ticks, axis titles, legends, annotations, box labels, sliders) is at
least 13 px, and at least 16 px in presentation mode (``?present=1``). Read from the figures'
JSON as Streamlit sends them; the e2e screenshot test measures the drawn SVG text as well."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image

from app.figures_style import font_sizes
from ssd_core.userdata import Box, UserDataset
from tests.helpers import encode

from .conftest import app_on_page, charts, registered_pages

PAGES = [Path(p.path).stem for p in registered_pages()]


def small_texts(at, floor: float) -> list:
    """(chart index, path, size) of every font size under ``floor`` on the page, and whether
    each chart sets its base font."""
    out = []
    specs = charts(at)
    for i, spec in enumerate(specs):
        sizes = font_sizes(spec)
        assert any(p == "layout.font" for p, _ in sizes), f"chart {i}: no base font size"
        out += [(i, p, s) for p, s in sizes if s < floor]
    return out


def train_tiny_run(at, runs: Path) -> None:
    """A 3-epoch run of 8 images at 64 px through the Training page, waited for."""
    for key, value in (("training.n", 8), ("training.val_n", 4), ("training.epochs", 3),
                       ("training.batch", 4)):
        at.number_input(key=key).set_value(value)
    at.select_slider(key="training.input_size").set_value(64)
    next(b for b in at.button if b.label == "Start training").click().run()
    deadline = time.time() + 240
    while not any("finished" in m.value for m in at.markdown):
        assert time.time() < deadline
        time.sleep(0.5)
        at.run()
        assert not at.exception


@pytest.mark.parametrize("present", [False, True], ids=["normal", "present"])
def test_every_page_draws_chart_text_at_least_13_px_and_16_in_presentation(
        present, tmp_path, monkeypatch):
    floor = 16 if present else 13
    seen = {}
    for page in PAGES:
        at = app_on_page(page, tmp_path / "runs", monkeypatch, timeout=240)
        if present:
            at.query_params["present"] = "1"
        if page == "teach":  # a set with a boxed photo, on the See SSD step (its charts; the
            # Label step draws with the box editor, whose tag text tests/e2e measures)
            ds = UserDataset.create(tmp_path / "runs", "mugs")
            entry = ds.add_image(encode(Image.new("RGB", (160, 120), (200, 40, 40)), "PNG"))
            ds.set_boxes(entry.id, [Box("mug", 10, 10, 60, 50)])
            at.query_params.update({"set": "mugs", "step": "See SSD", "img": "0"})
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        if page == "training":
            train_tiny_run(at, tmp_path / "runs")
        if page == "losses":  # the second tab's figure and the gradient row too
            at.toggle(key="losses.grad").set_value(True).run()
        seen[page] = len(charts(at))
        assert small_texts(at, floor) == [], page
    # every page with a figure was checked (Chapter, Training, Experiments included)
    assert all(seen[p] > 0 for p in PAGES if p not in ("experiments",)), seen
