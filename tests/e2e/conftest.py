"""End-to-end fixtures: a real `streamlit run` server and the system Chromium via Playwright,
and a Chromium whose fake camera plays a video made here (the live and Teach tests).

Screenshots land in test-artifacts/ (gitignored). Chromium is installed with apt when missing
and we are root with apt available; otherwise the e2e tests are skipped with the reason.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from PIL import Image

from app.serve import CHROMIUM_ARGS, chromium, serve

from .browser import ARTIFACTS

# The session's server (started by app_url below) trains into a runs folder of its own.
os.environ.setdefault("SSD_RUNS_DIR", tempfile.mkdtemp(prefix="ssd-e2e-runs-"))


@pytest.fixture(scope="session")
def chromium_path() -> str:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    path = chromium()
    if path is None:
        pytest.skip("no `chromium` on PATH and cannot install it (needs root and apt-get); "
                    "install Debian's chromium package to run the e2e tests")
    return path


@pytest.fixture(scope="session")
def app_url(chromium_path) -> str:
    """Start `streamlit run app/main.py` on a free port; yield its URL; stop it afterwards."""
    try:
        with serve(ARTIFACTS / "streamlit-server.log") as server:
            yield server.url
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def playwright(chromium_path):
    """The session's one Playwright: its sync API cannot be started twice in one thread, so
    every browser of the e2e tests (plain or with a fake camera) is launched from it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright, chromium_path):
    b = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 2000})
    p = ctx.new_page()
    yield p
    ctx.close()


# ---- the fake camera (DESIGN.md: streamlit-webrtc in headless Chromium)
CAMERA_SIZE = (640, 480)  # W, H of the camera's video
CAMERA_SEED = 0  # a scene the shipped model finds objects in (tests/test_live.py checks it too)
# Fake capture and WebRTC on loopback: real ICE host candidates (not mDNS names) and autoplay.
FAKE_CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                    "--disable-features=WebRtcHideLocalIpsWithMdns",
                    "--autoplay-policy=no-user-gesture-required"]


def camera_scene() -> np.ndarray:
    """The camera's still scene: a synthetic sample at CAMERA_SIZE, RGB (H, W, 3) uint8."""
    from ssd_core.data import SyntheticDetection

    img = SyntheticDetection(1, seed=CAMERA_SEED, image_size=256).sample(0)[0]
    return np.asarray(img.resize(CAMERA_SIZE, Image.BILINEAR))


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


@pytest.fixture(scope="session")
def camera_video(tmp_path_factory):
    """The fake camera's video, written once a session -> (its RGB frame, the .y4m path)."""
    rgb = camera_scene()
    path = tmp_path_factory.mktemp("camera") / "scene.y4m"
    write_y4m(path, rgb)
    return rgb, path


@pytest.fixture(scope="session")
def camera_browser(playwright, chromium_path, camera_video):
    """A Chromium whose camera plays ``camera_video`` (permission granted, no prompt)."""
    b = playwright.chromium.launch(executable_path=chromium_path, args=[
        *CHROMIUM_ARGS, *FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={camera_video[1]}"])
    yield b
    b.close()
