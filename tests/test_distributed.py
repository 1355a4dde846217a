"""``python -m ssd_core train`` under torchrun with 2 CPU processes (gloo, DistributedSampler)."""

from __future__ import annotations

import json
import subprocess
import sys

from ssd_core import load_checkpoint
from tests.helpers import TINY, flags


def test_two_cpu_processes_train_one_model(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ssd_core", "train", "--synthetic", "16", "--preset", "book",
           *flags({**TINY, "device": "cpu"}), "--out", str(tmp_path / "run")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    # Each rank reports; both saw all 16 images through the all-reduced counts.
    for rank in (0, 1):
        assert f"[rank {rank}/2] finished: 2 steps, 16 images (all ranks)" in p.stderr, p.stderr
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    # 16 images / 2 processes / batch 4 = 2 steps, each of 2 x 4 images.
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["images"] == 8 and r["world_size"] == 2 for r in steps)
    assert records[-1]["kind"] == "epoch" and records[-1]["images"] == 16
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck.train_state["step"] == 2 and ck.class_names == ["banana"]
    assert not list((tmp_path / "run").glob("*.tmp"))
