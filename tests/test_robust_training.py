"""Training on hostile inputs: absurd learning rates, batch size 1, empty datasets, one image,
images without objects. Each run trains or stops with a clear message (TrainingDiverged /
ConfigError / a failed job), and no NaN or inf ever reaches the metric records the app plots,
neither the ones ``Trainer.fit`` yields nor the ones read back from ``metrics.jsonl``.

Tiny models at 64x64 on the CPU: a few seconds per test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from ssd_core import DataSpec, JobManager, TrainConfig, Trainer, load_checkpoint
from ssd_core.data.dataset import DetectionDataset
from ssd_core.errors import ConfigError, TrainingDiverged
from ssd_core.jobs import read_metrics
from tests.helpers import tiny_config, tiny_set

# The values the app plots; each must be a finite number, or None / absent.
PLOTTED = ("loss", "cls_loss", "box_loss", "class_error", "box_mae", "val_ap50", "val_map")


class NoObjects(DetectionDataset):
    """``n`` plain images without a single box (a dataset nobody has labelled yet)."""

    class_names = ["thing"]

    def __init__(self, n: int, image_size: int = 64):
        self.n, self.image_size = n, image_size

    def __len__(self) -> int:
        return self.n

    def sample(self, i: int):
        img = Image.new("RGB", (64, 48), (30 + 20 * i % 200, 90, 160))
        return img, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)


def assert_finite_records(records, allow_empty: bool = False) -> None:
    """Every number in every record is finite; the plotted ones are numbers or None."""
    assert records or allow_empty, "expected at least one metrics record"
    for rec in records:
        for key in PLOTTED:
            v = rec.get(key)
            assert v is None or (isinstance(v, (int, float)) and math.isfinite(v)), (key, v, rec)
        for key in ("loss", "cls_loss", "box_loss", "class_error", "box_mae"):
            assert key in rec, (key, rec)
        for key, v in rec.items():
            if isinstance(v, float):
                assert math.isfinite(v), (key, v, rec)
        for name, ap in (rec.get("val_per_class") or {}).items():
            assert ap is None or math.isfinite(ap), (name, ap)


def fit(config: TrainConfig, train, val, run_dir: Path, resume=None):
    """Run Trainer.fit to its end -> (error or None, records yielded, records on disk, status)."""
    records, error = [], None
    try:
        for rec in Trainer(config, train, val, run_dir=run_dir, resume=resume).fit():
            records.append(rec)
    except TrainingDiverged as e:
        error = e
    disk = read_metrics(run_dir / "metrics.jsonl")
    status = json.loads((run_dir / "status.json").read_text())
    return error, records, disk, status


def assert_diverged_clearly(error, status) -> None:
    msg = str(error)
    assert "diverged" in msg.lower() and "learning rate" in msg and "try" in msg, msg
    assert status["state"] == "failed" and status["message"] == msg


# ---------------------------------------------------------------- learning rate far too high


# Far too high, with outcomes that do not hang on luck: SGD moves the weights by lr times the
# gradient, so at lr 100 the network's outputs overflow within two steps and at 1e30 the first
# loss is already inf; Adam moves each weight by about lr at most per step, so 4 steps at lr 100
# leave large but finite weights (BatchNorm keeps the activations in range): a huge, finite loss.
DIVERGING = [("sgd", 100.0), ("sgd", 1e30), ("adam", 1e30)]


@pytest.mark.parametrize("optimizer, lr", DIVERGING)
def test_huge_learning_rate_stops_with_a_clear_message(optimizer, lr, tmp_path):
    """From scratch: stopped within the first epoch, before any checkpoint, nothing NaN kept."""
    cfg = tiny_config(optimizer=optimizer, lr=lr, epochs=2)
    error, records, disk, status = fit(cfg, tiny_set(8), tiny_set(4, seed=4), tmp_path)
    assert isinstance(error, TrainingDiverged)
    assert_diverged_clearly(error, status)
    msg = str(error)
    assert "(epoch 1)" in msg, msg
    hint = f"learning rate {lr:g} is probably too high for {optimizer.upper()} - try {lr / 10:g}"
    assert hint in msg, msg
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "best.pt").exists()
    assert_finite_records(records, allow_empty=True)
    assert_finite_records(disk, allow_empty=True)
    assert disk == records  # what the app reads back is what the trainer yielded


@pytest.mark.parametrize("optimizer, lr", DIVERGING)
def test_diverging_after_a_good_epoch_keeps_its_checkpoint(optimizer, lr, tmp_path):
    """Resumed from a good epoch at a huge learning rate: the run fails naming the last good
    checkpoint, which is left byte for byte as it was and still loads as a finite model."""
    train, val = tiny_set(8), tiny_set(4, seed=4)
    error, _, _, status = fit(tiny_config(), train, val, tmp_path)  # 1 epoch = 2 steps
    assert error is None and status["state"] == "finished", status
    checkpoint = tmp_path / "checkpoint.pt"
    good = checkpoint.read_bytes()

    wild = tiny_config(optimizer=optimizer, lr=lr, epochs=3)
    error, records, disk, status = fit(wild, train, val, tmp_path, resume=checkpoint)
    assert isinstance(error, TrainingDiverged)
    assert_diverged_clearly(error, status)
    assert f"the last good checkpoint is {checkpoint}." in str(error), str(error)
    assert checkpoint.read_bytes() == good
    ck = load_checkpoint(checkpoint)
    assert ck.train_state["step"] == 2
    assert all(bool(torch.isfinite(p).all()) for p in ck.model.parameters())
    assert_finite_records(records, allow_empty=True)
    assert_finite_records(disk)  # the good epoch's records, and no NaN after them


def test_adam_at_learning_rate_100_still_trains(tmp_path):
    cfg = tiny_config(lr=100.0, epochs=2)
    error, records, disk, status = fit(cfg, tiny_set(8), tiny_set(4, seed=4), tmp_path)
    assert error is None and status["state"] == "finished", (error, status)
    assert records[-1]["kind"] == "epoch" and records[-1]["step"] == 4
    assert max(r["loss"] for r in records) > 1e3  # far off, yet finite
    assert_finite_records(records)
    assert_finite_records(disk)
    assert disk == records  # what the app reads back is what the trainer yielded
    model = load_checkpoint(tmp_path / "checkpoint.pt").model
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_weights_turning_nan_in_the_last_step_are_reported_not_validated(tmp_path, monkeypatch):
    """The per-step loss check cannot see what the last optimizer step of an epoch did: the
    epoch end must check the weights before validating (else val AP of a NaN model is logged,
    or validation fails with an unrelated error)."""
    original = Trainer._train_step

    def poisoned(self, X, Y):
        out = original(self, X, Y)
        if self.step == self.steps_per_epoch:  # the update of the last step explodes
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return out

    monkeypatch.setattr(Trainer, "_train_step", poisoned)
    train = tiny_set(4)
    error, records, disk, status = fit(tiny_config(), train, train, tmp_path)
    assert_diverged_clearly(error, status)
    assert "weights" in str(error)
    assert_finite_records(records)
    assert_finite_records(disk)
    assert all(r["kind"] == "step" for r in disk), "no epoch record for a NaN model"
    assert not (tmp_path / "checkpoint.pt").exists()


# ---------------------------------------------------------------- tiny and empty data


def test_batch_size_one(tmp_path):
    train = tiny_set(3)
    cfg = tiny_config(batch_size=1)
    error, records, disk, status = fit(cfg, train, train, tmp_path)
    assert error is None and status["state"] == "finished", status
    assert [r["step"] for r in records if r["kind"] == "step"] == [1, 2, 3]
    assert_finite_records(records)
    assert_finite_records(disk)
    assert "val_ap50" in records[-1]


def test_one_image(tmp_path):
    one = tiny_set(1, seed=5)
    error, records, disk, status = fit(tiny_config(epochs=2), one, one, tmp_path)
    assert error is None and status["state"] == "finished", status
    assert records[-1]["step"] == 2 and records[-1]["images"] == 1
    assert_finite_records(records)
    assert_finite_records(disk)


@pytest.mark.parametrize("data", [NoObjects(0), [], None])
def test_empty_training_set_is_a_config_error(data, tmp_path):
    with pytest.raises(ConfigError, match="empty.*at least one image"):
        Trainer(tiny_config(), data, None, run_dir=tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_images_without_objects(tmp_path):
    """Nothing to find: the loss is pure background, AP is undefined - left out, never NaN."""
    error, records, disk, status = fit(tiny_config(epochs=2), NoObjects(5),
                                       NoObjects(2), tmp_path)
    assert error is None and status["state"] == "finished", status
    assert_finite_records(records)
    assert_finite_records(disk)
    assert all(r["positives_per_image"] == 0 for r in records)
    epoch = [r for r in disk if r["kind"] == "epoch"][-1]
    assert epoch.get("val_ap50") is None and epoch.get("val_map") is None
    assert epoch["val_per_class"] == {"thing": None}


@pytest.mark.parametrize("val", [NoObjects(3), NoObjects(0)])
def test_validation_set_without_objects_or_images(val, tmp_path):
    train = tiny_set(4)
    error, records, disk, status = fit(tiny_config(), train, val, tmp_path)
    assert error is None and status["state"] == "finished", status
    assert_finite_records(records)
    assert_finite_records(disk)
    assert records[-1].get("val_ap50") is None
    assert not (tmp_path / "best.pt").exists()  # no AP, so no "best" model either


def test_hard_negative_mining_and_focal_loss_without_objects(tmp_path):
    cfg = tiny_config(hard_negative_mining=True, cls_loss="focal", box_loss="smooth_l1",
                      normalize="mean")
    error, records, disk, status = fit(cfg, NoObjects(4), None, tmp_path)
    assert error is None and status["state"] == "finished", status
    assert_finite_records(records)
    assert_finite_records(disk)


# ---------------------------------------------------------------- the same through JobManager


def write_coco(folder: Path, n_images: int, with_boxes: bool) -> Path:
    """A COCO folder of ``n_images`` 64x64 PNGs (boxes only when ``with_boxes``)."""
    folder.mkdir(parents=True)
    images, anns = [], []
    for i in range(n_images):
        Image.new("RGB", (64, 64), (40 * i % 255, 120, 60)).save(folder / f"im{i}.png")
        images.append({"id": i + 1, "file_name": f"im{i}.png", "width": 64, "height": 64})
        if with_boxes:
            anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1,
                         "bbox": [8, 8, 30, 24]})
    (folder / "instances.json").write_text(json.dumps({
        "images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}))
    return folder


def write_header_only_csv(folder: Path) -> Path:
    """The book's banana CSV format with images but not a single row."""
    folder.mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(folder / "im0.png")
    (folder / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n")
    return folder


def job_cases(tmp: Path):
    small = tiny_config(epochs=2)
    return {
        "sgd lr 100": (small.replace(optimizer="sgd", lr=100.0),
                       DataSpec(n=8, val_n=4, preset="book")),
        "adam lr 100": (small.replace(lr=100.0), DataSpec(n=8, val_n=4, preset="book")),
        "adam lr 1e30": (small.replace(lr=1e30), DataSpec(n=8, val_n=4, preset="book")),
        "batch size 1": (tiny_config(batch_size=1), DataSpec(n=3, val_n=2, preset="book")),
        "one image": (small, DataSpec(n=1, val_n=0, preset="book")),
        "one image on disk": (small, DataSpec(
            kind="path", path=str(write_coco(tmp / "one", 1, True)))),
        "no objects on disk": (small, DataSpec(
            kind="path", path=str(write_coco(tmp / "blank", 4, False)), val_fraction=0.5)),
        "no objects, augmented": (small, DataSpec(
            kind="path", path=str(write_coco(tmp / "blank2", 3, False)), augment=True)),
        "no images on disk": (small, DataSpec(
            kind="path", path=str(write_coco(tmp / "empty", 0, False)))),
        "csv without rows": (small, DataSpec(
            kind="path", path=str(write_header_only_csv(tmp / "csv")))),
    }


def test_jobs_end_in_a_clear_state(tmp_path):
    """Every hostile case as a background job: it ends (no hang), as finished or failed with
    a message for the user, and its live and on-disk records hold no NaN."""
    jm = JobManager(tmp_path / "runs", max_running=1)
    runs = {name: jm.submit(cfg, data, name=name.replace(" ", "-"))
            for name, (cfg, data) in job_cases(tmp_path).items()}
    try:
        check_jobs(jm, runs, tmp_path / "runs")
    finally:  # never leave training threads behind (they abort the interpreter at exit)
        for run in runs.values():
            jm.stop(run)
        for run in runs.values():
            jm.wait(run, 120)


def check_jobs(jm: JobManager, runs: dict, runs_dir: Path) -> None:
    outcome = {}
    for name, run in runs.items():
        assert jm.wait(run, 300), f"{name}: the job is still running"
        snap = jm.snapshot(run)
        outcome[name] = snap.state
        assert snap.state in ("finished", "failed"), (name, snap.state, snap.message)
        assert snap.message, name
        if snap.state == "failed":
            assert "Error:" not in snap.message, (name, snap.message)  # ours, not a traceback
        disk = read_metrics(snap.path / "metrics.jsonl")
        if snap.records or disk:
            assert_finite_records(snap.records)
            assert_finite_records(disk)
        status = json.loads((snap.path / "status.json").read_text())
        assert status["state"] == snap.state
        # A fresh manager (the app after a restart) reads the same ending from disk.
        assert JobManager(runs_dir).snapshot(run).state == snap.state
    assert outcome["sgd lr 100"] == "failed" and outcome["adam lr 100"] == "finished"
    assert outcome["adam lr 1e30"] == "failed"
    assert "learning rate" in jm.snapshot(runs["adam lr 1e30"]).message
    assert outcome["no images on disk"] == "failed"
    assert "no images" in jm.snapshot(runs["no images on disk"]).message
    assert outcome["csv without rows"] == "failed"
    assert "no rows" in jm.snapshot(runs["csv without rows"]).message
    for name in ("batch size 1", "one image", "one image on disk", "no objects on disk",
                 "no objects, augmented"):
        assert outcome[name] == "finished", (name, jm.snapshot(runs[name]).message)
    blank = jm.snapshot(runs["no objects on disk"])
    assert blank.epochs and blank.epochs[-1].get("val_ap50") is None
    assert blank.preview is not None and blank.preview["ground_truth"] == []
