"""Issue 13 in a real browser: the Chapter page, the Model page's receptive-field view picked
by a click, and the Anchors page's new default; screenshots go to test-artifacts/."""

from __future__ import annotations

import re

import pytest

from .browser import open_page, shot, wait_idle

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

pytestmark = pytest.mark.e2e

# Client pixel position of a data point (x, y) in a Plotly graph div.
POINT_JS = """(gd, xy) => {
    const fl = gd._fullLayout, r = gd.getBoundingClientRect();
    return [r.left + fl.xaxis._offset + fl.xaxis.l2p(xy[0]),
            r.top + fl.yaxis._offset + fl.yaxis.l2p(xy[1])];
}"""


def view_of(page, name: str, text) -> None:
    """Scroll the element showing ``text`` to the top of the viewport, then screenshot it."""
    page.get_by_text(text).first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    shot(page, name)


def test_chapter_page(page, app_url):
    open_page(page, f"{app_url}/chapter", "Chapter")
    for text in ("((2, 55, 20, 20), (2, 33, 10, 10))", "(2, 25300)", "(2, 10, 10, 10)",
                 "(2, 64, 32, 32)", "output anchors: (1, 5444, 4)"):
        assert page.get_by_text(text, exact=False).count() > 0, text
    assert page.get_by_text(re.compile(r"epoch +\d+, class err .* sec")).count() > 0
    assert page.get_by_text(re.compile(r"examples/sec on cpu")).count() > 0
    assert page.locator('[data-testid="stPageLink"]').count() >= 25
    shot(page, "chapter-top")
    view_of(page, "chapter-tinyssd", "In [13]")
    view_of(page, "chapter-training", "In [18]")
    # the prediction: the shipped model's boxes drawn over the sample (an image in the plot)
    plot = page.locator(".js-plotly-plot").first
    plot.scroll_into_view_if_needed()
    assert plot.locator("image").count() >= 1
    prediction = page.locator('[data-testid="stHorizontalBlock"]').filter(
        has=page.locator(".js-plotly-plot")).first
    shot(page, "chapter-prediction", prediction)
    view_of(page, "chapter-problems", "Training and prediction")
    # a cell's link opens the page that explores it
    page.get_by_role("link", name=re.compile("receptive fields: 1×2")).first.click()
    page.get_by_role("heading", name="Model").first.wait_for(timeout=45_000)
    expect(page).to_have_url(re.compile(r"/model"))


def test_model_receptive_field_click(page, app_url):
    open_page(page, f"{app_url}/model?rf_scale=1", "Model")
    page.get_by_text("Receptive field of one cell").first.wait_for(timeout=30_000)
    wait_idle(page)
    plots = page.locator(".js-plotly-plot")
    expect(plots).to_have_count(3, timeout=30_000)
    rf = plots.nth(2)
    rf.scroll_into_view_if_needed()
    page.get_by_text(re.compile(r"Cell \(8, 8\) sees")).first.wait_for(timeout=15_000)
    # click the centre of cell (row 3, col 12) of the 16x16 map: ((12 + .5) * 16, (3 + .5) * 16)
    x, y = rf.evaluate(POINT_JS, [12.5 * 16, 3.5 * 16])
    page.mouse.click(x, y)
    page.wait_for_timeout(500)
    wait_idle(page)
    page.get_by_text(re.compile(r"Cell \(3, 12\) sees")).first.wait_for(timeout=15_000)
    expect(page).to_have_url(re.compile(r"rf_row=3"), timeout=10_000)
    expect(page).to_have_url(re.compile(r"rf_col=12"), timeout=10_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    block = page.locator('[data-testid="stHorizontalBlock"]').filter(
        has_text=re.compile(r"Cell \(3, 12\) sees")).last
    shot(page, "model-receptive-field", block)
    # the last block: one cell whose field (508 px) reaches far into the zero padding
    page.get_by_text("4 (1×1)").first.click()
    page.wait_for_timeout(500)
    wait_idle(page)
    page.get_by_text(re.compile(r"Cell \(0, 0\) sees x -126\.\.382")).first.wait_for(
        timeout=15_000)
    block = page.locator('[data-testid="stHorizontalBlock"]').filter(
        has_text=re.compile(r"Cell \(0, 0\) sees")).last
    shot(page, "model-receptive-field-global", block)


def test_anchors_default_is_one_scale_one_cell(page, app_url):
    open_page(page, f"{app_url}/anchors", "Anchors")
    expect(page).to_have_url(re.compile(r"scale=3"), timeout=10_000)
    page.get_by_text("cell (4, 4)").first.wait_for(timeout=15_000)
    checked = page.locator('[data-testid="stRadio"]').filter(has_text="Scale").locator(
        'input[type="radio"]:checked')
    assert checked.count() == 1
    shot(page, "anchors-default")


@pytest.mark.slow
def test_chapter_training_cell_runs_for_real(page, app_url):
    """The In [18] button trains TinySSD for real on the server (about a minute on 2 cores)."""
    open_page(page, f"{app_url}/chapter", "Chapter")
    page.get_by_role("button", name=re.compile(r"Run In \[18\] for real")).click()
    page.get_by_text(re.compile(r"From a real run: 8 synthetic 'book' images")).first.wait_for(
        timeout=300_000)
    wait_idle(page, timeout=60)
    printed = page.locator('[data-testid="stCode"]').filter(
        has_text=re.compile(r"epoch +1, class err")).first.inner_text()
    assert re.search(r"epoch +5, class err", printed), printed
    assert re.search(r"examples/sec on cpu", printed), printed
    assert page.locator('[data-testid="stException"]').count() == 0
    view_of(page, "chapter-training-run", "In [18]")
