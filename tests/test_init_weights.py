"""--init from a checkpoint (ssd_core.engine.init_weights): with other classes every tensor whose
name and shape match is kept bit for bit, the class layers are re-made with the new shapes
(background and same-named rows carried), the report says so, a different network shape still
raises CheckpointError, and the same-class path loads everything as before."""

from __future__ import annotations

import pytest
import torch

from ssd_core.checkpoint import build_model, load_checkpoint, save_checkpoint
from ssd_core.engine import Trainer
from ssd_core.engine.init_weights import load_init_weights
from ssd_core.engine.setup import make_model
from ssd_core.errors import CheckpointError
from tests.helpers import tiny_config, tiny_set


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny checkpoint of classes banana, ring, star with weights unlike a fresh model's."""
    config = tiny_config(seed=5)
    model = build_model(config, 3)
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.add_(0.01 * (1 + torch.arange(v.numel()).reshape(v.shape) % 7))
    path = tmp_path_factory.mktemp("init") / "src.pt"
    save_checkpoint(path, model, config.replace(num_classes=3,
                                                class_names=["banana", "ring", "star"]),
                    ["banana", "ring", "star"])
    return load_checkpoint(path)


def test_other_classes_keep_every_matching_tensor_and_remake_class_layers(source):
    names = ["mug", "book", "ring", "ball"]
    config = tiny_config(seed=1)
    model = build_model(config, len(names))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_init_weights(model, source, names)
    theirs, mine = source.model.state_dict(), model.state_dict()
    cls = [k for k in mine if k.startswith("cls_predictors.")]
    kept = [k for k in mine if k not in cls]
    assert len(cls) == 10 and kept  # a weight and a bias for each of 5 scales
    for k in kept:  # backbone, BatchNorm statistics and box layers: bit-equal
        assert torch.equal(mine[k], theirs[k]), k
    assert any(k.startswith("bbox_predictors.") for k in kept)
    assert any(k.endswith("running_mean") for k in kept)
    for k in cls:
        a = model.cls_predictors[int(k.split(".")[1])].out_channels // 5
        assert mine[k].shape[0] == a * 5 and theirs[k].shape[0] == a * 4
        new = mine[k].view(a, 5, *mine[k].shape[1:])
        old = theirs[k].view(a, 4, *theirs[k].shape[1:])
        start = fresh[k].view(a, 5, *mine[k].shape[1:])
        assert torch.equal(new[:, 0], old[:, 0])  # background carried
        assert torch.equal(new[:, 3], old[:, 2])  # "ring": its rows carried
        for j in (1, 2, 4):  # mug, book, ball: the run's own fresh weights
            assert torch.equal(new[:, j], start[:, j])
    assert report.startswith(f"kept {len(kept)} tensors of src.pt")
    assert "re-made 10 class layers for 4 classes (mug, book, ring, ball" in report
    assert "carried the background row and the rows of ring" in report


def test_remade_class_layers_are_fresh_from_the_runs_seed(source):
    names = ["a", "b"]
    one, two = build_model(tiny_config(seed=2), 2), build_model(tiny_config(seed=2), 2)
    load_init_weights(one, source, names, carry_classes=False)
    load_init_weights(two, source, names, carry_classes=False)
    three = build_model(tiny_config(seed=3), 2)
    load_init_weights(three, source, names, carry_classes=False)
    w = "cls_predictors.0.weight"
    assert torch.equal(one.state_dict()[w], two.state_dict()[w])
    assert not torch.equal(one.state_dict()[w], three.state_dict()[w])


def test_focal_loss_keeps_its_prior_bias_on_new_classes(source):
    config = tiny_config(cls_loss="focal")
    model = make_model(config, ["a", "b"], "cpu", init=source)
    fresh = make_model(config, ["a", "b"], "cpu")
    bias, start = model.cls_predictors[0].bias.view(-1, 3), fresh.cls_predictors[0].bias.view(-1, 3)
    assert torch.equal(bias[:, 1:], start[:, 1:])  # the focal prior on the new classes
    assert torch.equal(bias[:, 0], source.model.cls_predictors[0].bias.view(-1, 4)[:, 0])


def test_same_classes_load_everything_as_before(source):
    model = build_model(tiny_config(seed=9), 3)
    report = load_init_weights(model, source, ["banana", "ring", "star"])
    for k, v in source.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    assert report.startswith("kept all") and "same classes" in report


@pytest.mark.parametrize("change", [dict(channels=24), dict(anchor_sizes=[[0.2]] * 5),
                                    dict(base_channels=(8, 16, 24))])
def test_another_network_shape_still_raises(source, change):
    for names in (["banana", "ring", "star"], ["mug"]):
        model = build_model(tiny_config(**change), len(names))
        with pytest.raises(CheckpointError, match="different network shape"):
            load_init_weights(model, source, names)


def test_trainer_exposes_the_init_report(source):
    trainer = Trainer(tiny_config(), tiny_set(4), init=source)
    assert trainer.init_report is None
    list(trainer.fit())
    assert trainer.init_report.startswith("kept ") and "for 1 classes (banana" in \
        trainer.init_report and "rows of banana" in trainer.init_report
