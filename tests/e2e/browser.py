"""What the e2e tests do with a page, in one place: wait for Streamlit to go idle, open a page
and wait for its first drawn Plotly chart, fill number fields, start a tiny training run, read
metrics, nudge sliders, take screenshots into test-artifacts/. Timeouts are generous: these
machines share two cores between the server, its training runs and Chromium."""

from __future__ import annotations

import time

from app.serve import ROOT

ARTIFACTS = ROOT / "test-artifacts"


def wait_idle(page, timeout: float = 45.0) -> None:
    """Wait until Streamlit has finished running the script (no status widget for 0.7 s)."""
    deadline = time.time() + timeout
    quiet_since = None
    while time.time() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 0.7:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"the app kept running for more than {timeout:g} s")


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


def goto(page, url: str, heading: str) -> None:
    """Straight to a deep link: the page's heading, an idle script, no exception, and the
    app's navigation (sidebar with the device) even when this is a fresh server's first page."""
    page.goto(url)
    page.get_by_role("heading", name=heading).first.wait_for(timeout=90_000)
    wait_idle(page, timeout=120)
    no_exception(page)
    assert page.locator('[data-testid="stSidebar"]').get_by_text("Device").count() >= 1


def drawn(chart, timeout: float = 90.0):
    """Wait until the Plotly chart ``chart`` (a locator of a ``.js-plotly-plot`` or of an
    element holding one) has drawn its SVG -> ``chart``."""
    chart.locator(".main-svg").first.wait_for(timeout=timeout * 1000)
    return chart


def open_page(page, url: str, heading: str) -> None:
    """goto, then wait until the page's first Plotly chart has drawn its SVG."""
    goto(page, url, heading)
    drawn(page.locator(".js-plotly-plot").first)
    no_exception(page)


def wait_charts(page, count: int, timeout: float = 60.0) -> None:
    """Wait until at least ``count`` Plotly charts have drawn their SVG. Charts draw after the
    script run ends, and a session's first chart waits for the Plotly bundle to load: on a
    busy machine that takes longer than wait_idle's quiet period."""
    drawn(page.locator(".js-plotly-plot").nth(count - 1), timeout)


def shot(page, name: str, locator=None) -> None:
    """Screenshot the whole page (or one element) to test-artifacts/<name>.png."""
    page.wait_for_timeout(500)  # let Plotly finish drawing
    target = locator if locator is not None else page
    kwargs = {} if locator is not None else {"full_page": True}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(ARTIFACTS / f"{name}.png"), **kwargs)


def metric(page, label: str):
    m = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return m.locator('[data-testid="stMetricValue"]')


def metric_value(page, label: str) -> str:
    return metric(page, label).inner_text()


def nudge_slider(page, label: str, key: str = "ArrowRight", times: int = 1) -> None:
    """Move the Streamlit slider whose label contains ``label`` with the keyboard."""
    block = page.locator('[data-testid="stSlider"]').filter(has_text=label).first
    handle = block.locator('input[type="range"]').first
    handle.focus()
    for _ in range(times):
        handle.press(key)
    page.wait_for_timeout(500)  # the status widget shows up only once the rerun is underway
    wait_idle(page)


def fill_fields(page, fields) -> None:
    """Type each ``(label, value)`` into the input labelled exactly ``label``; Tab commits it."""
    for label, value in fields:
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Tab")


TINY_RUN = [("Training images", "8"), ("Validation images", "4"), ("Epochs", "3"),
            ("Batch size", "4")]


def start_training(page, fields=TINY_RUN) -> None:
    """On the Training page's New run form: ``fields`` filled, the smallest input size (64 px),
    then Start training."""
    fill_fields(page, fields)
    nudge_slider(page, "Input size", "Home")  # 64 px
    page.get_by_role("button", name="Start training").click()
