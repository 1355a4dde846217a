"""A held-out share of a detection dataset for validation, chosen by a seed: ``split_holdout``.

Both parts are :class:`Subset` views of the same dataset (no image is copied or read twice);
each view has its own augmentation, so augmenting the training part leaves the held-out images
as they are.
"""

from __future__ import annotations

import numpy as np

from ssd_core.errors import ConfigError
from ssd_core.seeding import derive_seed

from .dataset import DetectionDataset
from .transforms import resolve_augment

HOLDOUT = 7  # the seeding stream of the held-out choice (ssd_core.seeding's are 1..6)


class Subset(DetectionDataset):
    """Images ``indices`` of ``base`` (a DetectionDataset), with the same interface."""

    def __init__(self, base, indices, augment=None):
        self.base, self.indices = base, [int(i) for i in indices]
        self.class_names = list(base.class_names)
        self.image_size = base.image_size
        self.augment = resolve_augment(augment)

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"Subset({len(self)} of {len(self.base)} images of {self.base!r})"

    def sample(self, i: int):
        return self.base.sample(self.indices[self._index(int(i))])


def held_out_count(n: int, share: float) -> int:
    """How many of ``n`` (>= 2) images :func:`split_holdout` holds out: ``round(share * n)``,
    at least one, and at least one left to train on."""
    return min(n - 1, max(1, round(share * n)))


def split_holdout(dataset, share: float = 0.2, seed: int = 0) -> tuple[Subset, Subset]:
    """-> (train, val) views of ``dataset``: ``round(share * n)`` images held out (at least
    one per class where the images allow, at least one in all), the rest train; disjoint,
    together every image, the same for the same ``seed``. A set too small to leave at least
    one training image raises ConfigError."""
    n = len(dataset)
    if not 0 < share < 1:
        raise ConfigError(f"The held-out share must be between 0 and 1, got {share}.",
                          field="holdout")
    if n < 2:
        raise ConfigError(f"Holding out a share for validation needs at least 2 labelled "
                          f"images, the dataset has {n}; add images or give validation data.",
                          field="holdout")
    rng = np.random.default_rng(derive_seed(seed, HOLDOUT))
    order = [int(i) for i in rng.permutation(n)]
    want = held_out_count(n, share)
    labels = [_labels(dataset, i) for i in range(n)]
    val: list[int] = []
    # First one image of each class not yet held out (in the seeded order), then any.
    for c in range(len(dataset.class_names)):
        if len(val) < want and not any(c in labels[i] for i in val):
            i = next((i for i in order if c in labels[i] and i not in val), None)
            if i is not None:
                val.append(i)
    val += [i for i in order if i not in val][:want - len(val)]
    held = set(val)
    train = [i for i in range(n) if i not in held]
    return Subset(dataset, train), Subset(dataset, sorted(val))


def _labels(dataset, i: int) -> set[int]:
    """The classes in image ``i``: from a read dataset's records (no image opened), else its
    sample."""
    records = getattr(dataset, "records", None)
    if records is not None:
        return set(records[i].labels.tolist())
    return set(dataset.sample(i)[2].tolist())
