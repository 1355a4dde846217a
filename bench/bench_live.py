"""Live detection speed: per-frame stages at 640x480 for the shipped model, in one process.

    python bench/bench_live.py [--frames 60] [--width 640 --height 480]

What one live frame costs the server, stage by stage (median and 95th percentile over the
frames): ``decode`` (the browser's VP8 video decoded to RGB with aiortc's own decoder, as the
live path receives it), ``convert`` (resize to the model's square tensor), ``network``,
``detection`` (softmax, box decoding, thresholds, NMS), ``drawing`` (boxes, class names and
scores drawn on the frame) and ``encode`` (the drawn frame back to VP8 with aiortc's encoder).
The frames are synthetic scenes (bananas, rings, stars) stretched to 640x480, each with
objects, so detection and drawing do real work.

Against the strongest honest baselines in the same run, interleaved frame by frame: the
Detector's own path (``Detector.predict`` on the frame plus ``draw_detections``: the code the
Detection page runs today), and the pipeline with BatchNorm not folded and/or in NCHW, and with
torch's intra-op threads (one per core) instead of the live path's one thread, and in fp32
where the live view runs bf16 (``precision="fast"``: bf16 where the CPU has AVX512-BF16 or
AMX). The
codec stages are the same for every path and are reported once. Then the network's FLOPs per
frame against this CPU's measured 3x3-convolution and matmul GFLOP/s (bench_train's kernels).
"""

from __future__ import annotations

import argparse
import fractions
import statistics
import time

import numpy as np
import torch
from bench_train import conv_gflops, matmul_gflops
from PIL import Image

from ssd_core.data import SyntheticDetection
from ssd_core.detection import DEFAULT_CHECKPOINT, Detector
from ssd_core.device import (
    configure_cpu_threads,
    device_label,
    this_thread_limited,
    tune_cpu_allocator,
)
from ssd_core.drawing import draw_detections
from ssd_core.live import STAGES, FramePipeline
from ssd_core.model import TinySSD

GOAL_FPS = 15.0


def frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """``n`` synthetic scenes with objects, stretched to width x height RGB frames."""
    ds = SyntheticDetection(n, seed=2026, image_size=256)
    return [np.asarray(ds.sample(i)[0].resize((width, height), Image.BILINEAR)) for i in range(n)]


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


class Codec:
    """aiortc's VP8 decoder and encoder, as the live path runs them; None without aiortc."""

    def __init__(self, source: list[np.ndarray]):
        import av
        from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
        from aiortc.jitterbuffer import JitterFrame

        self.av, self.JitterFrame = av, JitterFrame
        # The browser's side, untimed: the source frames as the VP8 stream that arrives.
        sender = Vp8Encoder()
        self.packets = []
        for i, f in enumerate(source):
            payloads, ts = sender.encode(self._video_frame(f, i))
            self.packets.append((b"".join(vp8_depayload(p) for p in payloads), ts))
        self.decoder, self.encoder = Vp8Decoder(), Vp8Encoder()

    def _video_frame(self, rgb: np.ndarray, i: int):
        frame = self.av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = i, fractions.Fraction(1, 30)
        return frame

    def decode(self, i: int) -> np.ndarray:
        data, ts = self.packets[i]
        (frame,) = self.decoder.decode(self.JitterFrame(data, ts))
        return frame.to_ndarray(format="rgb24")

    def encode(self, rgb: np.ndarray, i: int) -> None:
        self.encoder.encode(self._video_frame(rgb, i))


def detector_path(det: Detector, frame: np.ndarray, conf: float, nms: float,
                  threads: int | None = None) -> np.ndarray:
    """Today's code: Detector.predict on the frame, then the one drawing routine."""
    with this_thread_limited(threads):
        d = det.predict(frame, conf, nms)
    return np.asarray(draw_detections(Image.fromarray(frame), d.boxes, d.scores, d.labels,
                                      det.class_names))


