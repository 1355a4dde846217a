"""Setting recipes: named sets of training settings (flat ``TrainConfig`` names) plus the data
choices that go with them (number of training and validation images, augmentation, the weights
to start from, a held-out share).

A recipe is not the synthetic data *preset* (``ssd_core.data.PRESETS``, what the images hold);
it is how to train on them. ``"book"`` is the chapter exactly (every TrainConfig default, 512
images); ``"classroom"`` trains from random weights fast enough to watch in a lesson (see
``RECIPES["classroom"].why`` and ``bench/time_to_ap.py`` for the measured times). ``RECIPES``
are the recipes of synthetic-data runs from random weights (the Training and Experiments
pages list them); ``"teach"`` (in ``ALL_RECIPES``, ``get_recipe("teach")``) fine-tunes the
shipped model on a few labelled photos of the user's own objects (``bench/time_to_teach.py``).
``recipe_job`` turns any of them into what ``JobManager.submit`` takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ssd_core.config import FIELDS, TrainConfig
from ssd_core.errors import ConfigError
from ssd_core.resources import shipped_checkpoint
from ssd_core.runs import DataSpec

# The anchor sizes the shipped model uses: the book's rule (sizes spread evenly over the
# scales, second size sqrt(s_k * s_k+1)) over the data's object sizes, 10% to 95% of the side.
SPREAD_ANCHOR_SIZES = [[0.1, 0.17], [0.29, 0.373], [0.48, 0.567], [0.67, 0.759], [0.86, 0.95]]


@dataclass(frozen=True)
class Recipe:
    """``settings``: flat TrainConfig overrides of the book's defaults; ``train_images`` /
    ``val_images``: synthetic images to train / validate on; ``augment``: box-aware
    augmentation (False, True: the SSD paper's, "strong": also rotation and blur, see
    ssd_core.data.transforms.resolve_augment); ``init``: the weights to start from (None:
    random; "shipped": the shipped model; or a checkpoint path); ``holdout``: the share of a
    dataset held out for validation when no validation data is given; ``label`` for menus,
    ``summary`` (one plain sentence), ``why`` (the details) and ``details`` (the measurements
    behind them, where a recipe was tuned)."""

    label: str
    settings: dict = field(default_factory=dict)
    train_images: int = 512
    val_images: int = 64
    augment: bool | str = False
    why: str = ""
    summary: str = ""  # one plain sentence for a page; ``why`` holds the details
    init: str | None = None
    holdout: float = 0.0
    details: str = ""

    def config(self, **overrides) -> TrainConfig:
        """The recipe's TrainConfig, with ``overrides`` (flat names) on top; validated."""
        return TrainConfig.from_dict({**TrainConfig().flat(), **self.settings, **overrides})

    def init_path(self) -> str | None:
        """The checkpoint file a run of this recipe starts from (None: random weights)."""
        if self.init == "shipped":
            return str(shipped_checkpoint())
        return self.init


# The teach recipe's schedule, measured on the few-shot set (bench/time_to_teach.py; README,
# "Teach it your objects" under Speed).
TEACH_SETTINGS = dict(
    optimizer="adam", lr=2e-3, weight_decay=1e-4, schedule="cosine", warmup_steps=10,
    min_lr_ratio=0.05, epochs=10, min_steps=30, batch_size=8, input_size=128,
    box_loss="smooth_l1", normalize="positives", hard_negative_mining=True,
    anchor_sizes=SPREAD_ANCHOR_SIZES, precision="fast")
TEACH_WHY = (
    "Starts from the shipped model (its backbone, BatchNorm statistics, box layers and "
    "background logit kept, the class layers re-made for your classes) and fine-tunes all of "
    "it with Adam (lr 2e-3, 10 warmup steps, cosine decay over 10 epochs, and at least 30 "
    "steps however few your photos) on batches of 8 at "
    "128 px with strong augmentation (flips, crops, zoom-out, colour, small rotations, blur), "
    "holding out 20% of your photos to validate on when you give no validation set.")
TEACH_DETAILS = (
    "Measured with bench/time_to_teach.py on 24 photo-like images of a mug, a book and a ball "
    "(ssd_core.data.fewshot), validated on 36 other photos of them, on a shared 2-core CPU: "
    "validation AP50 passed 0.9 after 7-8 epochs (about 170-190 images, 16 s of training). "
    "Tried on the way, in epochs to AP50 0.9 (10-20 epoch schedules): lr 1e-3: 9; lr 3e-3 "
    "with 5 warmup steps: 14; batches of 16: 14; batches of 4: 7 but slower per image; "
    "160 px: 8, each epoch 1.6x the cost; 96 px: never (best 0.74); a 30-epoch cosine: 14 "
    "(the learning rate stays high for too long). Nothing is frozen: with the backbone's "
    "blocks frozen (only the predictors trained) an epoch cost about half as much, but AP50 "
    "was 0.57 after 10 epochs; the shipped backbone has seen only synthetic shapes and must "
    "adapt.")

