"""Seconds of training from random weights to validation AP50 0.5 and 0.8, per setting recipe.

Each recipe (ssd_core.recipes: "classroom", "book") trains through the real Trainer
(ssd_core.engine.Trainer) on the default synthetic data preset, built as the Training page
builds it (ssd_core.jobs.DataSpec: training seed 0, validation images of seed 10000), and
validates after every epoch. Times are wall-clock seconds from the start of ``fit()``, set-up
and every validation included (what a class waits); "training s" leaves validation out.
A run stops once every threshold is reached or after ``--budget`` seconds.

Run: ``python bench/time_to_ap.py [--budget 600] [--recipe classroom --recipe book]``;
``--set key=value`` (flat TrainConfig names, JSON values) and ``--train-images`` /
``--val-images`` try variations of a recipe. On a shared CPU run it under
``flock /tmp/ssd-bench.lock`` so timings do not overlap.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # ssd_core from this checkout

from bench._common import (  # noqa: E402
    Milestones,
    add_set_option,
    load_note,
    machine,
    parse_sets,
)


def run(name: str, budget: float, thresholds, overrides: dict, train_images=None,
        val_images=None, log=None) -> dict:
    """Train recipe ``name`` until every threshold is met or ``budget`` s pass -> results."""
    from ssd_core.engine import Trainer
    from ssd_core.jobs import DataSpec
    from ssd_core.recipes import get_recipe

    recipe = get_recipe(name)
    config = recipe.config(**overrides)
    n = train_images or recipe.train_images
    spec = DataSpec("synthetic", n=n, seed=0, preset="default",
                    val_n=val_images or recipe.val_images, augment=recipe.augment)
    train, val = spec.build(config.input_size)
    trainer = Trainer(config, train, val)
    marks = Milestones(thresholds, (0.0, 0.0, 0))  # (wall s, training s, images)
    epochs, images, train_s = [], 0, 0.0
    t0, cpu0 = time.perf_counter(), time.process_time()
    gen = trainer.fit()
    try:
        for rec in gen:
            now = time.perf_counter() - t0
            if rec["kind"] == "step":
                images += rec["images"]
            if rec["kind"] != "epoch":
                if now > budget:
                    break
                continue
            train_s += rec["epoch_time"]
            ap = rec.get("val_ap50", 0.0)
            epochs.append({"epoch": rec["epoch"], "wall_s": now, "train_s": train_s,
                           "cpu_s": time.process_time() - cpu0,
                           "images": rec["step"] * config.batch_size,
                           "val_ap50": ap, "val_map": rec.get("val_map"),
                           "class_error": rec["class_error"], "loss": rec["loss"]})
            print(f"  {name} epoch {rec['epoch']}: {now:6.1f} s ({train_s:6.1f} s training, "
                  f"{epochs[-1]['cpu_s']:6.1f} s CPU) "
                  f"AP50 {ap:.3f} mAP {rec.get('val_map', 0):.3f} class err "
                  f"{rec['class_error']:.4f} loss {rec['loss']:.4f}", file=sys.stderr,
                  flush=True)
            if log:
                log.write(json.dumps({"recipe": name, "overrides": overrides, **epochs[-1]})
                          + "\n")
                log.flush()
            if marks.see(ap, (now, train_s, epochs[-1]["images"])) or now > budget:
                break
    finally:
        gen.close()
    wall = time.perf_counter() - t0
    return {"name": name, "label": recipe.label, "config": config, "images": n,
            "reached": marks.reached, "best": marks.best, "epochs": epochs, "wall": wall,
            "img_s": images / max(train_s, 1e-9)}


def _cell(hit, budget) -> str:
    if hit is None:
        return f"not reached within {budget:.0f} s"
    return f"{hit[0]:.0f} s ({hit[1]:.0f} s training, {hit[2]} images)"


def table(results, thresholds, budget) -> str:
    head = ["recipe", "settings", "images / epoch", "img/s"] + [
        f"s to AP50 {t}" for t in thresholds] + ["best AP50 (at s, images)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    for r in results:
        c = r["config"]
        loss = c.loss
        settings = (f"{c.optimizer} lr {c.lr:g}, {c.schedule}, {loss.box_loss}, {loss.cls_loss}, "
                    f"{loss.normalize}{', HNM' if loss.hard_negative_mining else ''}, "
                    f"batch {c.batch_size}, {c.input_size} px, {c.epochs} epochs, "
                    f"precision {c.precision}"
                    f"{', spread anchors' if c.anchor_sizes else ''}")
        row = [r["label"], settings, str(r["images"]), f"{r['img_s']:.1f}"] + [
            _cell(r["reached"][t], budget) for t in thresholds] + [
            f"{r['best'][0]:.3f} ({r['best'][1]:.0f} s, {r['best'][3]} images)"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", action="append", help="recipe(s) to time (default: all)")
    p.add_argument("--budget", type=float, default=600.0, help="seconds per recipe at most")
    p.add_argument("--threshold", type=float, action="append",
                   help="AP50 thresholds (default: 0.5 and 0.8)")
    add_set_option(p, "the recipe")
    p.add_argument("--train-images", type=int, help="training images (default: the recipe's)")
    p.add_argument("--val-images", type=int, help="validation images (default: the recipe's)")
    p.add_argument("--log", metavar="JSONL", help="append every epoch's numbers here")
    args = p.parse_args(argv)

    from ssd_core.recipes import RECIPES

    overrides = parse_sets(args.set)
    thresholds = args.threshold or [0.5, 0.8]
    print(f"machine: {machine()}", flush=True)
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(args.log, "a")) if args.log else None
        results = [run(name, args.budget, thresholds, overrides, args.train_images,
                       args.val_images, log) for name in (args.recipe or list(RECIPES))]
    print(f"\nTime from random weights to validation AP50 on the default synthetic preset "
          f"(wall-clock s from the start of training, validation after every epoch included; "
          f"budget {args.budget:.0f} s per recipe):\n")
    print(table(results, thresholds, args.budget))
    print(f"\n{load_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
