"""Issue 21, "Ready for the projector": every page at 1280x720 in Chromium, with and without
presentation mode (``?present=1``). A screenshot of what the screen shows goes to
test-artifacts/projector-<page>-<mode>.png; the page's main figure must be whole in the viewport
in presentation mode and start above the fold without it; the chart text Chromium draws (the
SVG text of every Plotly chart on screen) is at least 13 px, 16 px in presentation mode.

The test first trains a tiny run (Training) and queues a tiny experiment (Experiments), so those
pages have a run to show."""

from __future__ import annotations

import re

import pytest

from .browser import ARTIFACTS, drawn, fill_fields, goto, no_exception, start_training, wait_idle

pytestmark = pytest.mark.e2e

WIDTH, HEIGHT = 1280, 720
# page path -> (heading, CSS selector of the main figure)
PAGES = {
    "": ("SSD Explorer", ".st-key-diagram .js-plotly-plot"),
    "chapter": ("Chapter", ".st-key-chapter-toc"),
    "anchors": ("Anchors", ".st-key-anchor_chart .js-plotly-plot"),
    "labeling": ("Labeling", ".st-key-labeling_chart .js-plotly-plot"),
    "losses": ("Losses", ".st-key-smooth_l1_chart .js-plotly-plot"),
    "model": ("Model", ".st-key-model_diagram .js-plotly-plot"),
    "training": ("Training", ".st-key-training_preview .js-plotly-plot"),
    "detection": ("Detection", ".st-key-detection_chart .js-plotly-plot"),
    "evaluation": ("Evaluation", ".st-key-evaluation-pr .js-plotly-plot"),
    "experiments": ("Experiments", "[class*='st-key-experiments-curves'] .js-plotly-plot"),
}
# the smallest font size Chromium draws for the SVG text of the charts in the viewport
MIN_FONT_JS = """() => {
  const sizes = [];
  for (const t of document.querySelectorAll('.js-plotly-plot text')) {
    const r = t.getBoundingClientRect();
    if (!t.textContent.trim() || r.width === 0 || r.bottom < 0 || r.top > window.innerHeight)
      continue;
    sizes.push([parseFloat(getComputedStyle(t).fontSize), t.textContent.slice(0, 30)]);
  }
  sizes.sort((a, b) => a[0] - b[0]);
  return sizes.slice(0, 3);
}"""


@pytest.fixture
def screen(browser):
    ctx = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    p = ctx.new_page()
    yield p
    ctx.close()


def tiny_runs(page, app_url) -> None:
    """A tiny training run and a tiny experiment in the server's runs folder, both finished."""
    goto(page, f"{app_url}/training", "Training")
    if page.get_by_text(re.compile(r"finished · run")).count() == 0:
        form = page.get_by_text("New run").first
        if page.get_by_label("Training images", exact=True).count() == 0:
            form.click()
        start_training(page)
        page.get_by_text(re.compile(r"finished · run")).first.wait_for(timeout=300_000)
    goto(page, f"{app_url}/experiments", "Experiments")
    if page.locator("[class*='st-key-experiments-curves']").count() == 0:
        if page.get_by_label("Epochs per run", exact=True).count() == 0:
            page.get_by_text("New experiment").first.click()
        fill_fields(page, [("Epochs per run", "1"), ("Training images", "16"),
                           ("Validation images", "4")])
        wait_idle(page)
        page.get_by_role("button", name="Queue the experiment").click()
        drawn(page.locator("[class*='st-key-experiments-curves']"), timeout=600)


def test_every_page_on_a_projector(browser, screen, app_url):
    tiny_runs(screen, app_url)
    failures = []
    for present in (False, True):
        mode = "present" if present else "normal"
        for path, (heading, main) in PAGES.items():
            name = f"projector-{path or 'overview'}-{mode}"
            url = f"{app_url}/{path}" + ("?present=1" if present else "")
            goto(screen, url, heading)
            figure = screen.locator(main).first
            figure.wait_for(timeout=120_000)
            if ".js-plotly-plot" in main:
                drawn(figure)
            wait_idle(screen, timeout=120)
            screen.wait_for_timeout(800)  # Plotly's last redraw
            no_exception(screen)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            screen.screenshot(path=str(ARTIFACTS / f"{name}.png"))
            box = figure.bounding_box()
            fonts = screen.evaluate(MIN_FONT_JS)
            floor = 16 if present else 13
            if fonts and fonts[0][0] < floor:
                failures.append(f"{name}: chart text {fonts}")
            if box is None:
                failures.append(f"{name}: main figure not drawn")
                continue
            top, bottom = box["y"], box["y"] + box["height"]
            if present:
                sidebar = screen.locator('[data-testid="stSidebar"]').first
                if sidebar.get_attribute("aria-expanded") == "true":
                    failures.append(f"{name}: the sidebar is open")
                if top < 0 or bottom > HEIGHT + 1 or box["x"] + box["width"] > WIDTH + 1:
                    failures.append(f"{name}: main figure at y {top:.0f}-{bottom:.0f}, "
                                    f"not whole in the {HEIGHT}-px viewport")
            elif top > HEIGHT - 150:
                failures.append(f"{name}: main figure starts at y {top:.0f}, below the fold")
    assert failures == [], "\n".join(failures)
