"""``python -m ssd_core`` through subprocesses on tiny data: synth -> train -> eval -> detect,
resume, and the one-line errors (exit 2, no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ssd_core import FIELDS, load_checkpoint
from tests.helpers import TINY, flags

ROOT = Path(__file__).resolve().parent.parent


def run(*args, check=True, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # also from another folder, installed or not
    p = subprocess.run([sys.executable, "-m", "ssd_core", *map(str, args)],
                       capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
    if check:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A COCO dataset of 8 synthetic images and a 1-epoch run trained on it via the CLI."""
    root = tmp_path_factory.mktemp("cli")
    run("synth", "--format", "coco", "--n", 8, "--out", root / "coco", "--seed", 1,
        "--image-size", 96)
    p = run("train", "--data", root / "coco", "--out", root / "run",
            *flags({**TINY, "epochs": 1, "log_every": 2}))
    return root, p


def test_synth_writes_each_format(tmp_path):
    for fmt in ("voc", "yolo", "csv"):
        p = run("synth", "--format", fmt, "--n", 3, "--out", tmp_path / fmt, "--image-size", 64)
        assert "wrote 3 synthetic images" in p.stdout
        images = [*(tmp_path / fmt).rglob("*.png"), *(tmp_path / fmt).rglob("*.jpg")]
        assert len(images) == 3


def test_train_writes_a_run_folder(trained):
    root, p = trained
    run_dir = root / "run"
    assert "epoch   1/1: loss" in p.stdout and "finished" in p.stdout
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished"
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "step"] == [2]
    assert records[-1]["kind"] == "epoch" and records[-1]["images"] == 8
    ck = load_checkpoint(run_dir / "checkpoint.pt")
    assert ck.config.input_size == 64 and ck.config.base_channels == (8, 16, 16)
    assert ck.train_state["step"] == 2


def test_resume_continues_with_more_epochs(trained, tmp_path):
    root, _ = trained
    import shutil

    shutil.copytree(root / "run", tmp_path / "run")
    p = run("train", "--data", root / "coco", "--out", tmp_path / "run", "--resume",
            "--epochs", 2)
    assert "resuming" in p.stdout and "epoch   2/2" in p.stdout
    assert "epoch   1/" not in p.stdout
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck.train_state["step"] == 4 and ck.config.epochs == 2 and ck.config.channels == 16


def test_eval_prints_an_ap_table(trained, tmp_path):
    root, _ = trained
    p = run("eval", root / "run" / "checkpoint.pt", "--data", root / "coco", "--json",
            tmp_path / "ap.json")
    names = load_checkpoint(root / "run" / "checkpoint.pt").class_names
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["class", "AP50", "mAP", "#gt"]
    assert [ln.split()[0] for ln in lines[1:-1]] == names
    assert lines[-1].startswith("all (mean)")
    result = json.loads((tmp_path / "ap.json").read_text())
    assert set(result["per_class"]) == set(names) and 0 <= result["ap50"] <= 1


def test_detect_prints_json_and_draws(trained, tmp_path):
    root, _ = trained
    img = tmp_path / "wide.png"
    Image.new("RGB", (200, 120), (40, 120, 200)).save(img)
    p = run("detect", root / "run" / "checkpoint.pt", img, "--conf", "0.0",
            "--draw", tmp_path / "out.png")
    out = json.loads(p.stdout)
    assert (out["width"], out["height"]) == (200, 120)
    assert out["detections"], "conf 0 keeps every non-suppressed box"
    for d in out["detections"]:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= 200 and 0 <= y1 <= y2 <= 120  # pixels of the original
    drawn = Image.open(tmp_path / "out.png")
    assert drawn.size == (200, 120)
    assert drawn.convert("RGB").tobytes() != Image.open(img).convert("RGB").tobytes()


def test_shipped_names_the_pretrained_model(tmp_path):
    from ssd_core.data import SyntheticDetection

    img, boxes, labels = SyntheticDetection(1, seed=424242).sample(0)
    img.save(tmp_path / "synthetic.png")
    p = run("detect", "shipped", tmp_path / "synthetic.png", cwd=tmp_path)  # not the repo root
    found = json.loads(p.stdout)["detections"]
    names = SyntheticDetection(1).class_names
    assert found and found[0]["class"] in {names[i] for i in labels.tolist()}
    assert all(d["class"] == names[d["class_id"]] for d in found)
    assert "'shipped'" in run("eval", "--help").stdout


