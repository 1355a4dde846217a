"""The Teach page in a real Chromium with Chromium's fake camera: create a set, take camera
snapshots (each click adds one), type a class, draw boxes with real mouse drags on the photo,
and find them, with their class and corners, in the set saved in the runs folder. Screenshots
in test-artifacts/teach-*.png."""

from __future__ import annotations

import re

import pytest

from tests.server import CHROMIUM_ARGS, serve

from .browser import ARTIFACTS, no_exception, shot, wait_idle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
               "--disable-features=WebRtcHideLocalIpsWithMdns",
               "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("teach-runs")


@pytest.fixture(scope="module")
def teach_url(chromium_path, runs):
    try:
        with serve(ARTIFACTS / "streamlit-teach-server.log",
                   env={"SSD_RUNS_DIR": str(runs)}) as server:
            yield server.url
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def camera_page(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, args=[*CHROMIUM_ARGS,
                                                                    *FAKE_CAMERA])
        ctx = b.new_context(viewport={"width": 1400, "height": 1100},
                            permissions=["camera"])
        yield ctx.new_page()
        b.close()


def saved_set(runs, name):
    from ssd_core.userdata import list_datasets

    return next(s for s in list_datasets(runs) if s.name == name)


def drag(page, chart, fx1, fy1, fx2, fy2) -> None:
    """A real mouse drag over the chart's plot area, from and to fractions of its width/height."""
    area = chart.locator(".nsewdrag").first.bounding_box()
    x = lambda f: area["x"] + f * area["width"]  # noqa: E731
    y = lambda f: area["y"] + f * area["height"]  # noqa: E731
    page.mouse.move(x(fx1), y(fy1))
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x(fx1 + (fx2 - fx1) * k / 10), y(fy1 + (fy2 - fy1) * k / 10))
    page.mouse.up()
    page.wait_for_timeout(800)
    wait_idle(page, timeout=60)
    no_exception(page)


def test_snapshots_and_mouse_drawn_boxes(teach_url, camera_page, runs):
    page = camera_page
    page.goto(f"{teach_url}/teach")
    page.get_by_role("heading", name="Teach").first.wait_for(timeout=90_000)
    wait_idle(page, timeout=120)
    no_exception(page)

    page.get_by_label("Name of a new photo set").fill("mugs")
    page.get_by_role("button", name="Create").click()
    wait_idle(page)
    no_exception(page)

    # two snapshots from the fake camera: each click adds one photo
    for n in (1, 2):
        take = page.get_by_role("button", name=re.compile("Take Photo", re.I))
        take.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)  # the camera stream starts
        take.click()
        page.wait_for_timeout(800)
        wait_idle(page, timeout=60)
        no_exception(page)
        page.get_by_text(f"#{n} · 0 box(es)").wait_for(timeout=60_000)
    assert len(saved_set(runs, "mugs").images) == 2
    shot(page, "teach-1-collect")

    # Label: type a class once, drag two boxes on the first photo
    page.locator('[data-testid="stButtonGroup"]').get_by_text("Label", exact=True).click()
    wait_idle(page)
    page.get_by_text("Photo 1 of 2").wait_for(timeout=60_000)
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Class of the next box")
    box.locator("input").click()
    page.keyboard.type("mug")
    page.keyboard.press("Enter")
    wait_idle(page)
    chart = page.locator(".js-plotly-plot").first
    chart.locator(".main-svg").first.wait_for(timeout=60_000)
    drag(page, chart, 0.20, 0.25, 0.55, 0.70)
    page.get_by_text("Photo 1 of 2** · 1 box(es)").or_(page.get_by_text("1 box(es)")).first \
        .wait_for(timeout=60_000)
    chart = page.locator(".js-plotly-plot").first
    chart.locator(".main-svg").first.wait_for(timeout=60_000)
    drag(page, chart, 0.65, 0.10, 0.90, 0.40)
    page.get_by_text("2 box(es)").first.wait_for(timeout=60_000)
    shot(page, "teach-2-label")

    entry = saved_set(runs, "mugs").images[0]
    assert [b.label for b in entry.boxes] == ["mug", "mug"]
    w, h = entry.width, entry.height
    want = [(0.20, 0.25, 0.55, 0.70), (0.65, 0.10, 0.90, 0.40)]
    for b, (a1, b1, a2, b2) in zip(entry.boxes, want):
        got = (b.x1 / w, b.y1 / h, b.x2 / w, b.y2 / h)
        assert all(abs(g - e) < 0.03 for g, e in zip(got, (a1, b1, a2, b2))), (got, w, h)

    # the boxes survive a refresh: the URL keeps the set, the step and the photo
    page.reload()
    page.get_by_text("2 box(es)").first.wait_for(timeout=90_000)
    wait_idle(page, timeout=120)
    no_exception(page)
    shot(page, "teach-3-refresh")
    assert (ARTIFACTS / "teach-2-label.png").exists()
