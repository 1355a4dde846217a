"""app/views/_live.py without a browser: the frame callback streamlit-webrtc runs (boxes, the
session's thresholds, fps stats, the stream cap's refusal, a failing frame). The view itself
needs a real Streamlit runtime (streamlit-webrtc reads the session from it, which AppTest does
not provide): tests/e2e/test_live_e2e.py runs it in Chromium over real WebRTC."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_core.data import SyntheticDetection
from ssd_core.detection import Detector
from ssd_core.live import LiveSettings, StreamSlots

av = pytest.importorskip("av")
pytest.importorskip("streamlit_webrtc")



@pytest.fixture(scope="module")
def live():
    from app.views import _live

    return _live


@pytest.fixture(scope="module")
def shipped():
    return Detector.from_checkpoint(device="cpu")


def video_frame(seed=0, pts=7):
    img = SyntheticDetection(1, seed=seed, image_size=256).sample(0)[0].resize((640, 480))
    frame = av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24").reformat(
        format="yuv420p")  # as aiortc's decoder delivers it
    frame.pts = pts
    return frame


def test_callback_draws_boxes_with_the_sessions_thresholds(live, shipped, monkeypatch):
    monkeypatch.setattr(live, "SLOTS", StreamSlots(2))
    state = live.LiveState(LiveSettings(conf=0.5, nms=0.5))
    callback = live.frame_callback(live.pipeline_for(shipped), state)
    frame = video_frame()
    out = callback(frame)
    assert isinstance(out, av.VideoFrame) and (out.width, out.height) == (640, 480)
    assert out.pts == frame.pts
    src, drawn = frame.to_ndarray(format="rgb24"), out.to_ndarray(format="rgb24")
    assert (np.abs(drawn.astype(int) - src).max(axis=2) > 80).sum() > 500  # boxes drawn
    assert not state.refused and state.error is None
    assert live.SLOTS.holds(state.token)
    snap = state.stats.snapshot()
    assert snap["frames"] == 1 and {"network", "drawing", "total"} <= set(snap["ms"])
    # The sliders write the settings; the next frame uses them: at 1.0 nothing is drawn.
    state.settings.set(conf=1.0)
    bare = callback(frame).to_ndarray(format="rgb24")
    assert (np.abs(bare.astype(int) - src).max(axis=2) > 80).sum() == 0
    # The pipeline is shared per model (one folded copy for every session).
    assert live.pipeline_for(shipped) is live.pipeline_for(shipped)


def test_callback_past_the_cap_refuses_with_a_banner(live, shipped, monkeypatch):
    monkeypatch.setattr(live, "SLOTS", StreamSlots(1))
    assert live.SLOTS.acquire("someone else's stream")
    state = live.LiveState(LiveSettings())
    out = live.frame_callback(live.pipeline_for(shipped), state)(video_frame())
    assert state.refused
    top = out.to_ndarray(format="rgb24")[5:35, 200:600].reshape(-1, 3).mean(axis=0)
    assert top[0] > 120 and top[1] < 60 and top[2] < 60  # the red banner
    assert "at most 1 live stream at once" in live.busy_message(1)
    assert "at most 2 live streams at once" in live.busy_message(2)
    live.SLOTS.release("someone else's stream")
    live.frame_callback(live.pipeline_for(shipped), state)(video_frame())
    assert not state.refused  # a slot freed: the next frame is detected


def test_callback_keeps_streaming_when_a_frame_fails(live, shipped, monkeypatch):
    monkeypatch.setattr(live, "SLOTS", StreamSlots(2))
    state = live.LiveState(LiveSettings())
    pipe = live.pipeline_for(shipped)

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(type(pipe), "__call__", broken)
    frame = video_frame()
    out = live.frame_callback(pipe, state)(frame)
    assert state.error == "RuntimeError: boom"
    assert np.array_equal(out.to_ndarray(format="rgb24"), frame.to_ndarray(format="rgb24"))