RECIPES: dict[str, Recipe] = {
    "classroom": Recipe(
        label="Classroom demo",
        settings=dict(
            optimizer="adam", lr=3e-3, weight_decay=1e-4, schedule="cosine", warmup_steps=50,
            min_lr_ratio=0.05, epochs=10, batch_size=16, input_size=128, box_loss="smooth_l1",
            normalize="positives", hard_negative_mining=True,
            anchor_sizes=SPREAD_ANCHOR_SIZES, precision="fast"),
        train_images=4096, val_images=64, augment=False,
        summary="Settings that let a class watch TinySSD learn to find the shapes within a "
                "few minutes.",
        why="Adam (lr 3e-3, 50 warmup steps, cosine decay) on batches of 16, smooth-L1 box "
            "loss, both losses divided by the number of positive anchors and hard negative "
            "mining (3 negatives per positive), so the thousands of easy background anchors "
            "stop drowning the few object anchors; anchor sizes spread over the objects' "
            "sizes (10% to 95% of the side) as the book's rule spreads them; 128 px inputs "
            "(a quarter of the pixels of 256, objects still at least 13 px); 4096 distinct "
            "images seen 10 times (512 images seen 20 times stalled near AP50 0.66: too few "
            "to generalise from); bf16 where the hardware runs it natively (about 2x on a CPU "
            "with AVX512-BF16), fp32 elsewhere."),
    "book": Recipe(
        label="Book",
        settings={},
        train_images=512, val_images=64, augment=False,
        summary="The chapter's own settings: the class error falls quickly, but the boxes take "
                "a long time to come.",
        why="The chapter's settings exactly: SGD lr 0.2, weight decay 5e-4, L1 box loss, "
            "cross-entropy averaged over all anchors, the book's anchor sizes, 256 px, "
            "20 epochs."),
}

TEACH = Recipe(
    label="Teach it your objects",
    settings=dict(TEACH_SETTINGS),
    train_images=24, val_images=12, augment="strong", init="shipped", holdout=0.2,
    summary="Teaches the shipped model your own objects from a few labelled photos, in "
            "well under a minute on a laptop CPU.",
    why=TEACH_WHY, details=TEACH_DETAILS)

# Every recipe by name: the synthetic ones and "teach".
ALL_RECIPES: dict[str, Recipe] = {**RECIPES, "teach": TEACH}

DEFAULT_RECIPE = "classroom"


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (any of ALL_RECIPES); a ConfigError lists the valid names."""
    if name not in ALL_RECIPES:
        raise ConfigError(f"Unknown recipe {name!r}; choose from {sorted(ALL_RECIPES)}.",
                          field="recipe")
    return ALL_RECIPES[name]


def recipe_job(name: str, path=None, val_path=None, seed: int = 0, fmt: str | None = None,
               **overrides) -> tuple[TrainConfig, DataSpec, str | None]:
    """What ``JobManager.submit(config, data, init=init)`` needs to run recipe ``name`` ->
    ``(config, data, init)``: on a dataset folder or zip ``path`` (COCO as
    ``export_dataset(..., "coco")`` writes it, or any format load_dataset reads), validated on
    ``val_path`` or, without one, on the recipe's held-out share chosen by ``seed``; without
    ``path``, on the recipe's synthetic images. ``overrides``: flat TrainConfig settings."""
    recipe = get_recipe(name)
    config = recipe.config(**overrides)
    if path is None:
        data = DataSpec("synthetic", n=recipe.train_images, seed=seed,
                        val_n=recipe.val_images, augment=recipe.augment)
    else:
        data = DataSpec("path", path=str(path), fmt=fmt, seed=seed,
                        val_path=None if val_path is None else str(val_path),
                        holdout=recipe.holdout, augment=recipe.augment,
                        val_fraction=recipe.holdout or DataSpec.val_fraction)
    return config, data.validate(), recipe.init_path()


def recipe_settings(name: str) -> dict:
    """Every flat setting of recipe ``name`` (the book's defaults with its overrides)."""
    return get_recipe(name).config().flat()


def _check() -> None:
    for name, r in ALL_RECIPES.items():
        unknown = set(r.settings) - set(FIELDS)
        assert not unknown, f"recipe {name} has unknown settings {unknown}"


_check()
