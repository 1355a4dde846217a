"""The teach path's library side: the few-shot photo set (ssd_core.data.fewshot), the seeded
held-out share (split_holdout), the ``teach`` recipe and a teach run through the job queue on a
COCO folder, from the shipped model's weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssd_core import JobManager, load_dataset
from ssd_core.data import Subset, held_out_count, split_holdout
from ssd_core.data.fewshot import FEWSHOT_CLASSES, FewShotObjects, write_fewshot
from ssd_core.errors import ConfigError
from ssd_core.recipes import ALL_RECIPES, RECIPES, get_recipe, recipe_job
from ssd_core.resources import shipped_checkpoint
from tests.helpers import tiny_set


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """Nine few-shot photos (96 px) written as a COCO folder, and three others to validate."""
    root = tmp_path_factory.mktemp("teach")
    write_fewshot(root / "train", 9, seed=0, photo_size=96)
    write_fewshot(root / "val", 3, seed=1, photo_size=96)
    return root


# ---- the few-shot photos


def test_fewshot_photos_are_deterministic_valid_and_hold_every_class():
    a, b = FewShotObjects(6, seed=4, photo_size=128), FewShotObjects(6, seed=4, photo_size=128)
    other = FewShotObjects(6, seed=5, photo_size=128)
    seen = set()
    for i in range(6):
        (ia, ba, la), (ib, bb, lb) = a.sample(i), b.sample(i)
        assert np.array_equal(np.asarray(ia), np.asarray(ib))
        assert torch.equal(ba, bb) and torch.equal(la, lb)
        assert ia.size == (128, 128) and len(ba) >= 1 and int(la[0]) == i % 3
        assert (ba[:, :2] >= 0).all() and (ba[:, 2:] <= 128).all()
        assert (ba[:, 2:] - ba[:, :2] >= 4).all()
        seen |= set(la.tolist())
        assert not np.array_equal(np.asarray(ia), np.asarray(other.sample(i)[0]))
    assert seen == {0, 1, 2} and a.class_names == FEWSHOT_CLASSES == ["mug", "book", "ball"]
    # photo-like: many colours, not a few flat fills
    assert len(np.unique(np.asarray(a.sample(0)[0]).reshape(-1, 3), axis=0)) > 2000


def test_fewshot_written_as_coco_reads_back(coco):
    ds = load_dataset(coco / "train")
    assert ds.fmt == "coco" and len(ds) == 9 and ds.class_names == FEWSHOT_CLASSES
    ref = FewShotObjects(9, seed=0, photo_size=96)
    for i in (0, 4):
        assert torch.allclose(ds.sample(i)[1], ref.sample(i)[1], atol=0.01)
        assert torch.equal(ds.sample(i)[2], ref.sample(i)[2])


# ---- the held-out share


def test_split_holdout_is_disjoint_complete_deterministic_and_holds_every_class():
    ds = FewShotObjects(20, seed=0, photo_size=64)
    train, val = split_holdout(ds, 0.2, seed=3)
    assert isinstance(train, Subset) and train.base is ds and val.base is ds  # views, no copies
    assert len(val) == 4 and len(train) == 16
    assert set(train.indices).isdisjoint(val.indices)
    assert sorted(train.indices + val.indices) == list(range(20))
    classes = set()
    for i in range(len(val)):
        classes |= set(val.sample(i)[2].tolist())
    assert classes == {0, 1, 2}
    again = split_holdout(ds, 0.2, seed=3)
    assert again[0].indices == train.indices and again[1].indices == val.indices
    others = [split_holdout(ds, 0.2, seed=s)[1].indices for s in range(4, 9)]
    assert any(o != val.indices for o in others)
    # held_out_count (the Teach page's count) is what the split holds out, small sets too
    for n in (2, 3, 6, 20):
        assert len(split_holdout(FewShotObjects(n, seed=0, photo_size=64), 0.2)[1]) == \
            held_out_count(n, 0.2) == {2: 1, 3: 1, 6: 1, 20: 4}[n]
    # the view's item is the base's image at its index
    img, boxes, labels = val.sample(1)
    ref = ds.sample(val.indices[1])
    assert np.array_equal(np.asarray(img), np.asarray(ref[0])) and torch.equal(boxes, ref[1])


def test_split_holdout_augments_only_the_training_view():
    ds = tiny_set(6)
    train, val = split_holdout(ds, 0.3, seed=0)
    train.set_augment("strong")
    assert train.augment is not None and val.augment is None and ds.augment is None
    x, t = train[(0, 123)]
    assert x.shape == (3, 64, 64) and t.shape[1] == 5


@pytest.mark.parametrize("n, share, words", [(1, 0.2, "at least 2 labelled images"),
                                             (0, 0.2, "at least 2"), (5, 0.0, "between 0"),
                                             (5, 1.0, "between 0")])
def test_split_holdout_too_small_or_bad_share_is_a_clear_message(n, share, words):
    with pytest.raises(ConfigError, match=words):
        split_holdout(tiny_set(n) if n else FewShotObjects(0), share, seed=0)


def test_split_holdout_keeps_a_training_image():
    train, val = split_holdout(tiny_set(2), 0.9, seed=0)
    assert len(train) == 1 and len(val) == 1


# ---- the recipe and the job queue


def test_teach_recipe_starts_from_the_shipped_model_with_strong_augmentation():
    teach = get_recipe("teach")
    assert "teach" in ALL_RECIPES and "teach" not in RECIPES  # the Training page lists RECIPES
    assert teach.init == "shipped" and teach.init_path() == str(shipped_checkpoint())
    assert teach.augment == "strong" and 0 < teach.holdout < 1 and teach.why
    # at least 30 steps: 24 photos (19 after the hold-out) in batches of 8 train 10 epochs of 3
    assert teach.config().min_steps == 30 and teach.config().epochs == 10
    config, data, init = recipe_job("teach", "some/folder")
    assert config.anchor_sizes is not None and init == str(shipped_checkpoint())
    assert data.kind == "path" and data.holdout == teach.holdout and data.augment == "strong"
    config, data, init = recipe_job("classroom")
    assert data.kind == "synthetic" and init is None


def test_teach_run_through_the_job_queue(coco, tmp_path):
    config, data, init = recipe_job("teach", coco / "train", epochs=1, batch_size=4,
                                    input_size=64, log_every=1, min_steps=0)
    jm = JobManager(tmp_path / "runs")
    run = jm.submit(config, data, name="teach", init=init)
    assert jm.wait(run, 240)
    snap = jm.snapshot(run)
    assert snap.state == "finished", snap.message
    assert snap.init_report.startswith("kept ") and "re-made 10 class layers for 3 classes" \
        in snap.init_report
    epoch = snap.epochs[-1]
    assert "val_ap50" in epoch and set(epoch["val_per_class"]) == set(FEWSHOT_CLASSES)
    assert snap.previews and snap.previews[0]["class_names"] == FEWSHOT_CLASSES
    # 9 photos, 2 held out (every class where possible) by the run's seed: 7 train
    assert epoch["step"] == 2 and epoch["images"] == 7


def test_teach_with_validation_data_trains_on_every_photo(coco):
    _, data, _ = recipe_job("teach", coco / "train", val_path=coco / "val")
    train, val = data.build(64)
    assert len(train) == 9 and len(val) == 3 and train.augment is not None


def test_bad_augment_in_a_data_spec_is_refused():
    _, data, _ = recipe_job("teach", "x")
    data.augment = "wild"
    with pytest.raises(ConfigError, match="augment"):
        data.validate()


def test_strong_augmentation_falls_back_to_the_host_path():
    """device_data="auto" takes the host (PIL) path for rotation and blur on any device; "on"
    refuses them with a ConfigError that names the setting."""
    from ssd_core.engine.setup import device_data
    from tests.helpers import tiny_config

    ds = tiny_set(4)
    ds.set_augment("strong")
    for device in ("cpu", "cuda"):  # nothing is rendered: the refusal comes first
        assert device_data(tiny_config(device_data="auto"), ds, torch.device(device)) is None
    with pytest.raises(ConfigError, match="device_data='off'"):
        device_data(tiny_config(device_data="on"), ds, torch.device("cpu"))
