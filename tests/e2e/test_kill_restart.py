"""Nothing lost: SIGKILL the real server while it trains, start a new one on the same runs
folder, and the run is listed as interrupted, its files are whole, and Resume continues from
its last checkpoint (not from step 0) in the browser."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from app.serve import serve
from ssd_core import load_checkpoint
from ssd_core.jobs import read_metrics

from .browser import ARTIFACTS, goto, no_exception, shot, start_training, wait_idle

pytestmark = pytest.mark.e2e


def wait_until(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def metrics(run: Path) -> list[dict]:
    return read_metrics(run / "metrics.jsonl")


def start_run(page, url: str) -> None:
    goto(page, f"{url}/training", "Training")
    # 64 images in batches of 4: a checkpoint every 16 steps, so the kill below lands
    # mid-epoch with steps left unsaved (with 4 steps an epoch it could land just after one)
    start_training(page, [("Training images", "64"), ("Validation images", "4"),
                          ("Epochs", "40"), ("Batch size", "4")])
    page.get_by_text(re.compile(r"(queued|running) · run")).first.wait_for(timeout=60_000)


def test_sigkill_during_training_then_resume(browser, chromium_path, tmp_path):
    runs = tmp_path / "runs"
    env = {"SSD_RUNS_DIR": str(runs)}
    with serve(ARTIFACTS / "kill-server-1.log", env=env) as first:
        ctx = browser.new_context(viewport={"width": 1400, "height": 2000})
        page = ctx.new_page()
        start_run(page, first.url)
        run = wait_until(lambda: next(iter(runs.glob("*/checkpoint.pt")), None), 180,
                         "the run's first checkpoint").parent
        # let it train on past the checkpoint, then pull the plug mid-epoch
        ckpt_step = load_checkpoint(run / "checkpoint.pt").train_state["step"]
        wait_until(lambda: any(r.get("step", 0) > ckpt_step + 1 for r in metrics(run)), 120,
                   "steps after the checkpoint")
        first.kill()  # about 2 of the epoch's 16 steps in: the next checkpoint is 14 steps away
        ctx.close()

    # whatever the kill interrupted, every file left behind is whole
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "running"  # stale: nobody was left to update it
    ckpt = load_checkpoint(run / "checkpoint.pt")
    ckpt_step = ckpt.train_state["step"]
    assert ckpt_step >= 16  # at least the first epoch's 64 / 4 steps
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*tmp*"))
    steps_before = [r["step"] for r in metrics(run) if r.get("kind") == "step"]
    assert steps_before and max(steps_before) > ckpt_step  # some progress was lost with the kill
    lines_before = len((run / "metrics.jsonl").read_text().splitlines())

    with serve(ARTIFACTS / "kill-server-2.log", env=env) as second:
        ctx = browser.new_context(viewport={"width": 1400, "height": 2000})
        page = ctx.new_page()
        goto(page, f"{second.url}/training", "Training")
        page.get_by_text("interrupted").first.wait_for(timeout=30_000)
        wait_idle(page, timeout=60)
        shot(page, "training-interrupted")
        page.get_by_role("button", name="Resume").click()
        page.get_by_text(re.compile(r"(queued|running) · run")).first.wait_for(timeout=60_000)

        def resumed_steps():  # the raw lines the resumed run appended
            lines = (run / "metrics.jsonl").read_text().splitlines()[lines_before:]
            later = [json.loads(x) for x in lines if x.endswith("}")]
            return [r["step"] for r in later if r.get("kind") == "step"] or None

        later = wait_until(resumed_steps, 180, "steps after the resume")
        # the first record after the resume continues from the checkpoint, not from step 0
        assert ckpt_step < later[0] <= ckpt_step + 10
        # what the curves plot: one timeline, the lost steps replaced by the resumed ones
        steps = [r["step"] for r in metrics(run) if r.get("kind") == "step"]
        assert steps == sorted(set(steps)) and max(steps) >= later[-1]
        wait_idle(page, timeout=60)
        no_exception(page)
        page.get_by_role("button", name="Stop").click()
        page.get_by_text(re.compile(r"stopped · run")).first.wait_for(timeout=120_000)
        shot(page, "training-resumed-stopped")
        ctx.close()
    final = load_checkpoint(run / "checkpoint.pt")
    assert final.train_state["step"] > ckpt_step
    assert Path(run / "owner.json").exists()
