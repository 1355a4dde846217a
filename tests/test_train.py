"""Training engine: config validation, learning, determinism, stop/resume, NaN guard, checkpoints.

Everything trains on tiny synthetic data on the CPU (a few seconds per test).
"""

from __future__ import annotations

import hashlib
import json
import random
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from ssd_core import (
    LossConfig,
    SyntheticDetection,
    TrainConfig,
    Trainer,
    build_model,
    load_checkpoint,
    save_checkpoint,
    write_json_atomic,
)
from ssd_core.checkpoint import CHECKPOINT_FORMAT
from ssd_core.data import Augment
from ssd_core.errors import CheckpointError, ConfigError, TrainingDiverged
from ssd_core.evaluate import evaluate_model
from ssd_core.recipes import SPREAD_ANCHOR_SIZES
from tests.helpers import tiny_config, tiny_set


def losses(records, kind="step"):
    return [r["loss"] for r in records if r["kind"] == kind]


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- config


def test_config_defaults_are_the_books():
    c = TrainConfig()
    assert (c.optimizer, c.lr, c.weight_decay, c.batch_size, c.epochs, c.input_size) == (
        "sgd", 0.2, 5e-4, 32, 20, 256)
    assert (c.loss.cls_loss, c.loss.box_loss, c.loss.normalize) == ("ce", "l1", "mean")
    flat = c.flat()
    assert (flat["cls_loss"], flat["box_loss"], flat["normalize"]) == ("ce", "l1", "mean")


