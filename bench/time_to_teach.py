"""Seconds of training to validation AP50 0.5 / 0.8 / 0.9 on a few-shot set of photos of three
objects: the ``teach`` recipe (from the shipped model) against the best from-random-weights
setting (the ``classroom`` recipe's settings on the same data).

The data are ``ssd_core.data.fewshot`` photos of one mug, one book and one ball, written as
COCO folders as a user's Teach set is stored: ``--train-photos`` (24) labelled photos to train
on and ``--val-photos`` (36) other photos of the same three objects (another photo seed) to
validate on after every epoch. Each arm trains through the real Trainer on the dataset read
back from disk, as ``recipes.recipe_job`` builds it for the job queue. "training s" is the
sum of the epochs' training time (validation and set-up left out); "wall s" is from the start
of ``fit()``, set-up and every validation included. A run stops once every threshold is
reached or after ``--budget`` seconds of training.

Arms: ``teach`` (the recipe as shipped); ``classroom`` (the classroom recipe's settings from
random weights on the same photos, with the same strong augmentation, ``--baseline-epochs``
epochs so that its cosine schedule spans about the budget); ``teach-random`` (the teach
schedule, as many epochs, from random weights: what the shipped weights are worth).
``--set key=value`` changes the teach arms.

Run: ``flock /tmp/ssd-bench.lock python bench/time_to_teach.py [--budget 120]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
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

ARMS = ("teach", "classroom", "teach-random")
GOAL_S = 45.0  # issue 22: AP50 >= 0.9 within 45 s of training on this 2-core CPU


def arm_job(arm: str, train_dir, val_dir, baseline_epochs: int, overrides: dict):
    """-> (label, TrainConfig, DataSpec, init checkpoint or None) of one arm. A ``seed`` in
    ``overrides`` is the run's (TrainConfig.seed), not recipe_job's hold-out seed."""
    from ssd_core.recipes import get_recipe, recipe_job

    overrides = dict(overrides)
    seed = overrides.pop("seed", None)

    def seeded(config):
        return config if seed is None else config.replace(seed=int(seed))

    if arm == "teach":
        config, spec, init = recipe_job("teach", train_dir, val_dir, **overrides)
        return "teach (shipped model)", seeded(config), spec, init
    if arm == "teach-random":
        config, spec, _ = recipe_job("teach", train_dir, val_dir,
                                     **{"epochs": baseline_epochs, **overrides})
        return "teach settings, random weights", seeded(config), spec, None
    if arm == "classroom":
        # More epochs of the few photos than the classroom's 10 (15 steps would teach nothing
        # from random weights): --baseline-epochs, so the cosine schedule spans the budget.
        config, spec, _ = recipe_job("classroom", train_dir, val_dir)
        config = config.replace(epochs=baseline_epochs)
        spec.augment = get_recipe("teach").augment
        return "classroom settings, random weights", config, spec, None
    raise ValueError(f"unknown arm {arm!r}; choose from {ARMS}")


def run(arm: str, train_dir, val_dir, budget: float, thresholds, overrides: dict,
        log=None, baseline_epochs: int = 40) -> dict:
    """Train one arm until every threshold is met or ``budget`` s of training -> results."""
    from ssd_core.engine import Trainer

    label, config, spec, init = arm_job(arm, train_dir, val_dir, baseline_epochs, overrides)
    train, val = spec.build(config.input_size)
    trainer = Trainer(config, train, val, init=init)
    marks = Milestones(thresholds, (0.0, 0.0))  # (training s, wall s)
    epochs, images, train_s = [], 0, 0.0
    t0 = time.perf_counter()
    gen = trainer.fit()
    try:
        for rec in gen:
            now = time.perf_counter() - t0
            if rec["kind"] == "step":
                continue
            images += rec["images"]  # the epoch's images (step records cover only windows)
            train_s += rec["epoch_time"]
            ap = rec.get("val_ap50", 0.0)
            epochs.append({"epoch": rec["epoch"], "wall_s": now, "train_s": train_s,
                           "val_ap50": ap, "val_map": rec.get("val_map"), "loss": rec["loss"]})
            print(f"  {arm} epoch {rec['epoch']}: {train_s:6.1f} s training ({now:6.1f} s wall)"
                  f" AP50 {ap:.3f} mAP {rec.get('val_map', 0):.3f} loss {rec['loss']:.4f}",
                  file=sys.stderr, flush=True)
            if log:
                log.write(json.dumps({"arm": arm, "overrides": overrides, **epochs[-1]}) + "\n")
                log.flush()
            if marks.see(ap, (train_s, now)) or train_s > budget:
                break
    finally:
        gen.close()
    return {"arm": arm, "label": label, "config": config, "reached": marks.reached,
            "best": marks.best, "epochs": epochs, "init_report": trainer.init_report,
            "train_images": len(train), "val_images": len(val),
            "img_s": images / max(train_s, 1e-9)}


def _cell(hit, budget) -> str:
    if hit is None:
        return f"not within {budget:.0f} s"
    return f"{hit[0]:.1f} s ({hit[1]:.0f} s wall)"


def table(results, thresholds, budget) -> str:
    head = ["arm", "settings", "img/s"] + [f"training s to AP50 {t}" for t in thresholds] + [
        "best AP50 (at training s)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in results:
        c = r["config"]
        settings = (f"{c.optimizer} lr {c.lr:g}, warmup {c.warmup_steps}, {c.schedule}, "
                    f"batch {c.batch_size}, {c.input_size} px, {c.epochs} epochs")
        row = [r["label"], settings, f"{r['img_s']:.1f}"] + [
            _cell(r["reached"][t], budget) for t in thresholds] + [
            f"{r['best'][0]:.3f} ({r['best'][1]:.1f} s)"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def goal_line(results) -> str:
    teach = next((r for r in results if r["arm"] == "teach"), None)
    if teach is None or 0.9 not in teach["reached"]:
        return f"goal: AP50 >= 0.9 within {GOAL_S:.0f} s of training (teach arm not run)"
    hit = teach["reached"][0.9]
    if hit is None:
        return (f"goal: AP50 >= 0.9 within {GOAL_S:.0f} s of training: NOT met (best "
                f"{teach['best'][0]:.3f} at {teach['best'][1]:.1f} s)")
    verdict = "met" if hit[0] <= GOAL_S else "NOT met"
    return (f"goal: AP50 >= 0.9 within {GOAL_S:.0f} s of training: {verdict} "
            f"({hit[0]:.1f} s of training, {hit[1]:.0f} s wall)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arm", action="append", choices=ARMS, help="arm(s) to time (default: all)")
    p.add_argument("--budget", type=float, default=120.0, help="training seconds per arm at most")
    p.add_argument("--threshold", type=float, action="append",
                   help="AP50 thresholds (default: 0.5, 0.8 and 0.9)")
    p.add_argument("--train-photos", type=int, default=24, help="labelled photos to train on")
    p.add_argument("--val-photos", type=int, default=36, help="other photos to validate on")
    p.add_argument("--photo-size", type=int, default=256, help="side of the photos in pixels")
    add_set_option(p, "the teach arms")
    p.add_argument("--baseline-epochs", type=int, default=40,
                   help="epochs of the random-weights arms (classroom, teach-random)")
    p.add_argument("--data", metavar="DIR", help="keep the few-shot COCO folders here")
    p.add_argument("--log", metavar="JSONL", help="append every epoch's numbers here")
    args = p.parse_args(argv)

    from ssd_core.data.fewshot import write_fewshot

    overrides = parse_sets(args.set)
    thresholds = args.threshold or [0.5, 0.8, 0.9]
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data or tmp)
        train_dir, val_dir = root / "fewshot-train", root / "fewshot-val"
        if not (train_dir / "annotations.json").exists():
            write_fewshot(train_dir, args.train_photos, seed=0, photo_size=args.photo_size)
        if not (val_dir / "annotations.json").exists():
            write_fewshot(val_dir, args.val_photos, seed=1, photo_size=args.photo_size)
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(open(args.log, "a")) if args.log else None
            results = [run(arm, train_dir, val_dir, args.budget, thresholds, overrides, log,
                           args.baseline_epochs) for arm in (args.arm or ARMS)]
    r0 = results[0]
    print(f"\nTraining seconds to validation AP50 on the few-shot set ({r0['train_images']} "
          f"labelled photos of a mug, a book and a ball; validated after every epoch on "
          f"{r0['val_images']} other photos of them; budget {args.budget:.0f} s of training "
          f"per arm):\n")
    print(table(results, thresholds, args.budget))
    print()
    print(goal_line(results))
    for r in results:
        if r["init_report"]:
            print(f"{r['arm']} init: {r['init_report']}")
    print(load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
