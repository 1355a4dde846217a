"""The bench scripts run and print their tables (tiny sizes; no timing is asserted here: speed
goals live in the scripts' own output)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run_bench(*args: str, timeout: float = 300) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_train_prints_the_book_comparison_profile_and_floor():
    out = run_bench("bench/bench_train.py", "--batch", "2", "--size", "64", "--steps", "1",
                    "--no-extras")
    for row in ("| book loop (in-memory images) |", "| engine, same images |",
                "| engine, real data path |", "| engine, same images, precision=bf16 |"):
        assert row in out
    # The profile names every phase for both loops.
    for phase in ("data", "forward", "target", "loss", "backward", "optimizer", "metrics"):
        assert f"| {phase} |" in out
    assert "compute limit:" in out and "goals: >= 25 img/s and >= 1.5x the book loop" in out
    assert "BatchNorm and ReLU taken out: convolutions + pooling" in out
    assert "with both free, the convolutions alone would give" in out


def test_bench_boxes_compares_with_the_book_and_says_when_outputs_agree():
    out = run_bench("bench/bench_boxes.py", "--repeats", "1")
    assert "multibox_target, B=32, 5444 anchors, 8 objects" in out
    assert "multibox_detection, B=8, trained-like, exact book order" in out
    assert "nms, 5444 decoded TinySSD boxes, IoU 0.5" in out
    assert "outputs equal: NO" not in out and "outputs equal: yes" in out
    # OpenCV's NMS is the library baseline when installed (the bench runs with this
    # interpreter, so it finds cv2 exactly when this test does); otherwise the bench says how.
    baseline = "cv2.dnn.NMSBoxes (baseline = OpenCV)"
    how = 'OpenCV is not installed (pip install -e ".[bench]" adds'
    if importlib.util.find_spec("cv2") is not None:
        import cv2

        assert f"| nms vs OpenCV {cv2.__version__} {baseline} |" in out
        assert "same kept indices: yes" in out and how not in out
    else:
        assert baseline not in out and "same kept indices" not in out
        assert how in " ".join(out.split())


def test_bench_live_prints_stages_paths_goal_and_limit():
    out = run_bench("bench/bench_live.py", "--frames", "3", "--width", "160", "--height", "120",
                    "--kernel-batch", "1")
    for stage in ("convert (resize to 256x256 tensor)",
                  "detection (softmax, decode, thresholds, NMS)",
                  "drawing (boxes, class names, scores)", "**total per frame**"):
        assert f"| {stage} |" in out
    if importlib.util.find_spec("aiortc") is not None:  # streamlit-webrtc brings it
        assert "| decode (VP8 -> RGB, aiortc's decoder) |" in out
        assert "| encode (RGB -> VP8, aiortc's encoder) |" in out
    for path in ("Detector.predict + draw_detections (today's Detection page code)",
                 "Detector.predict + draw_detections, 1 thread",
                 "pipeline, BatchNorm not folded, NCHW, torch's threads",
                 "pipeline, BatchNorm not folded, channels_last, torch's threads",
                 "pipeline, BatchNorm folded, NCHW, torch's threads",
                 "pipeline, BatchNorm folded, channels_last, torch's threads",
                 "pipeline, BatchNorm folded, channels_last, 1 thread, fp32",
                 "pipeline, BatchNorm folded, channels_last, 1 thread, precision='fast' "
                 "(live view)"):
        assert f"| {path} |" in out
    assert "| network (TinySSD, folded, channels_last, 1 thread, " in out
    assert "goal: >= 15 fps for one viewer at 160x120, decode to encode:" in out
    assert "hardware limit: the network costs" in out and "GFLOP per frame" in out
    assert "of that limit." in out


def test_time_to_teach_prints_a_row_per_arm_and_the_goal_line():
    out = run_bench("bench/time_to_teach.py", "--budget", "1", "--train-photos", "6",
                    "--val-photos", "3", "--photo-size", "64", "--set", "epochs=1",
                    "--set", "input_size=64", "--set", "batch_size=4", timeout=600)
    assert "Training seconds to validation AP50 on the few-shot set (6 labelled photos" in out
    assert "| arm | settings | img/s | training s to AP50 0.5 | training s to AP50 0.8 | " \
           "training s to AP50 0.9 | best AP50 (at training s) |" in out
    for row in ("| teach (shipped model) | adam lr", "| classroom settings, random weights |",
                "| teach settings, random weights |"):
        assert row in out
    assert "goal: AP50 >= 0.9 within 45 s of training:" in out
    assert "teach init: kept 94 tensors of tinyssd_synthetic.pt" in out


def test_boxes_needed_prints_its_table_and_rule():
    out = run_bench("bench/boxes_needed.py", "--photos", "1,2", "--seeds", "0,1", "--steps", "2",
                    "--val-photos", "3", "--photo-size", "64", "--input-size", "64")
    assert ("| photos per class | photos | boxes per class (mug/book/ball) | steps | "
            "AP50 seed 0 | AP50 seed 1 | median AP50 |") in out
    for n in (1, 2):  # N, its 3N photos, boxes per class, 2 steps, two seeds and the median
        row = rf"^\| {n} \| {3 * n} \| \d+/\d+/\d+ \| 2 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$"
        assert re.search(row, out, flags=re.M), out
    assert "validated on 3 other photos" in out and "\nrule: " in out