@pytest.mark.parametrize("field,value,words", [
    ("lr", 0.0, "lr"), ("lr", -1.0, "lr"), ("lr", float("nan"), "lr"),
    ("batch_size", 0, "batch_size"), ("epochs", 0, "epochs"),
    ("input_size", 100, "multiple of 32"), ("input_size", 32, "at least 64"),
    ("optimizer", "rmsprop", "optimizer"), ("schedule", "linear", "schedule"),
    ("momentum", 1.0, "momentum"), ("log_every", 0, "log_every"),
    ("device", "tpu:x", "device"), ("cls_loss", "hinge", "cls_loss"),
    ("neg_ratio", 0, "neg_ratio"), ("base_channels", (), "base_channels"),
    ("anchor_sizes", [[0.2]] * 4, "anchor_sizes"), ("anchor_sizes", [[0.2], [], [1], [1], [1]],
                                                   "anchor_sizes"),
    ("anchor_ratios", [[1, -2]] * 5, "anchor_ratios"),
])
def test_config_rejects_bad_values(field, value, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig.from_dict({field: value})  # flat names: loss settings too


def test_config_json_round_trip_and_unknown_keys():
    c = TrainConfig(lr=0.05, schedule="cosine", warmup_steps=5, base_channels=(8, 16, 32),
                    class_names=["a", "b"], num_classes=2, loss=LossConfig(cls_loss="focal"))
    back = TrainConfig.from_json(c.to_json())
    assert back == c and back.base_channels == (8, 16, 32)
    with pytest.raises(ConfigError, match="Unknown training setting.*learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainConfig.from_json("{lr: 1")


# ---------------------------------------------------------------- learning


def test_training_drives_loss_down_and_ap_up(tmp_path):
    # Learning measured where it has a wide margin on any CPU (kernels differ from CPU to CPU, so
    # trajectories do): a small TinySSD fits 32 images, AP50 on those images climbs from about
    # 0 to 0.94-1.0 (seeds 0-2, AVX-512 and AVX2 kernels) in 30 epochs.
    train = SyntheticDetection(32, seed=0, image_size=64, preset="book")
    cfg = tiny_config(batch_size=8, epochs=30, val_every=15, log_every=4, val_pos_threshold=0.05,
                      hard_negative_mining=True, box_loss="smooth_l1", schedule="cosine",
                      warmup_steps=10, min_lr_ratio=0.05, anchor_sizes=SPREAD_ANCHOR_SIZES)
    untrained = evaluate_model(build_model(cfg, 1).eval(), train, ["banana"], input_size=64)
    trainer = Trainer(cfg, train, train, run_dir=tmp_path)
    records = list(trainer.fit())
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == list(range(1, 31))
    assert epochs[-1]["loss"] < 0.3 * epochs[0]["loss"]
    assert epochs[-1]["class_error"] < 0.2 * epochs[0]["class_error"]
    assert untrained.ap50 < 0.2
    assert epochs[-1]["val_ap50"] > 0.7
    assert set(epochs[-1]["val_per_class"]) == {"banana"}
    r = epochs[-1]
    for key in ("step", "cls_loss", "box_loss", "box_mae", "positives_per_image",
                "images_per_s", "lr", "elapsed", "eta_s", "val_map"):
        assert key in r
    assert r["step"] == 120 and r["images"] == 32 and r["eta_s"] == 0
    assert r["positives_per_image"] > 1
    # Run folder: config, one metrics line per record, status, checkpoints.
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [x["step"] for x in records]
    saved = json.loads((tmp_path / "config.json").read_text())
    assert TrainConfig.from_dict(saved).num_classes == 1
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "finished" and trainer.state == "finished"
    best = load_checkpoint(tmp_path / "best.pt")
    assert best.class_names == ["banana"] and best.train_state is None
    assert best.metrics["val_ap50"] == pytest.approx(max(e.get("val_ap50", 0) for e in epochs))
    assert not best.model.training
    assert not list(tmp_path.glob("*.tmp")), "atomic writes left a temp file behind"


def test_same_seed_same_losses_other_seed_differs(tiny_data):
    a = losses(Trainer(tiny_config(seed=7), tiny_data).fit())
    b = losses(Trainer(tiny_config(seed=7), tiny_data).fit())
    c = losses(Trainer(tiny_config(seed=8), tiny_data).fit())
    assert len(a) == 6 and a == b
    assert a != c


@pytest.mark.parametrize("device_data", ["off", "on"])  # per-item seeds / device batches
def test_same_seed_same_run_alone_or_beside_others(device_data):
    """Two same-seed runs at the same time, beside a thread that keeps reseeding and drawing
    from the process-wide generators (as page scripts do), give the losses of a run alone:
    weights, order and augmentation all come from the run's seed."""
    data = tiny_set(16)
    data.set_augment(Augment(hflip=0.5, iou_crop=0.5, zoom_out=0.5, photometric=0.5))
    cfg = tiny_config(seed=5, epochs=2, device_data=device_data)
    alone = losses(Trainer(cfg, data).fit())
    assert len(alone) == 8 and alone != losses(Trainer(cfg.replace(seed=6), data).fit())
    done, results, errors = threading.Event(), {}, []

    def noise():
        while not done.is_set():
            torch.manual_seed(0)
            random.seed(0)
            np.random.seed(0)
            torch.rand(1000), random.random(), np.random.rand(100)

    def run(name):
        try:
            results[name] = losses(Trainer(cfg, data).fit())
        except BaseException as e:  # surfaced below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=noise)] + [
        threading.Thread(target=run, args=(k,)) for k in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    done.set()
    threads[0].join()
    assert not errors
    assert results["a"] == alone and results["b"] == alone


def test_a_run_draws_nothing_from_the_process_wide_generators(tiny_data):
    data = tiny_set(8)
    data.set_augment(Augment())
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    list(Trainer(tiny_config(epochs=1, val_every=1), data, data).fit())
    assert torch.equal(torch.get_rng_state(), before[0])
    assert random.getstate() == before[1]
    assert (np.random.get_state()[1] == before[2]).all()


def test_data_loader_workers_start_once_and_train_the_same(tmp_path,
                                                          monkeypatch):
    # The PIL path (device_data off): one worker process loader serves every whole epoch; the
    # batches, so the losses, are those of the in-process loader, resumed mid-epoch too, and
    # so is each item's augmentation (seeded by its place in the run, not by the process).
    tiny_data = tiny_set(24)
    tiny_data.set_augment(Augment(hflip=0.5, iou_crop=0.5, zoom_out=0.5, photometric=0.5))
    cfg = tiny_config(epochs=3, device_data="off")
    plain = losses(Trainer(cfg.replace(num_workers=0), tiny_data).fit())
    made = []
    real_loader = torch.utils.data.DataLoader

    class Counting(real_loader):
        def __init__(self, *a, **kw):
            made.append(kw.get("persistent_workers", False))
            super().__init__(*a, **kw)

    monkeypatch.setattr(torch.utils.data, "DataLoader", Counting)
    trainer = Trainer(cfg.replace(num_workers=1), tiny_data, run_dir=tmp_path)
    first = []
    for r in trainer.fit():
        first.append(r)
        if r["kind"] == "step" and r["step"] == 8:  # mid-way through epoch 2 (6 steps each)
            trainer.stop()
    assert made == [True]  # epochs 1 and 2 from one loader
    assert trainer._batches.workers_loader is None  # its workers ended with fit()
    resumed = Trainer(cfg.replace(num_workers=1), tiny_data, run_dir=tmp_path,
                      resume=tmp_path / "checkpoint.pt")
    rest = list(resumed.fit())
    # The rest of epoch 2 from a one-off loader, epoch 3 from a kept one.
    assert made == [True, False, True]
    assert losses(first) + losses(rest) == plain


def test_schedules_warmup_and_cosine(tiny_data):
    cfg = tiny_config(epochs=2, schedule="cosine", warmup_steps=4)
    lrs = [r["lr"] for r in Trainer(cfg, tiny_data).fit() if r["kind"] == "step"]
    # lr after step s: warmup (s+1)/4 for s < 4, then cosine down to 0 at step 12.
    assert lrs[:3] == pytest.approx([2 / 4 * 3e-3, 3 / 4 * 3e-3, 3e-3])
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(x >= y for x, y in zip(lrs[2:], lrs[3:]))


# ---------------------------------------------------------------- stop / resume


@pytest.mark.parametrize("data_path", ["plain", "augmented", "augmented on device"])
def test_stop_from_another_thread_then_resume_matches_uninterrupted(data_path, tmp_path):
    tiny_data = tiny_set(24)
    if data_path != "plain":  # every draw is recomputed from the seed on resume
        tiny_data.set_augment(Augment(hflip=0.5, iou_crop=0.5, zoom_out=0.5, photometric=0.5))
    cfg = tiny_config(epochs=2,  # 6 steps per epoch, 12 in all
                      device_data="on" if data_path == "augmented on device" else "auto")
    full = list(Trainer(cfg, tiny_data).fit())

    trainer = Trainer(cfg, tiny_data, run_dir=tmp_path)
    first = []
    for r in trainer.fit():
        first.append(r)
        if r["kind"] == "step" and r["step"] == 3:
            t = threading.Thread(target=trainer.stop)
            t.start()
            t.join()
    # The step running when stop() arrived finishes, then a checkpoint is saved.
    assert [r["step"] for r in first] == [1, 2, 3, 4]
    assert trainer.state == "stopped"
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "stopped"
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt.train_state["step"] == 4 and ckpt.train_state["batch_in_epoch"] == 4

    resumed = Trainer(cfg, tiny_data, run_dir=tmp_path, resume=tmp_path / "checkpoint.pt")
    rest = list(resumed.fit())
    assert [r["step"] for r in rest if r["kind"] == "step"] == list(range(5, 13))
    assert losses(first) + losses(rest) == losses(full)  # bit-identical on CPU
    # The epoch record of the interrupted epoch includes the steps before the stop.
    assert losses(rest, "epoch") == losses(full, "epoch")
    assert resumed.state == "finished"


def test_resume_needs_a_resumable_checkpoint(tiny_data, tmp_path):
    model = build_model(tiny_config(num_classes=1))
    save_checkpoint(tmp_path / "w.pt", model, tiny_config(num_classes=1), ["banana"])
    trainer = Trainer(tiny_config(), tiny_data, resume=tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="no optimizer state"):
        next(trainer.fit())


# ---------------------------------------------------------------- NaN guard


def test_nan_guard_raises_and_keeps_last_good_checkpoint(tiny_data, tmp_path):
    cfg = tiny_config()
    list(Trainer(cfg, tiny_data, run_dir=tmp_path).fit())
    good = sha(tmp_path / "checkpoint.pt")

    wild = cfg.replace(optimizer="sgd", lr=1e8, epochs=3)  # NaN within epoch 2
    trainer = Trainer(wild, tiny_data, run_dir=tmp_path, resume=tmp_path / "checkpoint.pt")
    with pytest.raises(TrainingDiverged, match="learning rate 1e\\+08 is probably too high"):
        list(trainer.fit())
    assert sha(tmp_path / "checkpoint.pt") == good
    assert load_checkpoint(tmp_path / "checkpoint.pt").train_state["step"] == 6
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and "diverged" in status["message"]


def test_nan_in_the_data_is_caught(tiny_data):
    class Poisoned(torch.utils.data.Dataset):
        class_names = tiny_data.class_names

        def __len__(self):
            return len(tiny_data)

        def __getitem__(self, i):
            img, target = tiny_data[i]
            return (img * float("nan") if i == 5 else img), target

    with pytest.raises(TrainingDiverged, match="NaN/inf"):
        list(Trainer(tiny_config(), Poisoned()).fit())


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path):
    cfg = tiny_config(num_classes=2, class_names=["cat", "dog"])
    model = build_model(cfg)
    path = save_checkpoint(tmp_path / "m.pt", model, cfg, ["cat", "dog"], {"val_ap50": 0.5})
    ck = load_checkpoint(path)
    assert ck.config == cfg and ck.class_names == ["cat", "dog"] and ck.metrics == {"val_ap50": 0.5}
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v)
    x = torch.rand(2, 3, 64, 64)
    model.eval()
    assert torch.equal(ck.model(x)[1], model(x)[1])


def test_anchor_settings_reach_the_model_and_survive_a_checkpoint(tmp_path):
    sizes = [[0.1, 0.17], [0.29, 0.373], [0.48, 0.567], [0.67, 0.759], [0.86, 0.95]]
    cfg = tiny_config(num_classes=1, anchor_sizes=sizes, anchor_ratios=[[1, 3]] * 5)
    model = build_model(cfg)
    assert model.sizes == sizes and model.ratios == [[1, 3]] * 5
    assert model.num_anchors == [3] * 5  # len(sizes) + len(ratios) - 1
    anchors = model(torch.rand(1, 3, 64, 64))[0][0]
    first = anchors[0]  # scale 0, pixel (0, 0), size 0.1, ratio 1: a 0.1 x 0.1 box
    assert torch.allclose(first[2:] - first[:2], torch.tensor([0.1, 0.1]), atol=1e-6)
    ck = load_checkpoint(save_checkpoint(tmp_path / "a.pt", model, cfg, ["banana"]))
    assert ck.config.anchor_sizes == sizes and ck.model.sizes == sizes
    assert torch.equal(ck.model(torch.rand(1, 3, 64, 64))[0], model(torch.rand(1, 3, 64, 64))[0])


def test_init_starts_a_new_run_from_weights(tiny_data, tmp_path):
    cfg = tiny_config()
    first = Trainer(cfg, tiny_data, run_dir=tmp_path / "a")
    list(first.fit())
    weights = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    save_checkpoint(tmp_path / "w.pt", weights.model, weights.config, weights.class_names)
    second = Trainer(cfg.replace(lr=1e-12), tiny_data, init=tmp_path / "w.pt")
    second._setup()  # weights in, nothing trained yet
    for k, v in weights.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[k].cpu(), v)
    assert second.step == 0 and second.progress.start_epoch == 0
    with pytest.raises(ConfigError, match="not both"):
        Trainer(cfg, tiny_data, resume=tmp_path / "w.pt", init=tmp_path / "w.pt")
    other = Trainer(cfg.replace(channels=8), tiny_data, init=tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="different network shape"):
        other._setup()
    # Other classes (issue 22): the class layers are re-made, everything else is kept.
    three_classes = SyntheticDetection(8, seed=1, image_size=64)
    third = Trainer(cfg, three_classes, init=tmp_path / "w.pt")
    third._setup()
    assert "re-made 10 class layers for 3 classes" in third.init_report
    w = "blks.0.0.0.weight"  # the first convolution of the backbone
    assert torch.equal(third.model.state_dict()[w].cpu(), weights.model.state_dict()[w])


