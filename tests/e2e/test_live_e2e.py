"""Live detection in a real Chromium over real WebRTC: Chromium's fake camera plays a short
.y4m video of a synthetic scene (written here), streamlit-webrtc carries it to a real
`streamlit run` server, the shipped model's boxes are drawn on every frame, and the video that
comes back is read pixel by pixel from the <video> element. A second browser past the server's
cap of live streams (SSD_MAX_LIVE_STREAMS=1 here) gets the busy message. Screenshots and the
grabbed frame land in test-artifacts/."""

from __future__ import annotations

import base64
import io
import re
import time

import numpy as np
import pytest
from PIL import Image

from app.serve import CHROMIUM_ARGS, serve
from ssd_core.data import SyntheticDetection
from ssd_core.detection import Detector
from ssd_core.live import FramePipeline

from .browser import ARTIFACTS, no_exception, nudge_slider, wait_idle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

W, H = 640, 480
SEED = 0  # a scene the shipped model finds objects in (tests/test_live.py checks it too)
# Fake capture and WebRTC on loopback: real ICE host candidates (not mDNS names) and autoplay.
LIVE_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
             "--disable-features=WebRtcHideLocalIpsWithMdns",
             "--autoplay-policy=no-user-gesture-required"]


def scene() -> np.ndarray:
    img = SyntheticDetection(1, seed=SEED, image_size=256).sample(0)[0]
    return np.asarray(img.resize((W, H), Image.BILINEAR))


def write_y4m(path, rgb: np.ndarray, frames: int = 15, fps: int = 15) -> None:
    """A still scene as a YUV4MPEG2 4:2:0 video (what --use-file-for-fake-video-capture reads)."""
    ycc = np.asarray(Image.fromarray(rgb).convert("YCbCr"), dtype=np.float32)
    h, w = rgb.shape[:2]
    y = ycc[..., 0].astype(np.uint8)
    chroma = [ycc[..., c].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).round().astype(np.uint8)
              for c in (1, 2)]
    planes = y.tobytes() + chroma[0].tobytes() + chroma[1].tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + planes)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    rgb = scene()
    path = tmp_path_factory.mktemp("camera") / "scene.y4m"
    write_y4m(path, rgb)
    return rgb, path


@pytest.fixture(scope="module")
def live_url(chromium_path):
    try:
        with serve(ARTIFACTS / "streamlit-live-server.log", script="tests/e2e/live_page.py",
                   env={"SSD_MAX_LIVE_STREAMS": "1"}) as server:
            yield server.url
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def camera_browser(playwright, chromium_path, source):
    args = [*CHROMIUM_ARGS, *LIVE_ARGS, f"--use-file-for-fake-video-capture={source[1]}"]
    b = playwright.chromium.launch(executable_path=chromium_path, args=args)
    yield b
    b.close()


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


def assert_boxes_drawn(got, camera, drawn_here, drawn=True):
    """The received frame shows the boxes the pipeline draws on the camera's frame: where the
    pipeline draws (outlines, captions) the video looks like the drawn frame, not the camera's
    (VP8 blurs colours, hence means, not equality), and elsewhere like the camera's scene.
    ``drawn=False``: the boxes are not there (the video looks like the camera's there)."""
    if got.shape[:2] != (H, W):
        got = np.asarray(Image.fromarray(got).resize((W, H), Image.BILINEAR))
    diff = np.abs(drawn_here.astype(int) - camera.astype(int)).max(axis=2)
    mask = diff > 80
    assert mask.sum() > 500
    g = got.astype(int)[mask]
    to_drawn = np.abs(g - drawn_here.astype(int)[mask]).mean()
    to_camera = np.abs(g - camera.astype(int)[mask]).mean()
    # Closer to one than the other by a clear factor, not an exact one: the thin outlines and
    # captions blur under VP8, the live view's bf16 scores may caption a box 0.89 where the fp32
    # reference says 0.90, and a loaded machine returns a neighbouring frame (seen: under 0.5
    # in the earlier passing runs, 0.51 and 0.61 under load; a frame without the boxes gives
    # well over 1).
    if drawn:
        assert to_drawn < 0.8 * to_camera, (to_drawn, to_camera)
    else:
        assert to_camera < 0.8 * to_drawn, (to_drawn, to_camera)
    far = diff == 0
    assert np.abs(got.astype(int)[far] - camera.astype(int)[far]).mean() < 40


def test_live_video_comes_back_with_boxes_and_the_cap_refuses_a_second_stream(
        camera_browser, live_url, source):
    rgb, _ = source
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
