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

from ssd_core.data import SyntheticDetection
from ssd_core.data.dataset import DetectionDataset
from ssd_core.errors import ConfigError, TrainingDiverged
from ssd_core.jobs import DataSpec, JobManager, read_metrics
from ssd_core.train import TrainConfig, Trainer, load_checkpoint

TINY = dict(input_size=64, batch_size=4, epochs=1, log_every=1, base_channels=(8, 16, 16),
            channels=16, optimizer="adam", lr=3e-3, normalize="positives")
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


def assert_finite_records(records) -> None:
    """Every number in every record is finite; the plotted ones are numbers or None."""
    assert records, "expected at least one metrics record"
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


def fit(config: TrainConfig, train, val, run_dir: Path):
    """Run Trainer.fit to its end -> (error or None, records yielded, records on disk, status)."""
    records, error = [], None
    try:
        for rec in Trainer(config, train, val, run_dir=run_dir).fit():
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


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("lr", [100.0, 1e30])
def test_huge_learning_rate_trains_or_stops_with_a_clear_message(optimizer, lr, tmp_path):
    cfg = TrainConfig(**{**TINY, "optimizer": optimizer, "lr": lr, "epochs": 2})
    train = SyntheticDetection(8, seed=3, image_size=64, preset="book")
    val = SyntheticDetection(4, seed=4, image_size=64, preset="book")
    error, records, disk, status = fit(cfg, train, val, tmp_path)
    if error is not None:
        assert_diverged_clearly(error, status)
    else:
        assert status["state"] == "finished", status
        assert records[-1]["kind"] == "epoch" and records[-1]["step"] == 4
    if lr == 1e30:  # no network survives this: it must be reported, not plotted
        assert error is not None
    assert_finite_records(records)
    assert_finite_records(disk)
    if error is None:
        assert disk == records  # what the app reads back is what the trainer yielded
    # A diverged model never overwrites a checkpoint: whatever is on disk loads and is finite.
    if (tmp_path / "checkpoint.pt").exists():
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
    train = SyntheticDetection(4, seed=3, image_size=64, preset="book")
    error, records, disk, status = fit(TrainConfig(**TINY), train, train, tmp_path)
    assert_diverged_clearly(error, status)
    assert "weights" in str(error)
    assert_finite_records(records)
    assert_finite_records(disk)
    assert all(r["kind"] == "step" for r in disk), "no epoch record for a NaN model"
    assert not (tmp_path / "checkpoint.pt").exists()


# ---------------------------------------------------------------- tiny and empty data


def test_batch_size_one(tmp_path):
    train = SyntheticDetection(3, seed=3, image_size=64, preset="book")
    cfg = TrainConfig(**{**TINY, "batch_size": 1})
    error, records, disk, status = fit(cfg, train, train, tmp_path)
    assert error is None and status["state"] == "finished", status
    assert [r["step"] for r in records if r["kind"] == "step"] == [1, 2, 3]
    assert_finite_records(records)
    assert_finite_records(disk)
    assert "val_ap50" in records[-1]


def test_one_image(tmp_path):
    one = SyntheticDetection(1, seed=5, image_size=64, preset="book")
    error, records, disk, status = fit(TrainConfig(**{**TINY, "epochs": 2}), one, one, tmp_path)
    assert error is None and status["state"] == "finished", status
    assert records[-1]["step"] == 2 and records[-1]["images"] == 1
    assert_finite_records(records)
    assert_finite_records(disk)


@pytest.mark.parametrize("data", [NoObjects(0), [], None])
def test_empty_training_set_is_a_config_error(data, tmp_path):
    with pytest.raises(ConfigError, match="empty.*at least one image"):
        Trainer(TrainConfig(**TINY), data, None, run_dir=tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_images_without_objects(tmp_path):
    """Nothing to find: the loss is pure background, AP is undefined - left out, never NaN."""
    error, records, disk, status = fit(TrainConfig(**{**TINY, "epochs": 2}), NoObjects(5),
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
    train = SyntheticDetection(4, seed=3, image_size=64, preset="book")
    error, records, disk, status = fit(TrainConfig(**TINY), train, val, tmp_path)
    assert error is None and status["state"] == "finished", status
    assert_finite_records(records)
    assert_finite_records(disk)
    assert records[-1].get("val_ap50") is None
    assert not (tmp_path / "best.pt").exists()  # no AP, so no "best" model either


def test_hard_negative_mining_and_focal_loss_without_objects(tmp_path):
    cfg = TrainConfig(**{**TINY, "hard_negative_mining": True, "cls_loss": "focal",
                         "box_loss": "smooth_l1", "normalize": "mean"})
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
    small = dict(TINY, epochs=2)
    return {
        "sgd lr 100": (TrainConfig(**{**small, "optimizer": "sgd", "lr": 100.0}),
                       DataSpec(n=8, val_n=4, preset="book")),
        "adam lr 100": (TrainConfig(**{**small, "lr": 100.0}), DataSpec(n=8, val_n=4,
                                                                        preset="book")),
        "adam lr 1e30": (TrainConfig(**{**small, "lr": 1e30}), DataSpec(n=8, val_n=4,
                                                                        preset="book")),
        "batch size 1": (TrainConfig(**{**TINY, "batch_size": 1}),
                         DataSpec(n=3, val_n=2, preset="book")),
        "one image": (TrainConfig(**small), DataSpec(n=1, val_n=0, preset="book")),
        "one image on disk": (TrainConfig(**small), DataSpec(
            kind="path", path=str(write_coco(tmp / "one", 1, True)))),
        "no objects on disk": (TrainConfig(**small), DataSpec(
            kind="path", path=str(write_coco(tmp / "blank", 4, False)), val_fraction=0.5)),
        "no objects, augmented": (TrainConfig(**small), DataSpec(
            kind="path", path=str(write_coco(tmp / "blank2", 3, False)), augment=True)),
        "no images on disk": (TrainConfig(**small), DataSpec(
            kind="path", path=str(write_coco(tmp / "empty", 0, False)))),
        "csv without rows": (TrainConfig(**small), DataSpec(
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
