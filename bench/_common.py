"""What the bench scripts share: the machine line, ``--set key=value`` overrides, the closing
load-average note and interleaved timing. A script imports it as ``bench._common`` after putting
the checkout's root on ``sys.path`` (``python bench/x.py`` puts only bench/ there)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def machine() -> str:
    """The CPU, its cores, torch and its threads, and the load average now, in one line."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith(
                "model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), load average at start {load}")


def add_set_option(parser, what: str) -> None:
    """``--set KEY=VALUE`` (repeatable) on ``parser``; ``what``: which runs it changes."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a setting of {what} (flat TrainConfig name, JSON value)")


def parse_sets(items) -> dict:
    """``["lr=0.1", "schedule=cosine"]`` -> ``{"lr": 0.1, "schedule": "cosine"}``: each value
    read as JSON, kept as text when it is not JSON."""
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    return overrides


def load_note() -> str:
    """The load average at the end, and what a high one means for the times."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"load average at the end {load} (a load above {os.cpu_count()} means other "
            f"processes shared these cores and the times are pessimistic)")


def repeats_on_tuned_cpu(doc: str, default: int = 5) -> tuple[int, bool]:
    """``--repeats`` from the command line (the script's ``doc`` as its help), after tuning the
    allocator and torch's threads as the app does -> (repeats, whether the allocator was
    tuned)."""
    from ssd_core.device import configure_cpu_threads, tune_cpu_allocator

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=default)
    args = ap.parse_args()
    tuned = tune_cpu_allocator()
    configure_cpu_threads()
    return args.repeats, tuned


def interleaved(fns, repeats: int, unit: float = 1.0) -> list[float]:
    """Median time of each function in seconds * ``unit``, the functions run alternately
    ``repeats`` times after one warm-up each (a load from other programs hits them alike)."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for t, fn in zip(times, fns):
            start = time.perf_counter()
            fn()
            t.append((time.perf_counter() - start) * unit)
    return [statistics.median(t) for t in times]


class Milestones:
    """When validation AP50 first reached each of ``thresholds`` and its best so far, as a
    bench times a run epoch by epoch. ``when``: the bench's own tuple of clocks (training s,
    wall s, images, ...); ``reached[t]`` is that tuple at the first epoch with AP50 >= t (None
    until then) and ``best`` is ``(ap50, *when)`` at the best epoch."""

    def __init__(self, thresholds, zero: tuple):
        self.reached = dict.fromkeys(thresholds)
        self.best = (0.0, *zero)

    def see(self, ap: float, when: tuple) -> bool:
        """Take one validation; -> whether every threshold has been reached."""
        if ap > self.best[0]:
            self.best = (ap, *when)
        for t, hit in self.reached.items():
            if hit is None and ap >= t:
                self.reached[t] = when
        return all(v is not None for v in self.reached.values())
