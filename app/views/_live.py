"""Live detection from the camera, for any page: ``live_view(detector)``.

The browser's camera streams to the server over WebRTC (``streamlit-webrtc``); every frame goes
through ``ssd_core.live.FramePipeline`` (the Detector's own preprocessing, detection and
drawing, on a BatchNorm-folded copy of the model) and comes back with boxes, class names and
scores drawn on it. The frame callback runs on streamlit-webrtc's worker thread, so it never
calls ``st.*``: it reads the thresholds from a ``LiveSettings`` the sliders write, and writes
frames per second to a ``FrameStats`` a fragment reads. One server runs at most
``MAX_STREAMS`` live streams at once (``SSD_MAX_LIVE_STREAMS``, default 2); past it a stream is
refused with a message on the page and on the video.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from ssd_core.detection import Detector
from ssd_core.live import FramePipeline, FrameStats, LiveSettings, StreamSlots

MAX_STREAMS = max(1, int(os.environ.get("SSD_MAX_LIVE_STREAMS", "2")))
# One per server process: every session's streams count against the same cap.
SLOTS = StreamSlots(MAX_STREAMS, stale_after=5.0)
# Loopback and LAN need no STUN server; the default would try to reach Google's from offline
# machines.
RTC_CONFIGURATION = {"iceServers": []}
VIDEO = {"width": {"ideal": 640}, "height": {"ideal": 480}, "frameRate": {"ideal": 15}}

_pipelines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_pipelines_lock = threading.Lock()


def pipeline_for(detector: Detector) -> FramePipeline:
    """The one folded inference copy of ``detector``'s model, shared by every session (the
    thresholds travel with each call, so sharing it shares no setting)."""
    with _pipelines_lock:
        pipe = _pipelines.get(detector)
        if pipe is None:
            # "fast": bf16 where the CPU/GPU runs it natively (~2.7x on the network here; the
            # boxes move by under a pixel), else fp32.
            pipe = _pipelines[detector] = FramePipeline.from_detector(detector,
                                                                      precision="fast")
        return pipe


def busy_message(limit: int = MAX_STREAMS) -> str:
    return (f"Live detection is busy: this server runs at most {limit} live "
            f"stream{'s' if limit != 1 else ''} at once, and all are in use. Stop another "
            "stream (or close its tab) and press START again in a moment.")


@dataclass
class LiveState:
    """One session's stream: written by the frame thread, read by the page (never st.*)."""

    settings: LiveSettings
    stats: FrameStats = field(default_factory=FrameStats)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    refused: bool = False
    error: str | None = None


def _banner(rgb: np.ndarray, text: str) -> np.ndarray:
    """The frame, darkened, with ``text`` across its top: what a refused stream shows."""
    img = Image.fromarray((rgb // 3).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, img.width, 40], fill=(180, 0, 0))
    draw.text((8, 6), text, fill="white")
    return np.asarray(img)


def frame_callback(pipeline: FramePipeline, state: LiveState):
    """The callback streamlit-webrtc runs on each ``av.VideoFrame`` (its worker thread)."""

    def callback(frame):
        start = time.perf_counter()
        rgb = frame.to_ndarray(format="rgb24")
        to_rgb = (time.perf_counter() - start) * 1000
        if not SLOTS.acquire(state.token):  # also the heartbeat that keeps the slot
            state.refused = True
            out = _banner(rgb, f"Server busy: {SLOTS.limit} live stream(s) already running.")
            timings = {}
        else:
            state.refused = False
            thr = state.settings.get()
            try:
                result = pipeline(rgb, thr.conf, thr.nms)
                out, timings = result.image, {"to RGB": to_rgb, **result.timings}
                state.error = None
            except Exception as e:  # shown by the page; the stream goes on unannotated
                state.error = f"{type(e).__name__}: {e}"
                out, timings = rgb, {}
        new = type(frame).from_ndarray(np.ascontiguousarray(out), format="rgb24")
        new.pts = frame.pts
        if frame.time_base is not None:
            new.time_base = frame.time_base
        state.stats.record(timings)
        return new

    return callback


def _state(key: str, conf: float, nms: float) -> LiveState:
    name = f"{key}__live_state"
    if name not in st.session_state:
        st.session_state[name] = LiveState(LiveSettings(conf, nms))
    return st.session_state[name]


def _status(ctx, state: LiveState) -> None:
    """Frames per second and stage timings while the stream plays; the cap's message."""
    if state.refused:
        st.error(busy_message(SLOTS.limit))
        return
    if state.error:
        st.error(f"Live detection failed on a frame: {state.error}")
    if not ctx.state.playing:
        st.caption(f"Press START to detect on your camera's video. This server runs at most "
                   f"{SLOTS.limit} live stream{'s' if SLOTS.limit != 1 else ''} at once.")
        return
    snap = state.stats.snapshot()
    if snap["frames"] == 0:
        st.caption("Waiting for the first frames ...")
        return
    ms = snap["ms"]
    line = f"**{snap['fps']:.1f} frames per second** · {snap['frames']} frames"
    if "total" in ms:  # medians over the last seconds of detected frames
        stages = ", ".join(f"{k} {v:.0f}" for k, v in ms.items() if k != "total")
        line += f" · ms per frame: {ms['total']:.0f} ({stages})"
    st.markdown(line)


def live_view(detector: Detector, key: str = "live", conf: float = 0.5, nms: float = 0.5):
    """Show the live camera with ``detector``'s boxes, confidence and NMS sliders that apply
    while it runs, and its frames per second. Returns streamlit-webrtc's context."""
    state = _state(key, conf, nms)
    pipeline = pipeline_for(detector)

    @st.fragment
    def sliders():
        c1, c2 = st.columns(2)
        c = c1.slider("Confidence threshold", 0.0, 1.0, state.settings.get().conf, 0.01,
                      key=f"{key}_conf", help="boxes scoring below it are hidden")
        n = c2.slider("NMS IoU threshold", 0.0, 1.0, state.settings.get().nms, 0.01,
                      key=f"{key}_nms", help="of two boxes overlapping more than this, "
                      "the lower-scoring one is removed")
        state.settings.set(conf=c, nms=n)  # read by the frame thread on its next frame

    sliders()
    ctx = webrtc_streamer(
        key=key,
        mode=WebRtcMode.SENDRECV,
        rtc_configuration=RTC_CONFIGURATION,
        media_stream_constraints={"video": VIDEO, "audio": False},
        video_frame_callback=frame_callback(pipeline, state),
        on_video_ended=lambda: SLOTS.release(state.token),
        async_processing=True,
    )
    if not ctx.state.playing:
        SLOTS.release(state.token)
        state.refused = False
    st.fragment(run_every=1.0 if ctx.state.playing else None)(_status)(ctx, state)
    return ctx
