"""Time ssd_core's box machinery against the plain loop references in tests/reference.py.

Prints a markdown table (median seconds, ratio). Run: ``python bench/bench_boxes.py``.
Goals on a 2-core CPU: multibox_target >= 10x, multibox_detection (trained-like) >= 20x,
nms >= 5x.
"""

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.reference

from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES, multibox_prior  # noqa: E402
from ssd_core.detection import multibox_detection, nms  # noqa: E402
from ssd_core.matching import multibox_target  # noqa: E402
from tests.reference import (  # noqa: E402
    ref_multibox_detection,
    ref_multibox_target,
    ref_nms,
)


def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tinyssd_anchors():
    maps = [32, 16, 8, 4, 1]
    return torch.cat(
        [
            multibox_prior(torch.zeros(1, 1, s, s), TINYSSD_SIZES[i], TINYSSD_RATIOS[i])
            for i, s in enumerate(maps)
        ],
        dim=1,
    )


def random_labels(g, batch, max_objects):
    labels = torch.full((batch, max_objects, 5), -1.0)
    for b in range(batch):
        m = int(torch.randint(1, max_objects + 1, (1,), generator=g))
        xy = torch.rand(m, 2, generator=g) * 0.7
        wh = 0.1 + torch.rand(m, 2, generator=g) * 0.3
        labels[b, :m, 0] = torch.randint(0, 3, (m,), generator=g).float()
        labels[b, :m, 1:] = torch.cat((xy, (xy + wh).clamp(max=1.0)), dim=1)
    return labels


def detection_inputs(g, batch, n, classes, trained_like):
    if trained_like:
        # Background prob ~0.99+ everywhere except 20-50 confident anchors per image.
        logits = torch.randn(batch, classes + 1, n, generator=g) * 0.5
        logits[:, 0] += 7.0
        for b in range(batch):
            k = int(torch.randint(20, 51, (1,), generator=g))
            hot = torch.randperm(n, generator=g)[:k]
            logits[b, 1:, hot] += 10.0 * torch.rand(classes, k, generator=g)
    else:
        logits = torch.randn(batch, classes + 1, n, generator=g)
    probs = torch.softmax(logits, dim=1)
    offsets = torch.randn(batch, n * 4, generator=g) * 0.3
    return probs, offsets


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    anchors = tinyssd_anchors()
    n = anchors.shape[1]
    rows = []

    labels = random_labels(g, 32, 8)
    rows.append(
        (
            "multibox_target (B=32, 5444 anchors, 1-8 objects)",
            median_time(lambda: ref_multibox_target(anchors, labels), 1),
            median_time(lambda: multibox_target(anchors, labels), 10),
        )
    )
    for name, trained in (("trained-like", True), ("random softmax", False)):
        probs, offsets = detection_inputs(g, 8, n, 3, trained)
        rows.append(
            (
                f"multibox_detection (B=8, {name})",
                median_time(lambda p=probs, o=offsets: ref_multibox_detection(p, o, anchors), 1),
                median_time(lambda p=probs, o=offsets: multibox_detection(p, o, anchors), 5),
            )
        )
        if trained:
            rows.append(
                (
                    f"multibox_detection (B=8, {name}, exact_order=False)",
                    rows[-1][1],
                    median_time(
                        lambda p=probs, o=offsets: multibox_detection(
                            p, o, anchors, exact_order=False
                        ),
                        5,
                    ),
                )
            )
    probs, offsets = detection_inputs(g, 1, n, 3, False)
    from ssd_core.boxes import offset_inverse

    boxes = offset_inverse(anchors[0], offsets[0].reshape(-1, 4))
    scores = probs[0, 1:].max(dim=0).values
    rows.append(
        (
            "nms (5444 decoded TinySSD boxes, IoU 0.5)",
            median_time(lambda: ref_nms(boxes, scores, 0.5), 3),
            median_time(lambda: nms(boxes, scores, 0.5), 10),
        )
    )

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| operation | loop reference (s) | ssd_core (s) | speed-up |")
    print("|---|---:|---:|---:|")
    for name, ref, fast in rows:
        print(f"| {name} | {ref:.4f} | {fast:.4f} | {ref / fast:.1f}x |")


if __name__ == "__main__":
    main()