@pytest.mark.parametrize("args,words", [
    (["eval", "missing.pt", "--synthetic", "2"], "No checkpoint file"),
    (["detect", "BAD", "x.png"], "not a readable PyTorch checkpoint"),
    (["train", "--synthetic", "4", "--lr", "-1", "--out", "OUT"], "lr must be > 0"),
    (["train", "--synthetic", "4", "--input-size", "100", "--out", "OUT"], "multiple of 32"),
    (["train", "--data", "no/such/folder", "--out", "OUT"], "No dataset"),
])
def test_user_errors_are_one_clear_line(tmp_path, args, words):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    args = [str(bad) if a == "BAD" else str(tmp_path / "o") if a == "OUT" else a for a in args]
    p = run(*args, check=False)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], p.stderr


def test_help_explains_every_option():
    p = run("train", "--help")
    assert len(FIELDS) > 30  # every setting by its flat name, the loss settings too
    for name in FIELDS:
        assert "--" + name.replace("_", "-") in p.stdout, name
    assert "--synthetic" in p.stdout and "--resume" in p.stdout


# ---- the teach recipe and --init with other classes (issue 22)


@pytest.fixture(scope="module")
def fewshot(tmp_path_factory):
    """Eight few-shot photos (mug, book, ball) and three others, as COCO folders."""
    from ssd_core.data.fewshot import write_fewshot

    root = tmp_path_factory.mktemp("fewshot")
    write_fewshot(root / "train", 8, seed=0, photo_size=80)
    write_fewshot(root / "val", 3, seed=1, photo_size=80)
    return root


def test_train_recipe_teach_holds_out_a_share_and_says_what_init_kept(fewshot, tmp_path):
    p = run("train", "--recipe", "teach", "--data", fewshot / "train", "--out", tmp_path / "t",
            "--epochs", 1, "--input-size", 64, "--batch-size", 4)
    out = p.stdout
    assert "held out 2 of 8 images for validation" in out and "training on 6" in out
    assert "starting from the weights of" in out and "tinyssd_synthetic.pt" in out
    assert ("init: kept 94 tensors of tinyssd_synthetic.pt (backbone, BatchNorm statistics, "
            "box layers); re-made 10 class layers for 3 classes (mug, book, ball") in out
    assert "val AP50" in out and "finished" in out
    ck = load_checkpoint(tmp_path / "t" / "checkpoint.pt")
    assert ck.class_names == ["mug", "book", "ball"] and ck.config.input_size == 64
    assert ck.config.optimizer == "adam"  # the recipe's settings, the command line's on top


def test_train_recipe_teach_with_val_data_trains_on_every_photo(fewshot, tmp_path):
    p = run("train", "--recipe", "teach", "--data", fewshot / "train", "--val-data",
            fewshot / "val", "--out", tmp_path / "t", "--epochs", 1, "--input-size", 64,
            "--batch-size", 4, "--quiet")
    assert "held out" not in p.stdout and "training TinySSD on 8 images" in p.stdout
    assert "val AP50" in p.stdout


def test_init_from_a_checkpoint_with_other_classes(trained, fewshot, tmp_path):
    root, _ = trained
    p = run("train", "--data", fewshot / "train", "--init", root / "run" / "checkpoint.pt",
            "--out", tmp_path / "i", "--epochs", 1, "--quiet")
    assert "init: kept " in p.stdout and "re-made 10 class layers for 3 classes" in p.stdout
    assert load_checkpoint(tmp_path / "i" / "checkpoint.pt").class_names == [
        "mug", "book", "ball"]


def test_recipe_teach_refuses_init(fewshot, tmp_path):
    p = run("train", "--recipe", "teach", "--data", fewshot / "train", "--init", "x.pt",
            "--out", tmp_path / "x", check=False)
    assert p.returncode == 2 and "--recipe" in p.stderr and "Traceback" not in p.stderr
