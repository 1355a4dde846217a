"""Live detection in a real Chromium over real WebRTC: Chromium's fake camera plays a short
.y4m video of a synthetic scene (conftest.py's camera_video, shared with the Teach test),
streamlit-webrtc carries it to a real `streamlit run` server, the shipped model's boxes are
drawn on every frame, and the video that comes back is read pixel by pixel from the <video>
element. A second browser past the server's cap of live streams (SSD_MAX_LIVE_STREAMS=1 here)
gets the busy message. Screenshots and the grabbed frame land in test-artifacts/."""

from __future__ import annotations

import base64
import io
import re
import time

import numpy as np
import pytest
from PIL import Image

from app.serve import serve
from ssd_core.detection import Detector
from ssd_core.live import FramePipeline

from .browser import ARTIFACTS, no_exception, nudge_slider, wait_idle
from .conftest import CAMERA_SIZE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def live_url(chromium_path):
    try:
        with serve(ARTIFACTS / "streamlit-live-server.log", script="tests/e2e/live_page.py",
                   env={"SSD_MAX_LIVE_STREAMS": "1"}) as server:
            yield server.url
    except RuntimeError as e:
        pytest.fail(str(e))


def open_live(browser, url):
    ctx = browser.new_context(viewport={"width": 1000, "height": 1100})
    page = ctx.new_page()
    page.goto(url)
    page.get_by_role("heading", name="Live detection (test page)").wait_for(timeout=90_000)
    wait_idle(page, timeout=120)
    no_exception(page)
    return ctx, page


