"""Training page: the "Settings" choice (setting recipes of ssd_core.recipes) fills the form;
Classroom demo is the default, Book gives the chapter's settings, a run gets the recipe's
settings that the form does not show, and the curves say why class error falls first."""

from __future__ import annotations

import json
import time

import pytest

from ssd_core import TrainConfig
from ssd_core.recipes import get_recipe

from .conftest import app_on_page


@pytest.fixture
def at(tmp_path, monkeypatch):
    return app_on_page("training", tmp_path / "runs", monkeypatch)


def form_values(app) -> dict:
    """The form's settings as flat TrainConfig names, and its data choices."""
    return {
        "optimizer": app.selectbox(key="training.optimizer").value,
        "schedule": app.selectbox(key="training.schedule").value,
        "lr": app.number_input(key="training.lr").value,
        "epochs": app.number_input(key="training.epochs").value,
        "batch_size": app.number_input(key="training.batch").value,
        "input_size": app.select_slider(key="training.input_size").value,
        "box_loss": app.radio(key="training.box_loss").value,
        "cls_loss": app.radio(key="training.cls_loss").value,
        "normalize": app.radio(key="training.normalize").value,
        "hard_negative_mining": app.checkbox(key="training.hnm").value,
        "train_images": app.number_input(key="training.n").value,
        "val_images": app.number_input(key="training.val_n").value,
        "augment": app.checkbox(key="training.augment").value,
    }


def expected(name: str) -> dict:
    recipe = get_recipe(name)
    flat = recipe.config().flat()
    want = {k: flat[k] for k in ("optimizer", "schedule", "lr", "epochs", "batch_size",
                                 "input_size", "box_loss", "cls_loss", "normalize",
                                 "hard_negative_mining")}
    return {**want, "train_images": recipe.train_images, "val_images": recipe.val_images,
            "augment": recipe.augment}


def test_classroom_demo_is_the_default_and_book_gives_the_chapters_settings(at):
    at.run()
    assert not at.exception
    choice = at.radio(key="training.recipe")
    assert choice.value == "classroom"
    assert choice.options == ["Classroom demo", "Book"] and choice.index == 0
    assert form_values(at) == expected("classroom")

    choice.set_value("book").run()
    assert not at.exception
    got = form_values(at)
    assert got == expected("book")
    book = TrainConfig()
    assert (got["optimizer"], got["lr"], got["box_loss"], got["normalize"],
            got["input_size"]) == (book.optimizer, book.lr, book.loss.box_loss,
                                   book.loss.normalize, book.input_size) == (
        "sgd", 0.2, "l1", "mean", 256)
    assert at.query_params["recipe"] == "book" and type(at.query_params["recipe"]) is str

    at.radio(key="training.recipe").set_value("classroom").run()
    assert form_values(at) == expected("classroom")


def test_a_shared_link_opens_the_book(at):
    at.query_params["recipe"] = "book"
    at.run()
    assert not at.exception
    assert at.radio(key="training.recipe").value == "book"
    assert form_values(at) == expected("book")


def test_a_run_gets_the_recipes_other_settings_and_the_class_error_note(at, tmp_path):
    at.run()
    at.number_input(key="training.n").set_value(8)
    at.number_input(key="training.val_n").set_value(4)
    at.number_input(key="training.epochs").set_value(1)
    at.number_input(key="training.batch").set_value(4)
    at.select_slider(key="training.input_size").set_value(64)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error
    run_dir = tmp_path / "runs" / at.session_state["training.run"]
    config = TrainConfig.from_json((run_dir / "config.json").read_text())
    recipe = get_recipe("classroom").config()
    assert config.anchor_sizes == recipe.anchor_sizes  # not in the form, from the recipe
    assert (config.warmup_steps, config.weight_decay) == (recipe.warmup_steps,
                                                          recipe.weight_decay)
    assert (config.epochs, config.input_size, config.optimizer) == (1, 64, "adam")
    assert config.precision == recipe.precision == "fast"
    deadline = time.time() + 120
    while True:
        at.run()
        assert not at.exception
        status = next(m.value for m in at.markdown if "· run `" in m.value)
        if "finished" in status:
            break
        assert time.time() < deadline, status
        time.sleep(0.5)
    note = next(c.value for c in at.caption if "Why the class error can fall" in c.value)
    assert "background" in note and "AP counts the objects" in note
    assert "anchors" in note and "class error of" in note
    data = json.loads((run_dir / "data.json").read_text())
    assert data["n"] == 8 and data["val_n"] == 4
