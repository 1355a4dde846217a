"""Time a full training step (batch 32, 256x256) of ssd_core.train against a plain book loop.

Each variant runs in its own fresh process on the same synthetic data:
- ``book``: the chapter's loop: NCHW, per-image loop target assignment
  (tests/reference.ref_multibox_target), the book's loss, SGD; default process settings
  (glibc allocator untouched, no GLIBC_TUNABLES).
- ``book+tunables``: the same loop started with GLIBC_TUNABLES keeping freed memory.
- ``engine``: ssd_core.train.Trainer as shipped (allocator tuned by mallopt, channels_last).
- ``engine -alloc``: the engine with the allocator tuning disabled.
- ``engine -channels_last``: the engine in NCHW.
Images/s count whole steps: data loading, target assignment, loss, backward, optimizer step.
"outside net" is the share of the engine's step time not spent in forward + backward +
optimizer step (timed on one fixed batch in the same process); "of which data" is the part of
the step that building the batch (dataset items + collate) takes alone.
Goals on a 2-core CPU: engine >= 1.5x book, >= 25 images/s, outside net < 10%.
Run: ``python bench/bench_train.py [--steps 4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.reference

BATCH, SIZE = 32, 256
TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"


def _data(steps):
    from ssd_core.data import SyntheticDetection

    return SyntheticDetection(BATCH * (steps + 1), seed=0, image_size=SIZE, preset="default")


def worker_book(steps: int) -> dict:
    """The chapter's loop, one image at a time in target assignment, NCHW."""
    import torch
    from torch import nn

    from ssd_core.data import detection_collate
    from ssd_core.model import TinySSD
    from tests.reference import ref_multibox_target

    torch.manual_seed(0)
    ds = _data(steps)
    net = TinySSD(len(ds.class_names))
    trainer = torch.optim.SGD(net.parameters(), lr=0.2, weight_decay=5e-4)
    cls_loss, bbox_loss = nn.CrossEntropyLoss(reduction="none"), nn.L1Loss(reduction="none")

    def calc_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks):
        b, c = cls_preds.shape[0], cls_preds.shape[2]
        cls = cls_loss(cls_preds.reshape(-1, c), cls_labels.reshape(-1)).reshape(b, -1).mean(1)
        bbox = bbox_loss(bbox_preds * bbox_masks, bbox_labels * bbox_masks).mean(dim=1)
        return cls + bbox

    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True,
                                         collate_fn=detection_collate)
    net.train()
    times = []
    t0 = time.perf_counter()
    for X, Y in loader:
        trainer.zero_grad()
        anchors, cls_preds, bbox_preds = net(X)
        bbox_labels, bbox_masks, cls_labels = ref_multibox_target(anchors, Y)
        loss = calc_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks)
        loss.mean().backward()
        trainer.step()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        t0 = t1
    times = times[1:]  # the first step pays for warm-up
    return {"images_per_s": BATCH / statistics.median(times), "step_s": times}


def worker_engine(steps: int, alloc: bool, channels_last: bool) -> dict:
    import torch

    import ssd_core.device as devmod
    from ssd_core.train import TrainConfig, Trainer

    if not alloc:
        devmod.tune_cpu_allocator = lambda: False
    ds = _data(steps)
    cfg = TrainConfig(epochs=1, log_every=1, channels_last=channels_last)
    trainer = Trainer(cfg, ds)
    records = [r for r in trainer.fit() if r["kind"] == "step"][1:]
    step_s = [r["images"] / r["images_per_s"] for r in records]
    # Network alone on one fixed batch: forward + backward + optimizer step.
    net, opt = trainer.model, trainer.optimizer
    X = torch.rand(BATCH, 3, SIZE, SIZE)
    if channels_last:
        X = X.contiguous(memory_format=torch.channels_last)
    net_times = []
    for _ in range(3):
        t = time.perf_counter()
        _, cls_preds, bbox_preds = net(X)
        (cls_preds.float().mean() + bbox_preds.float().mean()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        net_times.append(time.perf_counter() - t)
    # Data loading alone (dataset items + collate) for one batch, to split the outside share.
    from ssd_core.data import detection_collate

    t = time.perf_counter()
    detection_collate([ds[i] for i in range(BATCH)])
    data_s = time.perf_counter() - t
    step = statistics.median(step_s)
    net_s = statistics.median(net_times[1:])
    return {"images_per_s": BATCH / step, "step_s": step_s, "net_s": net_s,
            "outside_share": max(0.0, 1 - net_s / step), "data_share": min(1.0, data_s / step),
            "threads": torch.get_num_threads()}


VARIANTS = {
    "book (default process)": (["book"], False),
    "book + GLIBC_TUNABLES": (["book"], True),
    "engine (shipped)": (["engine", "1", "1"], False),
    "engine - allocator tuning": (["engine", "0", "1"], False),
    "engine - channels_last": (["engine", "1", "0"], False),
}


def run_variant(args, steps, tunables) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if tunables:
        env["GLIBC_TUNABLES"] = TUNABLES
    p = subprocess.run([sys.executable, __file__, "--worker", *args, "--steps", str(steps)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    if p.returncode:
        raise SystemExit(f"variant {args} failed:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="timed steps per variant (+1 warm-up)")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind = args.worker[0]
        if kind == "book":
            out = worker_book(args.steps)
        else:
            out = worker_engine(args.steps, args.worker[1] == "1", args.worker[2] == "1")
        print(json.dumps(out))
        return

    print(f"training step, batch {BATCH}, {SIZE}x{SIZE}, {os.cpu_count()} CPUs, "
          f"{args.steps} timed steps per variant (median)\n")
    results = {}
    for name, (wargs, tunables) in VARIANTS.items():
        results[name] = run_variant(wargs, args.steps, tunables)
    base = results["book (default process)"]["images_per_s"]
    print("| variant | images/s | step s (min-max) | vs book | outside net | of which data |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        lo, hi = min(r["step_s"]), max(r["step_s"])
        outside = f"{100 * r['outside_share']:.1f}%" if "outside_share" in r else "-"
        data = f"{100 * r['data_share']:.1f}%" if "data_share" in r else "-"
        print(f"| {name} | {r['images_per_s']:.1f} | {lo:.2f}-{hi:.2f} | "
              f"{r['images_per_s'] / base:.2f}x | {outside} | {data} |")
    eng = results["engine (shipped)"]
    print(f"\ngoals: >= 1.5x book: {eng['images_per_s'] / base:.2f}x; >= 25 images/s: "
          f"{eng['images_per_s']:.1f}; < 10% outside net: {100 * eng['outside_share']:.1f}%")


if __name__ == "__main__":
    main()
