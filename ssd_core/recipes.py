"""Setting recipes: named sets of training settings (flat ``TrainConfig`` names) plus the data
choices that go with them (number of training and validation images, augmentation).

A recipe is not the synthetic data *preset* (``ssd_core.data.PRESETS``, what the images hold);
it is how to train on them. ``"book"`` is the chapter exactly (every TrainConfig default, 512
images); ``"classroom"`` trains from random weights fast enough to watch in a lesson (see
``RECIPES["classroom"].why`` and ``bench/time_to_ap.py`` for the measured times).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ssd_core.config import FIELDS, TrainConfig
from ssd_core.errors import ConfigError

# The anchor sizes the shipped model uses: the book's rule (sizes spread evenly over the
# scales, second size sqrt(s_k * s_k+1)) over the data's object sizes, 10% to 95% of the side.
SPREAD_ANCHOR_SIZES = [[0.1, 0.17], [0.29, 0.373], [0.48, 0.567], [0.67, 0.759], [0.86, 0.95]]


@dataclass(frozen=True)
class Recipe:
    """``settings``: flat TrainConfig overrides of the book's defaults; ``train_images`` /
    ``val_images``: synthetic images to train / validate on; ``augment``: box-aware
    augmentation; ``label`` for menus, ``summary`` (one plain sentence) and ``why`` (the
    details)."""

    label: str
    settings: dict = field(default_factory=dict)
    train_images: int = 512
    val_images: int = 64
    augment: bool = False
    why: str = ""
    summary: str = ""  # one plain sentence for a page; ``why`` holds the details

    def config(self, **overrides) -> TrainConfig:
        """The recipe's TrainConfig, with ``overrides`` (flat names) on top; validated."""
        return TrainConfig.from_dict({**TrainConfig().flat(), **self.settings, **overrides})


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

DEFAULT_RECIPE = "classroom"


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a ConfigError lists the valid names."""
    if name not in RECIPES:
        raise ConfigError(f"Unknown recipe {name!r}; choose from {sorted(RECIPES)}.",
                          field="recipe")
    return RECIPES[name]


def recipe_settings(name: str) -> dict:
    """Every flat setting of recipe ``name`` (the book's defaults with its overrides)."""
    return get_recipe(name).config().flat()


def _check() -> None:
    for name, r in RECIPES.items():
        unknown = set(r.settings) - set(FIELDS)
        assert not unknown, f"recipe {name} has unknown settings {unknown}"


_check()
