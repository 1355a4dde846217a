"""ssd_core's box machinery against the book's own PyTorch code (ssd_core/book.py), in one process.

    python bench/bench_boxes.py [--repeats 7]

Both sides run in the same process with the same settings (threads, allocator), interleaved
(book, ssd_core, book, ...) so a load from other programs hits both alike; each figure is the
median of the repeats. Prints a markdown table with the ratio and the issue's goal per row, the
NMS of OpenCV (``cv2.dnn.NMSBoxes``) when it is importable (torchvision's NMS does not load
with this CPU build of torch), and the memory-bandwidth view of ``box_iou``: bytes that must
move / time, against a copy measured here. Not a test: nothing here is asserted on time.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # ssd_core from this checkout

import torch

from bench._common import interleaved, repeats_on_tuned_cpu
from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES, multibox_prior
from ssd_core.book import (
    book_box_iou,
    book_multibox_detection,
    book_multibox_target,
    book_nms,
)
from ssd_core.boxes import box_iou, offset_inverse
from ssd_core.detection import multibox_detection, nms
from ssd_core.matching import multibox_target


def tinyssd_anchors():
    maps = [32, 16, 8, 4, 1]
    return torch.cat([multibox_prior(torch.zeros(1, 1, s, s), TINYSSD_SIZES[i], TINYSSD_RATIOS[i])
                      for i, s in enumerate(maps)], dim=1)


def random_labels(g, batch, max_objects, fixed=False):
    """``(batch, max_objects, 5)``; 1..max_objects objects per image (``fixed``: all), padding
    rows class -1."""
    labels = torch.full((batch, max_objects, 5), -1.0)
    for b in range(batch):
        m = max_objects if fixed else int(torch.randint(1, max_objects + 1, (1,), generator=g))
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


def copy_bandwidth(nbytes, repeats=20):
    """GB/s of ``dst.copy_(src)`` for a buffer of ``nbytes`` (read + write counted)."""
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    (t,) = interleaved([lambda: dst.copy_(src)], repeats)
    return 2 * nbytes / t / 1e9


def opencv_nms():
    try:
        import cv2  # noqa: F401
        import numpy as np
    except ImportError:
        return None

    def run(boxes, scores, threshold):
        b = boxes.double().numpy()
        xywh = np.concatenate((b[:, :2], b[:, 2:] - b[:, :2]), axis=1)
        return cv2.dnn.NMSBoxes(xywh, scores.numpy(), 0.0, threshold)

    return run, cv2.__version__


def main():
    r, tuned = repeats_on_tuned_cpu(__doc__)
    g = torch.Generator().manual_seed(0)
    anchors = tinyssd_anchors()
    n = anchors.shape[1]
    rows = []  # (operation, book s, ssd_core s, goal, note)

    full = random_labels(g, 32, 8, fixed=True)
    same = all(torch.equal(a, b) for a, b in zip(multibox_target(anchors, full),
                                                  book_multibox_target(anchors, full)))
    book_t, ours_t = interleaved([lambda: book_multibox_target(anchors, full),
                                  lambda: multibox_target(anchors, full)], r)
    rows.append(("multibox_target, B=32, 5444 anchors, 8 objects", book_t, ours_t, 10,
                 f"outputs equal: {'yes' if same else 'NO'}"))
    padded = random_labels(g, 32, 8)
    book_t, ours_t = interleaved([lambda: book_multibox_target(anchors, padded),
                                  lambda: multibox_target(anchors, padded)], r)
    rows.append(("multibox_target, B=32, 5444 anchors, 1-8 objects", book_t, ours_t, 10,
                 "book loops over all 8 slots (it has no padding rows)"))

    for name, trained in (("trained-like", True), ("random softmax", False)):
        probs, offsets = detection_inputs(g, 8, n, 3, trained)

        def book(p=probs, o=offsets):
            return book_multibox_detection(p, o, anchors, pos_threshold=0.009)

        def ours(p=probs, o=offsets):
            return multibox_detection(p, o, anchors)

        same = "yes" if torch.equal(book(), ours()) else "no (tied scores: unstable book sort)"
        book_t, ours_t = interleaved([book, ours], r)
        rows.append((f"multibox_detection, B=8, {name}, exact book order", book_t, ours_t,
                     20 if trained else None, f"outputs equal: {same}"))
        if trained:
            fast_t, = interleaved([lambda p=probs, o=offsets: multibox_detection(
                p, o, anchors, exact_order=False)], r)
            rows.append((f"multibox_detection, B=8, {name}, exact_order=False", book_t, fast_t,
                         None, "same detections and order; background rows reordered"))

    probs, offsets = detection_inputs(g, 1, n, 3, False)
    boxes = offset_inverse(anchors[0], offsets[0].reshape(-1, 4))
    scores = probs[0, 1:].max(dim=0).values
    lib = opencv_nms()
    fns = [lambda: book_nms(boxes, scores, 0.5), lambda: nms(boxes, scores, 0.5)]
    if lib:
        fns.append(lambda: lib[0](boxes, scores, 0.5))
    times = interleaved(fns, r)
    rows.append(("nms, 5444 decoded TinySSD boxes, IoU 0.5", times[0], times[1], 5,
                 f"{len(nms(boxes, scores, 0.5))} kept"))
    if lib:
        kept = torch.as_tensor(lib[0](boxes, scores, 0.5)).reshape(-1)
        same = torch.equal(kept.long(), nms(boxes, scores, 0.5))
        rows.append((f"nms vs OpenCV {lib[1]} cv2.dnn.NMSBoxes (baseline = OpenCV)", times[2],
                     times[1], None, f"same kept indices: {'yes' if same else 'no'}"))

    # box_iou is memory-bound: the (5444, 256) float32 result must be written at least once.
    gts = random_labels(g, 32, 8, fixed=True)[..., 1:].reshape(-1, 4)
    book_t, ours_t = interleaved([lambda: book_box_iou(anchors[0], gts),
                                  lambda: box_iou(anchors[0], gts)], r)
    rows.append(("box_iou, 5444 x 256 boxes", book_t, ours_t, None, "see bandwidth below"))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, glibc allocator tuned: {tuned}; "
          f"median of {r} interleaved runs\n")
    print("| operation | book (ms) | ssd_core (ms) | ratio | goal | met | note |")
    print("|---|---:|---:|---:|---:|---|---|")
    for name, base, ours, goal, note in rows:
        ratio = base / ours
        met = "" if goal is None else ("yes" if ratio >= goal else "no")
        goal_s = "-" if goal is None else f">= {goal}x"
        print(f"| {name} | {base * 1e3:.2f} | {ours * 1e3:.2f} | {ratio:.1f}x | {goal_s} | "
              f"{met} | {note} |")
    if not lib:
        print("\nNo library NMS here: torchvision's does not load with this CPU torch, and "
              "OpenCV is not installed (pip install -e \".[bench]\" adds "
              "opencv-python-headless, the baseline of the NMS row).")

    out_bytes = anchors.shape[1] * gts.shape[0] * 4
    in_cache = copy_bandwidth(out_bytes)
    dram = copy_bandwidth(256 * 2**20, repeats=5)
    print("\nMemory view of box_iou (5444 x 256 -> 5.6 MB float32 result):\n")
    print("| measure | GB/s |")
    print("|---|---:|")
    print(f"| copy of a 5.6 MB buffer (cache-resident), read + write | {in_cache:.1f} |")
    print(f"| copy of a 256 MB buffer (DRAM), read + write | {dram:.1f} |")
    for name, t in (("book", book_t), ("ssd_core", ours_t)):
        print(f"| {name} box_iou: result bytes / time | {out_bytes / t / 1e9:.3f} |")
    limit = out_bytes / (in_cache * 1e9)  # writing the result once at the measured copy rate
    print(f"\nWriting the result once at the cache-resident copy rate takes {limit * 1e3:.3f} ms; "
          f"ssd_core's box_iou takes {ours_t * 1e3:.2f} ms, {ours_t / limit:.0f}x that bound: "
          "eager PyTorch makes ~12 passes over result-sized planes (min, max, sub, clamp for x "
          "and for y, mul, add, sub, div), each reading and writing up to 17 MB; only a fused "
          "kernel could approach the one-write bound.")


if __name__ == "__main__":
    main()