def webrtc_frame(page, timeout=60.0):
    """The component's iframe (it holds the START button and the <video>)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for fr in page.frames:
            if "webrtc" in fr.url.lower():
                return fr
        page.wait_for_timeout(250)
    raise AssertionError(f"no streamlit-webrtc iframe; frames: {[f.url for f in page.frames]}")


def press(page, label: str) -> None:
    fr = webrtc_frame(page)
    fr.get_by_role("button", name=re.compile(f"^{label}$", re.I)).click(timeout=60_000)


GRAB = """() => {
  const v = document.querySelector('video');
  if (!v || v.readyState < 2 || !v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  c.getContext('2d').drawImage(v, 0, 0);
  return {png: c.toDataURL('image/png'), time: v.currentTime};
}"""


def grab(page, timeout=90.0) -> np.ndarray:
    """The <video>'s current frame as RGB (H, W, 3), once it plays."""
    fr = webrtc_frame(page)
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = fr.evaluate(GRAB)
        if got:
            data = base64.b64decode(got["png"].split(",", 1)[1])
            return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        page.wait_for_timeout(500)
    raise AssertionError("the returned video never played")


def wait_fps(page, timeout=120.0) -> float:
    """The fps figure once detected frames are being timed (the stage list names the
    network), not just frames arriving."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = page.locator('[data-testid="stMarkdownContainer"]').filter(
            has_text="frames per second").all_inner_texts()
        for t in text:
            m = re.search(r"([\d.]+) frames per second", t)
            if m and float(m.group(1)) > 0 and "network" in t:
                return float(m.group(1))
        page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "live-failure.png"), full_page=True)
    raise AssertionError("no frames-per-second figure of detected frames appeared "
                         f"(test-artifacts/live-failure.png); page text: {text}")


def drawn_ratio(got, camera, drawn_here, mask, shift: int = 2) -> float:
    """How much more the video looks like the camera's frame than like the drawn one where the
    pipeline draws (``mask``): mean |video - drawn| / mean |video - camera| there, the least over
    the drawings moved by up to ``shift`` px. The live view boxes the camera frame it received
    (VP8-coded on the way in), not this pristine scene, so its boxes can land a pixel or two off
    the reference's; a 2-px outline moved by 2 px misses entirely (seen on a one-epoch teach
    model: 1.15 in place, 0.66 moved by (1, 2), while the scene itself lined up best unmoved)."""
    g = got.astype(int)
    ratios = []
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            m = np.roll(mask, (dy, dx), axis=(0, 1))
            d = np.roll(drawn_here, (dy, dx), axis=(0, 1)).astype(int)[m]
            ratios.append(np.abs(g[m] - d).mean() / max(np.abs(g[m] - camera.astype(int)[m]).mean(),
                                                         1e-9))
    return min(ratios)


def assert_boxes_drawn(got, camera, drawn_here, drawn=True):
    """The received frame shows the boxes the pipeline draws on the camera's frame: where the
    pipeline draws (outlines, captions) the video looks like the drawn frame, not the camera's
    (VP8 blurs colours, hence means, not equality), and elsewhere like the camera's scene.
    ``drawn=False``: the boxes are not there (the video looks like the camera's there, however
    the drawing is moved)."""
    if got.shape[:2] != camera.shape[:2]:
        got = np.asarray(Image.fromarray(got).resize(CAMERA_SIZE, Image.BILINEAR))
    diff = np.abs(drawn_here.astype(int) - camera.astype(int)).max(axis=2)
    mask = diff > 80
    assert mask.sum() > 500
    ratio = drawn_ratio(got, camera, drawn_here, mask)
    # Closer to one than the other by a clear factor, not an exact one: the thin outlines and
    # captions blur under VP8, the live view's bf16 scores may caption a box 0.89 where the fp32
    # reference says 0.90, and a loaded machine returns a neighbouring frame (seen: under 0.5
    # in the earlier passing runs, 0.51 and 0.61 under load; a frame without the boxes gives
    # well over 1).
    if drawn:
        assert ratio < 0.8, ratio
    else:
        assert ratio > 1 / 0.8, ratio
    far = diff == 0
    assert np.abs(got.astype(int)[far] - camera.astype(int)[far]).mean() < 40


def test_live_video_comes_back_with_boxes_and_the_cap_refuses_a_second_stream(
        camera_browser, live_url, camera_video):
    rgb, _ = camera_video
    expected = FramePipeline.from_detector(Detector.from_checkpoint(device="cpu"))(rgb, 0.5, 0.5)
    assert len(expected.detections) >= 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    ctx_a, a = open_live(camera_browser, live_url)
    press(a, "start")
    fps = wait_fps(a)
    a.wait_for_timeout(3000)  # a few more frames, past the first keyframes' blur
    got = grab(a)
    Image.fromarray(got).save(ARTIFACTS / "live-video-frame.png")
    a.screenshot(path=str(ARTIFACTS / "live-stream.png"), full_page=True)
    no_exception(a)
    assert fps > 0

    assert_boxes_drawn(got, rgb, expected.image)

    # The confidence slider applies while the stream runs: at 1.0 no box is left (the best
    # score is under 1), and the returned video is the camera's scene again.
    nudge_slider(a, "Confidence threshold", key="End")
    a.wait_for_timeout(4000)
    bare = grab(a)
    Image.fromarray(bare).save(ARTIFACTS / "live-video-frame-conf-1.png")
    assert_boxes_drawn(bare, rgb, expected.image, drawn=False)

    # A second viewer past the cap of 1: the clear message, on the page and on the video.
    ctx_b, b = open_live(camera_browser, live_url)
    press(b, "start")
    b.get_by_text("Live detection is busy").wait_for(timeout=90_000)
    b.wait_for_timeout(2000)
    b.screenshot(path=str(ARTIFACTS / "live-busy.png"), full_page=True)
    assert "at most 1 live stream at once" in b.get_by_text("Live detection is busy").inner_text()

    # The first viewer stops: its slot frees, and the second one's stream gets boxes.
    press(a, "stop")
    deadline = time.time() + 60
    while time.time() < deadline and b.get_by_text("Live detection is busy").count():
        b.wait_for_timeout(500)
    assert b.get_by_text("Live detection is busy").count() == 0
    assert wait_fps(b) > 0
    b.wait_for_timeout(3000)
    second = grab(b)
    Image.fromarray(second).save(ARTIFACTS / "live-video-frame-second-viewer.png")
    b.screenshot(path=str(ARTIFACTS / "live-second-viewer.png"), full_page=True)
    assert_boxes_drawn(second, rgb, expected.image)
    ctx_a.close()
    ctx_b.close()