def network_gflop(model, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    X = torch.rand(1, 3, size, size)
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        model(X)
    return fc.get_total_flops() / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60, help="distinct frames, each timed once "
                    "per path (after one warm-up pass)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--conf", type=float, default=0.5)
    ap.add_argument("--nms", type=float, default=0.5)
    ap.add_argument("--kernel-batch", type=int, default=32,
                    help="batch of the conv GFLOP/s probe (smaller: quicker, less exact)")
    args = ap.parse_args()
    tuned = tune_cpu_allocator()
    configure_cpu_threads()
    if DEFAULT_CHECKPOINT.exists():
        det, which = Detector.from_checkpoint(device="cpu"), "shipped model"
    else:
        torch.manual_seed(0)
        det, which = Detector(TinySSD(3), ["banana", "ring", "star"], device="cpu"), \
            "untrained TinySSD (no shipped model)"
    source = frames(args.frames, args.width, args.height)
    try:
        codec = Codec(source)
    except ImportError:
        codec = None

    paths = {
        "Detector.predict + draw_detections (today's Detection page code)":
            lambda f: detector_path(det, f, args.conf, args.nms),
        "Detector.predict + draw_detections, 1 thread":
            lambda f: detector_path(det, f, args.conf, args.nms, threads=1),
        "pipeline, BatchNorm not folded, NCHW, torch's threads":
            FramePipeline.from_detector(det, fold=False, channels_last=False, threads=None),
        "pipeline, BatchNorm not folded, channels_last, torch's threads":
            FramePipeline.from_detector(det, fold=False, channels_last=True, threads=None),
        "pipeline, BatchNorm folded, NCHW, torch's threads":
            FramePipeline.from_detector(det, fold=True, channels_last=False, threads=None),
        "pipeline, BatchNorm folded, channels_last, torch's threads":
            FramePipeline.from_detector(det, fold=True, channels_last=True, threads=None),
        "pipeline, BatchNorm folded, channels_last, 1 thread, fp32":
            FramePipeline.from_detector(det),
        "pipeline, BatchNorm folded, channels_last, 1 thread, precision='fast' (live view)":
            FramePipeline.from_detector(det, precision="fast"),
    }
    live_name = list(paths)[-1]
    totals = {name: [] for name in paths}
    stages = {s: [] for s in ("decode", *STAGES, "encode")}
    live_drawn = None

    def run(name, fn, f):
        start = time.perf_counter()
        out = fn(f) if not isinstance(fn, FramePipeline) else fn(f, args.conf, args.nms)
        totals[name].append((time.perf_counter() - start) * 1000)
        return out

    for f in source[:2]:  # warm-up: allocator, oneDNN kernels, anchor caches
        for name, fn in paths.items():
            run(name, fn, f)
    for v in totals.values():
        v.clear()
    names = list(paths)
    for i in range(len(source)):
        if codec is not None:
            t = time.perf_counter()
            f = codec.decode(i)
            stages["decode"].append((time.perf_counter() - t) * 1000)
        else:
            f = source[i]
        k = i % len(names)  # rotate the order so no path always runs first
        for name in names[k:] + names[:k]:
            out = run(name, paths[name], f)
            if name == live_name:
                for s in STAGES:
                    stages[s].append(out.timings[s])
                live_drawn = out.image
        if codec is not None:
            t = time.perf_counter()
            codec.encode(live_drawn, i)
            stages["encode"].append((time.perf_counter() - t) * 1000)

    threads = torch.get_num_threads()
    print(f"live detection, {args.width}x{args.height} frames, {which}, conf {args.conf}, "
          f"NMS {args.nms}, {len(source)} frames per path (interleaved), {threads} torch "
          f"threads, {device_label(torch.device('cpu'))}, allocator tuned: {tuned}, "
          f"torch {torch.__version__}\n")
    print("per-frame stages of the live path (ms):\n")
    print("| stage | p50 | p95 |")
    print("|---|---:|---:|")
    labels = {"decode": "decode (VP8 -> RGB, aiortc's decoder)",
              "convert": "convert (resize to 256x256 tensor)",
              "network": "network (TinySSD, folded, channels_last, 1 thread, "
                         f"{paths[live_name].precision})",
              "detection": "detection (softmax, decode, thresholds, NMS)",
              "drawing": "drawing (boxes, class names, scores)",
              "encode": "encode (RGB -> VP8, aiortc's encoder)"}
    per_frame = np.zeros(len(source))
    for s, v in stages.items():
        if not v:
            continue
        per_frame += np.asarray(v)
        print(f"| {labels[s]} | {pct(v, 50):.2f} | {pct(v, 95):.2f} |")
    print(f"| **total per frame** | {pct(per_frame, 50):.2f} | {pct(per_frame, 95):.2f} |")
    if codec is None:
        print("\n(aiortc is not installed: no decode/encode rows; pip install streamlit-webrtc)")

    base = statistics.median(totals[names[0]])
    print("\nthe same frames through each path (decode and encode left out, same for all):\n")
    print("| path | p50 ms | p95 ms | fps at p50 | vs Detector.predict |")
    print("|---|---:|---:|---:|---:|")
    for name, v in totals.items():
        p50 = statistics.median(v)
        print(f"| {name} | {p50:.2f} | {pct(v, 95):.2f} | {1000 / p50:.1f} | "
              f"{base / p50:.2f}x |")

    fps50, fps95 = 1000 / pct(per_frame, 50), 1000 / pct(per_frame, 95)
    met = "met" if fps50 >= GOAL_FPS else "NOT met"
    print(f"\ngoal: >= {GOAL_FPS:.0f} fps for one viewer at {args.width}x{args.height}, "
          f"decode to encode: {met} ({fps50:.1f} fps at the p50 frame, {fps95:.1f} at the "
          f"p95 frame; budget {1000 / GOAL_FPS:.1f} ms)")

    live = paths[live_name]
    gflop = network_gflop(live.model, det.input_size)
    cpu = torch.device("cpu")
    dtype = torch.bfloat16 if live.bf16 else torch.float32
    conv = conv_gflops(cpu, batch=args.kernel_batch, dtype=dtype)
    mm = matmul_gflops(cpu, dtype=dtype)
    with this_thread_limited(1):
        conv1 = conv_gflops(cpu, batch=args.kernel_batch, dtype=dtype)
    best = max(conv, conv1, mm)
    floor_ms = gflop / best * 1000
    net50 = pct(stages["network"], 50)
    print(f"\nhardware limit: the network costs {gflop:.3f} GFLOP per frame. In "
          f"{live.precision} this CPU ran a 3x3 64-channel convolution at {conv:.0f} GFLOP/s "
          f"on {threads} threads and {conv1:.0f} GFLOP/s on one, a 2048^2 matmul at {mm:.0f} "
          f"GFLOP/s. At the fastest of these ({best:.0f} GFLOP/s) the network would take "
          f"{floor_ms:.2f} ms; the live view's network (one thread, {live.precision}) takes "
          f"{net50:.2f} ms at p50, {floor_ms / net50:.0%} of that limit.")

if __name__ == "__main__":
    main()