def test_missing_and_corrupt_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint" * 50)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(junk)
    cfg = tiny_config(num_classes=1)
    good = save_checkpoint(tmp_path / "good.pt", build_model(cfg), cfg, ["x"])
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(cut)
    plain = tmp_path / "plain.pt"
    torch.save(build_model(cfg).state_dict(), plain)  # a bare state dict: no config
    with pytest.raises(CheckpointError, match="not an SSD Explorer checkpoint"):
        load_checkpoint(plain)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    cfg = tiny_config(num_classes=1)
    path = save_checkpoint(tmp_path / "m.pt", build_model(cfg), cfg, ["x"])
    payload = torch.load(path, weights_only=True)
    payload["config"] = cfg.replace(channels=32).to_json()  # describes a wider network
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path)


class _Evil:
    """Unpickling this creates a file: the proof that a loader ran foreign code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned.txt"
    cfg = tiny_config(num_classes=1)
    payload = {"format": CHECKPOINT_FORMAT, "version": 1, "config": cfg.to_json(),
               "class_names": ["x"], "metrics": "{}", "model": build_model(cfg).state_dict(),
               "extra": _Evil(marker)}
    path = tmp_path / "evil.pt"
    torch.save(payload, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path)
    assert not marker.exists()
    # The payload really is live: a plain unsafe load would have created the file.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_atomic_writes_get_the_mode_of_any_new_file(tmp_path):
    """Not the temp file's 0600: a runs folder shared by replicas run as other users stays
    readable."""
    plain = tmp_path / "plain.txt"
    plain.write_text("a file made the ordinary way")
    write_json_atomic(tmp_path / "status.json", {"state": "finished"})
    mode = stat.S_IMODE((tmp_path / "status.json").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode)


def test_min_steps_gives_a_small_set_more_epochs(tmp_path):
    """8 images in batches of 4 are 2 steps an epoch: epochs=2 with min_steps=7 trains
    ceil(7 / 2) = 4 epochs (8 steps), and the run's saved config says 4; a set already past
    min_steps keeps its epochs."""
    cfg = tiny_config(batch_size=4, epochs=2, min_steps=7)
    assert [cfg.epochs_for(k) for k in (1, 2, 3, 4)] == [7, 4, 3, 2]
    t = Trainer(cfg, tiny_set(8), run_dir=tmp_path / "run")
    records = list(t.fit())
    assert t.steps_per_epoch == 2 and t.config.epochs == 4 and t.step == 8
    assert [r["epoch"] for r in records if r["kind"] == "epoch"][-1] == 4
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt").config.epochs == 4
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["epochs"] == 4 and saved["min_steps"] == 7
    t = Trainer(tiny_config(batch_size=4, epochs=2, min_steps=3), tiny_set(8))
    list(t.fit())
    assert t.config.epochs == 2 and t.step == 4
