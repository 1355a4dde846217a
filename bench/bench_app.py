"""Server-side time of the app: a slider move on the Detection page and each page's first render.

Runs the real app in-process with Streamlit's AppTest (no browser, no network transfer): the
numbers are the script's own time on this machine. Goal: a slider move under 100 ms, because it
re-filters cached network output instead of re-running TinySSD.

    python bench/bench_app.py [--moves 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"
PAGES = ["overview", "anchors", "labeling", "losses", "model", "training", "detection",
         "evaluation"]


def fresh(page: str, **state):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(APP / "main.py"), default_timeout=300)
    at.switch_page(f"views/{page}.py")
    for k, v in state.items():
        at.session_state[k] = v
    return at


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=12, help="slider moves to time")
    args = ap.parse_args()
    os.environ["SSD_RUNS_DIR"] = tempfile.mkdtemp(prefix="ssd-bench-runs-")
    import torch

    from ssd_core.detection import Detector

    torch.set_num_threads(max(1, torch.get_num_threads()))
    fresh("overview").run()  # warm-up: imports, first Streamlit run

    print(f"Threads: {torch.get_num_threads()}; times are the server-side script run (AppTest).")
    print("\nFirst render of each page (empty caches, untrained model, no runs)")
    print(f"{'page':<12}{'ms':>10}")
    for page in PAGES:
        extra = {f"{page}.model": "untrained"} if page in ("detection", "evaluation") else {}
        at = fresh(page, **extra)
        ms = timed(at.run)
        assert not at.exception, at.exception
        print(f"{page:<12}{ms:>10.0f}")

    # Detection: a slider move re-filters the cached raw output (the network must not run).
    calls = []
    raw = Detector.raw

    def counting(self, image):
        calls.append(1)
        return raw(self, image)

    Detector.raw = counting
    at = fresh("detection", **{"detection.model": "untrained"})
    first = timed(at.run)
    values = [0.3, 0.5, 0.7, 0.9, 0.25, 0.6]
    moves = []
    for k in range(args.moves):
        at.slider(key="detection.conf").set_value(values[k % len(values)])
        moves.append(timed(at.run))
        assert not at.exception
    nms = []
    for k in range(args.moves // 2):
        at.slider(key="detection.nms").set_value([0.3, 0.45, 0.6][k % 3])
        nms.append(timed(at.run))
    Detector.raw = raw
    assert len(calls) == 1, f"the network ran {len(calls)} times"

    # Reference: what a move would cost if every rerun re-ran the network (raw + filter).
    det = at.session_state["detection.model"]
    from app import model_picker, sample_images

    d = model_picker.detector(det)
    files = sample_images.sample_files()
    png = next(iter(files)).read_bytes() if files else None
    from ssd_core.data import SyntheticDetection

    img = SyntheticDetection(1, seed=0).sample(0)[0] if png is None else png
    rerun_net = statistics.median(timed(lambda v=v: d.filter(d.raw(img), v, 0.5))
                                  for v in values)
    cached = d.raw(img)
    refilter = statistics.median(timed(lambda v=v: d.filter(cached, v, 0.5)) for v in values)
    kept = [len(d.filter(cached, v, 0.5)) for v in values]

    print("\nDetection page (shipped sample image, untrained TinySSD at 256)")
    print(f"{'what':<44}{'median ms':>10}{'max ms':>10}")
    print(f"{'first render (network runs once)':<44}{first:>10.0f}{first:>10.0f}")
    print(f"{'confidence slider move (whole rerun)':<44}{statistics.median(moves):>10.0f}"
          f"{max(moves):>10.0f}")
    print(f"{'NMS IoU slider move (whole rerun)':<44}{statistics.median(nms):>10.0f}"
          f"{max(nms):>10.0f}")
    print(f"{'  of which Detector.filter on cached output':<44}{refilter:>10.1f}")
    print(f"    (boxes kept at thresholds {values}: {kept})")
    print(f"{'reference: network + filter per move':<44}{rerun_net:>10.0f}")
    print(f"\nnetwork runs during {len(moves) + len(nms)} slider moves: {len(calls) - 1}")
    print(f"slider move / (network + filter) = {statistics.median(moves) / rerun_net:.2f}; "
          f"goal: move < 100 ms -> {'met' if statistics.median(moves) < 100 else 'NOT met'}")


if __name__ == "__main__":
    main()
