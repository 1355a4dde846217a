"""The Teach page in a real Chromium with Chromium's fake camera playing a short video
(conftest.py's camera_video): create a set, take camera snapshots (each click adds one), type
two classes, and with real mouse drags in the box editor draw boxes (one before any class is
chosen: refused with what to do), move one, resize one and delete two (the Delete key, the x in
the tag); the set saved in the runs folder (its COCO JSON) holds exactly the boxes left, with
their classes and corners. Then see SSD on the set; train a tiny teach run through the job
queue; detect live with it (the returned WebRTC video carries its boxes, compared pixel by pixel
with the frame pipeline's drawing). Screenshots in test-artifacts/teach-*.png (teach-2-label.png
is the README's first screenshot)."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from PIL import Image

from app.serve import serve

from .browser import ARTIFACTS, no_exception, nudge_slider, shot, wait_idle
from .test_live_e2e import assert_boxes_drawn, grab, press, wait_fps

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOLERANCE = 3.0  # image px between where the mouse went and the corner saved


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
def camera_page(camera_browser):
    ctx = camera_browser.new_context(viewport={"width": 1400, "height": 1100},
                                     permissions=["camera"])
    yield ctx.new_page()
    ctx.close()


def saved_set(runs, name):
    from ssd_core.userdata import list_datasets

    return next(s for s in list_datasets(runs) if s.name == name)


def saved_boxes(runs, name: str) -> list[tuple]:
    """The first photo's boxes as the set's COCO JSON in the runs folder has them:
    ``(class, x1, y1, x2, y2)`` in image pixels, in the order saved."""
    path = saved_set(runs, name).path / "annotations.json"
    coco = json.loads(path.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    first = min(im["id"] for im in coco["images"])
    return [(names[a["category_id"]], a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
             a["bbox"][1] + a["bbox"][3])
            for a in sorted(coco["annotations"], key=lambda a: a["id"])
            if a["image_id"] == first]


def near(got: list[tuple], want: list[tuple]) -> bool:
    return len(got) == len(want) and all(
        g[0] == w[0] and all(abs(a - b) <= TOLERANCE for a, b in zip(g[1:], w[1:]))
        for g, w in zip(got, want))


def wait_saved(page, runs, want: list[tuple], timeout: float = 60.0) -> None:
    """Wait until the set on disk holds ``want`` (within TOLERANCE px) and the app is idle."""
    deadline = time.time() + timeout
    while not near(got := saved_boxes(runs, "mugs"), want):
        if time.time() > deadline:
            shot(page, "teach-failure")
            raise AssertionError(f"saved {got}, wanted {want} (test-artifacts/teach-failure.png)")
        page.wait_for_timeout(250)
    wait_idle(page, timeout=60)
    no_exception(page)
    assert page.locator('[data-testid="stAlert"]').filter(
        has_text="could not be saved").count() == 0


class Photo:
    """The box editor's photo on the page (inside the component's shadow root, which
    Playwright's CSS locators pierce): image pixels -> page coordinates, and mouse gestures."""

    def __init__(self, page, width: int, height: int):
        self.page, self.width, self.height = page, width, height
        self.stage = page.locator(".stBidiComponent .be-stage").first

    def xy(self, x: float, y: float) -> tuple[float, float]:
        r = self.stage.bounding_box()
        return r["x"] + x * r["width"] / self.width, r["y"] + y * r["height"] / self.height

    def drag(self, start, end, steps: int = 12) -> None:
        """A real mouse drag between two page points."""
        m = self.page.mouse
        m.move(*start)
        m.down()
        for k in range(1, steps + 1):
            m.move(start[0] + (end[0] - start[0]) * k / steps,
                   start[1] + (end[1] - start[1]) * k / steps)
        m.up()

    def drag_px(self, x1, y1, x2, y2) -> None:
        """Drag from image pixel (x1, y1) to (x2, y2)."""
        self.drag(self.xy(x1, y1), self.xy(x2, y2))

    def click_px(self, x, y) -> None:
        self.page.mouse.click(*self.xy(x, y))


