"""Detector latency: predict on a small and a large photo, and re-filtering cached output.

    python bench/bench_detect.py [--repeats 7]

Prints a table of median times. Goals on a 2-core CPU: re-filter under 5 ms, predict on a
4000x3000 photo under 300 ms. Uses the shipped model (assets/) or, without it, an untrained
TinySSD (then many more candidates survive the confidence threshold).
"""

import argparse
import io
import statistics
import time

import numpy as np
import torch
from PIL import Image

from ssd_core.detection import DEFAULT_CHECKPOINT, Detector
from ssd_core.device import configure_cpu_threads, tune_cpu_allocator
from ssd_core.model import TinySSD


def median_ms(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def photo(w, h, seed=0):
    """A JPEG-encoded noisy photo-sized image (bytes), as an upload would arrive."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 50 + 1, w // 50 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    tune_cpu_allocator()
    configure_cpu_threads()
    if DEFAULT_CHECKPOINT.exists():
        det, which = Detector.from_checkpoint(), "shipped model"
    else:
        torch.manual_seed(0)
        det, which = Detector(TinySSD(3), ["banana", "ring", "star"]), "untrained TinySSD"
    from ssd_core.data import SyntheticDetection

    sample = io.BytesIO()
    SyntheticDetection(1, seed=424242).sample(0)[0].save(sample, "PNG")
    small, large = sample.getvalue(), photo(4000, 3000)
    raw = det.raw(small)
    rows = [
        ("predict, 256x256 PNG", median_ms(lambda: det.predict(small), args.repeats), None),
        ("predict, 4000x3000 JPEG (decode + resize + network + filter)",
         median_ms(lambda: det.predict(large), args.repeats), 300),
        ("re-filter cached output, conf 0.5, NMS 0.5",
         median_ms(lambda: det.filter(raw, 0.5, 0.5), args.repeats * 5), 5),
        ("re-filter cached output, conf 0.2, per-class NMS",
         median_ms(lambda: det.filter(raw, 0.2, 0.45, per_class=True), args.repeats * 5), 5),
    ]
    print(f"Detector latency ({which}, {torch.get_num_threads()} threads, median of "
          f"{args.repeats}+ runs)\n")
    print("| operation | median ms | goal ms | met |")
    print("|---|---:|---:|---|")
    for name, ms, goal in rows:
        met = "" if goal is None else ("yes" if ms < goal else "no")
        print(f"| {name} | {ms:.1f} | {goal or '-'} | {met} |")


if __name__ == "__main__":
    main()
