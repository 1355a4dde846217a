"""Setting recipes (ssd_core.recipes): each builds a valid TrainConfig, "book" is the chapter's
defaults exactly, "classroom" trains a step from random weights, and the CLI's --recipe uses
them."""

from __future__ import annotations

import json

import pytest

from ssd_core import SyntheticDetection, TrainConfig, cli
from ssd_core.engine import Trainer
from ssd_core.errors import ConfigError
from ssd_core.recipes import DEFAULT_RECIPE, RECIPES, get_recipe, recipe_settings


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_builds_a_valid_config(name):
    recipe = get_recipe(name)
    config = recipe.config()
    assert isinstance(config, TrainConfig)
    assert config.flat() == recipe_settings(name)
    assert recipe.label and recipe.why and recipe.train_images >= 1 and recipe.val_images >= 1
    # issue 21: one plain sentence for the page (no jargon), the details in ``why``
    assert recipe.summary.count(". ") == 0 and recipe.summary.endswith(".")
    assert not any(w in recipe.summary for w in ("bf16", "AVX", "min_lr", "lr ", "anchor"))


def test_book_is_the_chapter_and_classroom_the_default():
    assert recipe_settings("book") == TrainConfig().flat()
    assert DEFAULT_RECIPE == "classroom"
    classroom = get_recipe("classroom").config()
    assert classroom.anchor_sizes is not None and classroom.loss.normalize == "positives"
    assert classroom.replace(lr=0.01).lr == 0.01  # overrides go on top
    with pytest.raises(ConfigError, match="classroom"):
        get_recipe("nope")


def test_classroom_recipe_trains_a_step_from_random_weights():
    config = get_recipe("classroom").config(epochs=1, batch_size=4, log_every=1)
    data = SyntheticDetection(4, seed=0, image_size=config.input_size)
    val = SyntheticDetection(2, seed=10_000, image_size=config.input_size)
    trainer = Trainer(config, data, val)
    records = list(trainer.fit())
    assert trainer.step == 1 and trainer.state == "finished"
    epoch = records[-1]
    assert epoch["kind"] == "epoch" and 0 <= epoch["val_ap50"] <= 1
    assert trainer.config.anchor_sizes == config.anchor_sizes


def test_cli_recipe_flag(tmp_path):
    out = tmp_path / "run"
    rc = cli.main(["train", "--recipe", "classroom", "--synthetic", "4", "--val-synthetic", "2",
                   "--epochs", "1", "--batch-size", "4", "--input-size", "64", "--quiet",
                   "--out", str(out)])
    assert rc == 0
    saved = TrainConfig.from_json((out / "config.json").read_text())
    want = get_recipe("classroom").config(epochs=1, batch_size=4, input_size=64)
    for key in ("optimizer", "lr", "schedule", "warmup_steps", "anchor_sizes", "box_loss",
                "normalize", "hard_negative_mining"):
        assert saved.flat()[key] == want.flat()[key], key
    assert saved.epochs == 1 and saved.input_size == 64  # the command line wins
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "val_ap50" in records[-1]


def test_cli_recipe_refuses_a_base_of_another_kind(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(TrainConfig().to_json())
    rc = cli.main(["train", "--recipe", "book", "--config", str(config), "--synthetic", "4",
                   "--out", str(tmp_path / "x")])
    assert rc == 2 and "--recipe" in capsys.readouterr().err


def test_cli_help_names_the_recipes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--recipe" in text and "Classroom demo" in text and "classroom" in text
