"""Detector latency against the book's prediction code (ssd_core/book.py), in one process.

    python bench/bench_detect.py [--repeats 7]

The book's way to predict (the chapter's ``predict``): run the network, softmax, the book's
``multibox_detection``, keep the rows with class >= 0 and score >= the display threshold. Both
sides get the same decoded, resized image tensor and the same model (the shipped one in
assets/, or an untrained TinySSD without it), the same threads and allocator, and are timed
interleaved; each figure is the median of the repeats. Goals on a 2-core CPU: re-filter under
5 ms, predict on a 4000x3000 photo under 300 ms.
"""

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # ssd_core from this checkout

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench._common import interleaved, repeats_on_tuned_cpu
from ssd_core import predict_batch
from ssd_core.book import book_multibox_detection
from ssd_core.detection import DEFAULT_CHECKPOINT, Detector
from ssd_core.images import image_to_tensor, load_image
from ssd_core.model import TinySSD


def photo(w, h, seed=0):
    """A JPEG-encoded noisy photo-sized image (bytes), as an upload would arrive."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 50 + 1, w // 50 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


@torch.no_grad()
def book_predict(net, X, threshold, nms_threshold=0.5):
    """The chapter's predict + display filter: ``X (B, 3, S, S)`` -> list of ``(k, 6)`` rows."""
    anchors, cls_preds, bbox_preds = net(X)
    cls_probs = F.softmax(cls_preds, dim=2).permute(0, 2, 1)
    output = book_multibox_detection(cls_probs, bbox_preds, anchors, nms_threshold, 0.009)
    return [out[(out[:, 0] >= 0) & (out[:, 1] >= threshold)] for out in output]


def main():
    r, tuned = repeats_on_tuned_cpu(__doc__)
    if DEFAULT_CHECKPOINT.exists():
        det, which = Detector.from_checkpoint(), "shipped model"
    else:
        torch.manual_seed(0)
        det, which = Detector(TinySSD(3), ["banana", "ring", "star"]), "untrained TinySSD"
    net, size = det.model, det.input_size
    from ssd_core.data import SyntheticDetection

    sample = io.BytesIO()
    SyntheticDetection(1, seed=424242).sample(0)[0].save(sample, "PNG")
    small, large = sample.getvalue(), photo(4000, 3000)

    def tensor(data):
        return image_to_tensor(load_image(data), size)[None]

    raw = det.raw(small)
    X_small = tensor(small)
    batch = torch.cat([image_to_tensor(SyntheticDetection(8, seed=7).sample(i)[0], size)[None]
                       for i in range(8)])
    rows = []  # (operation, book ms, ssd_core ms, goal ms)
    b, o = interleaved([lambda: book_predict(net, X_small, 0.5),
                        lambda: det.filter(raw, 0.5, 0.5)], r, unit=1000)
    rows.append(("re-filter cached output, conf 0.5, NMS 0.5 (book: reruns the network and "
                 "multibox_detection)", b, o, 5))
    b, o = interleaved([lambda: book_predict(net, X_small, 0.2, 0.45),
                        lambda: det.filter(raw, 0.2, 0.45, per_class=True)], r, unit=1000)
    rows.append(("re-filter, conf 0.2, per-class NMS 0.45 (book: class-agnostic, no per-class)",
                 b, o, 5))
    b, o = interleaved([lambda: book_predict(net, tensor(small), 0.5),
                        lambda: det.predict(small)], r, unit=1000)
    rows.append(("predict, 256x256 PNG (decode + network + filter)", b, o, None))
    b, o = interleaved([lambda: book_predict(net, tensor(large), 0.5),
                        lambda: det.predict(large)], r, unit=1000)
    rows.append(("predict, 4000x3000 JPEG (decode + resize + network + filter)", b, o, 300))
    with torch.no_grad():
        b, o = interleaved([lambda: book_predict(net, batch, 0.5),
                            lambda: predict_batch(net, batch)], r, unit=1000)
    rows.append(("batch of 8 images, network + multibox_detection (predict_batch)", b, o, None))

    print(f"Detector latency ({which}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, glibc allocator tuned: {tuned}; median of {r} interleaved runs)\n")
    print("| operation | book (ms) | ssd_core (ms) | ratio | goal (ssd_core ms) | met |")
    print("|---|---:|---:|---:|---:|---|")
    for name, base, ours, goal in rows:
        met = "" if goal is None else ("yes" if ours < goal else "no")
        print(f"| {name} | {base:.1f} | {ours:.1f} | {base / ours:.1f}x | "
              f"{'-' if goal is None else f'< {goal}'} | {met} |")


if __name__ == "__main__":
    main()
