"""The Teach page in a real Chromium with Chromium's fake camera playing a short video this test
writes: create a set, take camera snapshots (each click adds one), type a class, draw boxes with
real mouse drags on the photo and find them, with their class and corners, in the set saved in
the runs folder; see SSD on the set; train a tiny teach run through the job queue; detect live
with it (the returned WebRTC video carries its boxes, compared pixel by pixel with the frame
pipeline's drawing). Screenshots in test-artifacts/teach-*.png."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from PIL import Image

from app.serve import CHROMIUM_ARGS, serve

from .browser import ARTIFACTS, no_exception, nudge_slider, shot, wait_idle
from .test_live_e2e import assert_boxes_drawn, grab, press, scene, wait_fps, write_y4m

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
def video(tmp_path_factory):
    """A still synthetic scene as the fake camera's .y4m video -> (RGB array, path)."""
    rgb = scene()
    path = tmp_path_factory.mktemp("teach-camera") / "scene.y4m"
    write_y4m(path, rgb)
    return rgb, path


@pytest.fixture(scope="module")
def camera_page(playwright, chromium_path, video):
    b = playwright.chromium.launch(executable_path=chromium_path, args=[
        *CHROMIUM_ARGS, *FAKE_CAMERA, f"--use-file-for-fake-video-capture={video[1]}"])
    ctx = b.new_context(viewport={"width": 1400, "height": 1100}, permissions=["camera"])
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


def step(page, name: str) -> None:
    page.locator('[data-testid="stButtonGroup"]').get_by_text(name, exact=True).click()
    page.wait_for_timeout(500)
    wait_idle(page, timeout=90)
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
    step(page, "Label")
    page.get_by_text("Photo 1 of 2").wait_for(timeout=60_000)
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Class of the next box")
    box.locator("input").click()
    page.keyboard.type("mug")
    page.keyboard.press("Enter")
    wait_idle(page)
    chart = page.locator(".js-plotly-plot").first
    chart.locator(".main-svg").first.wait_for(timeout=60_000)
    drag(page, chart, 0.20, 0.25, 0.55, 0.70)
    # the chart is drawn again with the saved box (its legend counts it) before the next drag
    chart = page.locator(".js-plotly-plot").filter(has_text="mug (1)").first
    chart.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    drag(page, chart, 0.65, 0.10, 0.90, 0.40)
    try:
        page.locator(".js-plotly-plot").filter(has_text="mug (2)").first.wait_for(
            timeout=60_000)
    except Exception:
        shot(page, "teach-failure")
        raise
    shot(page, "teach-2-label")
    # at 1280x720 (a projector) the photo to draw on starts above the fold
    page.set_viewport_size({"width": 1280, "height": 720})
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "teach-2-label-1280x720.png"))
    top = page.locator(".js-plotly-plot").first.bounding_box()["y"]
    assert top < 720 * 0.7, top
    page.set_viewport_size({"width": 1400, "height": 1100})

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


def test_see_train_and_detect_live(teach_url, camera_page, runs, video):
    """After the first test: SSD on the set, a 1-epoch teach run, its boxes on the live video."""
    from ssd_core.detection import Detector
    from ssd_core.live import FramePipeline

    page = camera_page
    # a refresh left the page on Label with the set chosen
    step(page, "See SSD")
    page.get_by_text("Anchor fit of your boxes").wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").nth(1).locator(".main-svg").first.wait_for(timeout=60_000)
    shot(page, "teach-4-see-ssd")

    step(page, "Train")
    epochs = page.get_by_label("Epochs", exact=True).and_(page.locator("input"))
    epochs.fill("1")
    epochs.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Train on this set").click()
    deadline = time.time() + 300
    while not page.get_by_text("Use this model on every page and detect live").count():
        assert time.time() < deadline, "the teach run did not finish in 5 minutes"
        assert page.get_by_text("Training failed").count() == 0
        page.wait_for_timeout(1000)
    wait_idle(page)
    page.locator(".js-plotly-plot").first.locator(".main-svg").first.wait_for(timeout=60_000)
    shot(page, "teach-5-train")
    run = next(p for p in runs.iterdir() if p.name.endswith("-teach-mugs"))
    det = Detector.from_checkpoint(next(run / f for f in ("best.pt", "checkpoint.pt")
                                        if (run / f).exists()), device="cpu")
    assert list(det.class_names) == ["mug"]

    page.get_by_role("button", name="Use this model on every page and detect live").click()
    wait_idle(page, timeout=90)
    no_exception(page)
    try:
        page.get_by_text("Classes of this model: mug").wait_for(timeout=60_000)
    except Exception:
        shot(page, "teach-failure")
        raise

    # the confidence the live view uses: half the taught model's best score on the scene, so
    # a few of its boxes are drawn (one epoch on two photos scores low)
    rgb, _ = video
    pipe = FramePipeline.from_detector(det, precision="fast")
    best = float(pipe(rgb, 0.0, 0.5).detections.scores.max())
    conf = max(0.0, np.floor(best * 50) / 100)
    expected = pipe(rgb, conf, 0.5)
    assert len(expected.detections) >= 1
    nudge_slider(page, "Confidence threshold", key="Home")
    if conf > 0:
        nudge_slider(page, "Confidence threshold", key="ArrowRight", times=int(round(conf * 100)))
    press(page, "start")
    assert wait_fps(page) > 0
    page.wait_for_timeout(3000)
    got = grab(page)
    Image.fromarray(got).save(ARTIFACTS / "teach-live-frame.png")
    shot(page, "teach-6-live")
    assert_boxes_drawn(got, rgb, expected.image)
    press(page, "stop")
    page.wait_for_timeout(1000)
    wait_idle(page, timeout=120)

    # the taught model is in the model picker of the other pages, with its class
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Detection", exact=True).click()
    # (a loaded machine: the page's first run loads the taught model and runs it)
    page.get_by_role("heading", name="Detection").first.wait_for(timeout=240_000)
    wait_idle(page, timeout=120)
    assert page.locator('[data-testid="stSidebar"]').get_by_text("active:").count() >= 1
    assert page.get_by_text("classes: mug").count() >= 1
    shot(page, "teach-7-detection-page")


def test_collect_grid_and_keep_export(teach_url, camera_page, runs):
    """After the others: the thumbnails show the drawn boxes; Keep exports the set as a zip."""
    import zipfile

    page = camera_page
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Teach", exact=True).click()
    page.get_by_role("heading", name="Teach").first.wait_for(timeout=90_000)
    wait_idle(page, timeout=90)
    step(page, "Collect")
    page.get_by_text("#1 · 2 box(es)").wait_for(timeout=60_000)
    shot(page, "teach-8-collect-with-boxes")
    step(page, "Keep")
    page.get_by_text("Pascal VOC XML").click()
    wait_idle(page)
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name=re.compile("Download mugs-voc.zip")).click()
    with zipfile.ZipFile(info.value.path()) as z:
        names = z.namelist()
    assert sum(n.endswith(".xml") for n in names) == 2, names
    shot(page, "teach-9-keep")
    no_exception(page)
