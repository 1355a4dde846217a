"""Live detection on video frames: one RGB frame in, the frame with its detections drawn out.

``FramePipeline`` holds an inference copy of a model (BatchNorm folded, eval, channels_last) and
runs the Detector's own preprocessing, detection and drawing code on each frame, timing each
stage. ``LiveSettings`` carries the thresholds between threads (a slider thread writes, the
frame thread reads), ``FrameStats`` the frames per second and stage timings back, and
``StreamSlots`` caps how many live streams one server runs at once. No Streamlit here.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .detection import Detections, Detector, raw_output
from .device import native_bf16, this_thread_limited
from .drawing import draw_detections
from .errors import InvalidImageError
from .fold import fold_batchnorm
from .images import image_to_tensor

__all__ = ["STAGES", "Thresholds", "LiveSettings", "FrameResult", "FramePipeline",
           "FrameStats", "StreamSlots", "check_frame"]

# The pipeline's stages, in order (per-frame timings in milliseconds use these keys).
STAGES = ("convert", "network", "detection", "drawing")


@dataclass(frozen=True)
class Thresholds:
    """Confidence and NMS IoU thresholds, both in [0, 1]."""

    conf: float = 0.5
    nms: float = 0.5

    def __post_init__(self):
        for name, v in (("conf", self.conf), ("nms", self.nms)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"the {name} threshold must be a number in [0, 1], got {v!r}")


class LiveSettings:
    """The thresholds a running stream uses, safe to set from one thread (the page's sliders)
    while another reads them for every frame: ``set`` swaps in a new immutable
    :class:`Thresholds` under a lock, ``get`` returns the current one."""

    def __init__(self, conf: float = 0.5, nms: float = 0.5):
        self._lock = threading.Lock()
        self._value = Thresholds(float(conf), float(nms))

    def get(self) -> Thresholds:
        with self._lock:
            return self._value

    def set(self, conf: float | None = None, nms: float | None = None) -> Thresholds:
        """Change either threshold (None keeps it); raises ValueError outside [0, 1]."""
        with self._lock:
            new = Thresholds(self._value.conf if conf is None else float(conf),
                             self._value.nms if nms is None else float(nms))
            self._value = new
            return new


@dataclass
class FrameResult:
    """One processed frame: ``image`` (H, W, 3) uint8 with boxes, class names and scores drawn,
    ``detections`` (boxes in the frame's pixels), ``timings`` ms per stage and ``total``, and
    the ``thresholds`` used."""

    image: np.ndarray
    detections: Detections
    timings: dict
    thresholds: Thresholds


def check_frame(frame) -> np.ndarray:
    """A video frame as the pipeline takes it: a numpy uint8 array (H, W, 3), RGB, H and W >= 1.
    Raises InvalidImageError (a ValueError) saying what was wrong otherwise."""
    if not isinstance(frame, np.ndarray):
        raise InvalidImageError(f"A video frame must be a numpy array (H, W, 3) of uint8 RGB, "
                                f"got a {type(frame).__name__}.", reason="not an array")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InvalidImageError(f"A video frame must have shape (H, W, 3) (RGB), got "
                                f"{frame.shape}.", reason="shape")
    if frame.dtype != np.uint8:
        raise InvalidImageError(f"A video frame must be uint8 RGB (0-255), got dtype "
                                f"{frame.dtype}.", reason="dtype")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InvalidImageError(f"A video frame is empty ({frame.shape[1]}x{frame.shape[0]} "
                                "pixels).", reason="empty")
    return np.ascontiguousarray(frame)


class FramePipeline:
    """A model ready for video: ``pipeline(frame)`` -> :class:`FrameResult`.

    The frame goes through the Detector's own steps (the same resize to a square tensor, the
    same softmax and box decoding, ``Detector.filter`` for the thresholds and NMS, and
    ``ssd_core.drawing.draw_detections``), so its detections equal ``Detector.predict`` on the
    same image. ``fold``: run a BatchNorm-folded copy of the model (the original is untouched);
    ``channels_last``: run the convolutions in channels_last memory format; ``threads``: the
    intra-op threads of the calling thread while it runs a frame (None: torch's setting; 1 by
    default: one image per call, and on a busy CPU threads waiting for each other at every
    layer cost far more than they give, see bench/bench_live.py); ``precision``: "fp32", "bf16"
    (autocast: ~2.7x faster on CPUs with AMX, class probabilities within ~1e-3) or "fast" (bf16
    where the hardware runs it natively, else fp32). Thresholds come
    from ``settings`` (a :class:`LiveSettings`) unless given to the call. Safe to call from
    several threads at once (the model only runs forward, under ``torch.inference_mode``).
    """

    def __init__(self, model, class_names, input_size: int = 256, *, fold: bool = True,
                 channels_last: bool = True, threads: int | None = 1,
                 precision: str = "fp32", settings: LiveSettings | None = None,
                 device="cpu"):
        if precision not in ("fp32", "bf16", "fast"):
            raise ValueError(f"precision must be 'fp32', 'bf16' or 'fast', got {precision!r}")
        net = fold_batchnorm(model) if fold else _eval_copy(model)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.detector = Detector(net, class_names, input_size, device=device)
        self.channels_last = bool(channels_last)
        self.folded = bool(fold)
        self.threads = threads
        dev = self.detector.device
        self.bf16 = precision == "bf16" or (precision == "fast" and native_bf16(dev))
        self.precision = "bf16" if self.bf16 else "fp32"
        self.settings = settings if settings is not None else LiveSettings()

    @classmethod
    def from_detector(cls, detector: Detector, **kwargs) -> FramePipeline:
        """A pipeline for a loaded :class:`Detector`'s model (copied, never modified)."""
        kwargs.setdefault("device", detector.device)
        return cls(detector.model, detector.class_names, detector.input_size, **kwargs)

    @property
    def class_names(self) -> list:
        return self.detector.class_names

    @property
    def model(self):
        return self.detector.model

    def to_tensor(self, frame: np.ndarray) -> tuple[Image.Image, torch.Tensor]:
        """Frame (H, W, 3) uint8 -> (its PIL image, the model input (1, 3, S, S))."""
        img = Image.fromarray(check_frame(frame), "RGB")
        X = image_to_tensor(img, self.detector.input_size).unsqueeze(0).to(self.detector.device)
        if self.channels_last:
            X = X.contiguous(memory_format=torch.channels_last)
        return img, X

    def __call__(self, frame, conf_threshold: float | None = None,
                 nms_threshold: float | None = None) -> FrameResult:
        """Detect and draw on one RGB frame (any size). Thresholds: the given ones, else the
        current ``settings``. Raises InvalidImageError for a frame that is not (H, W, 3) uint8."""
        current = self.settings.get()
        thr = Thresholds(current.conf if conf_threshold is None else conf_threshold,
                         current.nms if nms_threshold is None else nms_threshold)
        with this_thread_limited(self.threads if self.detector.device.type == "cpu" else None):
            t0 = time.perf_counter()
            img, X = self.to_tensor(frame)
            t1 = time.perf_counter()
            with torch.inference_mode(), torch.autocast(
                    self.detector.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.detector.model(X)
            t2 = time.perf_counter()
            dets = self.detector.filter(raw_output(*out, img.size), thr.conf, thr.nms)
            t3 = time.perf_counter()
        drawn = draw_detections(img, dets.boxes, dets.scores, dets.labels, self.class_names)
        image = np.asarray(drawn)
        t4 = time.perf_counter()
        ms = [(b - a) * 1000 for a, b in zip((t0, t1, t2, t3), (t1, t2, t3, t4))]
        timings = dict(zip(STAGES, ms))
        timings["total"] = (t4 - t0) * 1000
        return FrameResult(image, dets, timings, thr)


def _eval_copy(model):
    import copy

    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@dataclass
class FrameStats:
    """Frames per second and per-stage timings of a stream over the last ``window`` seconds,
    written by the frame thread (``record``) and read by the page (``snapshot``)."""

    window: float = 3.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _frames: deque = field(default_factory=deque, repr=False)
    frames: int = 0

    def record(self, timings: dict, now: float | None = None) -> None:
        """One frame done at ``now`` (default: time.monotonic()) with its timings (ms)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._frames.append((now, dict(timings)))
            self.frames += 1
            while self._frames and self._frames[0][0] < now - self.window:
                self._frames.popleft()

    def snapshot(self, now: float | None = None) -> dict:
        """``{"fps", "frames" (all so far), "ms": {stage: median ms over the window}}``; fps is
        0 when fewer than two frames arrived within the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [(t, d) for t, d in self._frames if t >= now - self.window]
            total = self.frames
        fps = 0.0
        if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
            fps = (len(recent) - 1) / (recent[-1][0] - recent[0][0])
        keys = dict.fromkeys(k for _, d in recent for k in d)
        ms = {k: float(np.median([d[k] for _, d in recent if k in d])) for k in keys}
        return {"fps": fps, "frames": total, "ms": ms}


class StreamSlots:
    """At most ``limit`` live streams at once (per process). A stream holds a slot by calling
    ``acquire(token)`` for every frame (a heartbeat); ``release(token)`` frees it, and a slot
    whose stream sent no frame for ``stale_after`` seconds is free again (a closed tab)."""

    def __init__(self, limit: int, stale_after: float = 5.0):
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit, self.stale_after = int(limit), float(stale_after)
        self._lock = threading.Lock()
        self._held: dict = {}

    def _expire(self, now: float) -> None:
        for token in [t for t, seen in self._held.items() if now - seen > self.stale_after]:
            del self._held[token]

    def acquire(self, token, now: float | None = None) -> bool:
        """True if ``token`` holds (or now takes) a slot; False when all are held by others."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._expire(now)
            if token in self._held or len(self._held) < self.limit:
                self._held[token] = now
                return True
            return False

    def release(self, token) -> None:
        with self._lock:
            self._held.pop(token, None)

    def holds(self, token) -> bool:
        with self._lock:
            return token in self._held

    def in_use(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._expire(now)
            return len(self._held)