def pick_class(page, name: str) -> None:
    """Type a class name into "Class of the next box" (new: it becomes one of the set's)."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Class of the next box")
    box.locator("input").click()
    page.keyboard.type(name)
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    wait_idle(page)
    deadline = time.time() + 30
    while box.locator("input").input_value() != name:  # the picker shows the class
        if time.time() > deadline:
            shot(page, "teach-failure")
            raise AssertionError(f"the class picker did not take {name!r}")
        page.wait_for_timeout(250)


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

    # Label: with the mouse in the box editor, two classes typed once each
    step(page, "Label")
    page.get_by_text("Photo 1 of 2").wait_for(timeout=60_000)
    entry = saved_set(runs, "mugs").images[0]
    photo = Photo(page, entry.width, entry.height)
    photo.stage.wait_for(timeout=60_000)
    # Where the mouse goes, in fractions of the photo (a camera snapshot's size is the
    # browser's choice) -> image pixels, and the boxes expected there.
    w, h = photo.width, photo.height

    def px(*f):  # fractions (x, y, x, y...) -> image pixels
        return tuple(v * (w if k % 2 == 0 else h) for k, v in enumerate(f))

    def want(label, *f):
        x1, y1, x2, y2 = px(*f)
        return label, min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)

    # no class chosen yet: the drawn box is refused, said, and not left on the photo
    photo.drag_px(*px(0.10, 0.15, 0.40, 0.55))
    page.get_by_text("Choose or type the class name first, then draw the box again.").wait_for(
        timeout=60_000)
    wait_idle(page)
    assert page.locator(".stBidiComponent .be-box").count() == 0
    assert saved_boxes(runs, "mugs") == []
    pick_class(page, "mug")
    photo.drag_px(*px(0.10, 0.15, 0.40, 0.55))  # A, a mug
    a = want("mug", 0.10, 0.15, 0.40, 0.55)
    wait_saved(page, runs, [a])
    pick_class(page, "cup")
    photo.drag_px(*px(0.85, 0.45, 0.55, 0.10))  # B, a cup (dragged up and left)
    b = want("cup", 0.55, 0.10, 0.85, 0.45)
    wait_saved(page, runs, [a, b])
    photo.drag_px(*px(0.55, 0.60, 0.80, 0.85))  # C
    wait_saved(page, runs, [a, b, want("cup", 0.55, 0.60, 0.80, 0.85)])
    # a tiny drag is a click, not a box
    photo.drag_px(*px(0.03, 0.88, 0.03 + 1 / w, 0.88 + 1 / h))
    page.wait_for_timeout(1500)
    assert len(saved_boxes(runs, "mugs")) == 3
    # C (selected since drawn) deleted with the keyboard
    photo.click_px(*px(0.67, 0.72))
    page.keyboard.press("Delete")
    wait_saved(page, runs, [a, b])
    # D drawn, then deleted with the x in its tag
    photo.drag_px(*px(0.06, 0.70, 0.30, 0.92))
    wait_saved(page, runs, [a, b, want("cup", 0.06, 0.70, 0.30, 0.92)])
    page.locator(".stBidiComponent .be-box.be-selected .be-x").click()
    wait_saved(page, runs, [a, b])
    # A moved by (+0.05, +0.10) of the photo: dragged from inside it
    photo.drag_px(*px(0.25, 0.35, 0.30, 0.45))
    a = want("mug", 0.15, 0.25, 0.45, 0.65)
    wait_saved(page, runs, [a, b])
    # B resized by its bottom-right handle (a click selects it; the handles show)
    photo.click_px(*px(0.70, 0.28))
    handle = page.locator(".stBidiComponent .be-box.be-selected .be-h-se")
    handle.wait_for(timeout=10_000)
    r = handle.bounding_box()
    photo.drag((r["x"] + r["width"] / 2, r["y"] + r["height"] / 2), photo.xy(*px(0.90, 0.55)))
    b = want("cup", 0.55, 0.10, 0.90, 0.55)
    wait_saved(page, runs, [a, b])
    assert near(saved_boxes(runs, "mugs"), [a, b])
    assert saved_set(runs, "mugs").class_names == ["mug", "cup"]
    page.get_by_text("Photo 1 of 2 · 2 box(es)").wait_for(timeout=30_000)
    # the editor shows the saved boxes, each tagged with its class in text of at least 13 px
    tags = page.locator(".stBidiComponent .be-tag")
    assert sorted(page.locator(".stBidiComponent .be-name").all_inner_texts()) == [
        "1 mug", "2 cup"]
    sizes = [float(t.evaluate("e => getComputedStyle(e).fontSize").rstrip("px"))
             for t in tags.all()]
    assert min(sizes) >= 13, sizes
    no_exception(page)
    shot(page, "teach-2-label")
    # at 1280x720 (a projector) the photo to draw on starts above the fold
    page.set_viewport_size({"width": 1280, "height": 720})
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "teach-2-label-1280x720.png"))
    top = photo.stage.bounding_box()["y"]
    assert top < 720 * 0.7, top
    page.set_viewport_size({"width": 1400, "height": 1100})

    # the boxes survive a refresh: the URL keeps the set, the step and the photo
    page.reload()
    page.get_by_text("2 box(es)").first.wait_for(timeout=90_000)
    wait_idle(page, timeout=120)
    no_exception(page)
    page.locator(".stBidiComponent .be-box").nth(1).wait_for(timeout=60_000)
    shot(page, "teach-3-refresh")
    assert (ARTIFACTS / "teach-2-label.png").exists()


def test_see_train_and_detect_live(teach_url, camera_page, runs, camera_video):
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
    assert list(det.class_names) == ["mug", "cup"]

    page.get_by_role("button", name="Use this model on every page and detect live").click()
    wait_idle(page, timeout=90)
    no_exception(page)
    try:
        page.get_by_text("Classes of this model: mug, cup").wait_for(timeout=60_000)
    except Exception:
        shot(page, "teach-failure")
        raise

    # the confidence the live view uses: half the taught model's best score on the scene, so
    # a few of its boxes are drawn (one epoch on two photos scores low)
    rgb, _ = camera_video
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
    assert page.get_by_text("classes: mug, cup").count() >= 1
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
