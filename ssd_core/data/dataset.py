"""The dataset interface every source shares (synthetic, COCO, VOC, YOLO, CSV) and the collate.

A dataset implements ``sample(i) -> (PIL RGB image, boxes (M,4) float pixel corners,
labels (M,) long)`` and ``class_names``; this base turns that into the torch ``Dataset`` item
``(image (3,S,S) float in [0,1], target (M,5) float [class, x1,y1,x2,y2] normalized)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from ssd_core.images import image_to_tensor
from ssd_core.seeding import AUGMENT, LOADER, SHUFFLE, derive_seed, fresh_seed, torch_generator

from .transforms import Augment, resolve_augment


class DetectionDataset(Dataset):
    """Base class: subclasses set ``class_names``, ``image_size`` and implement ``sample(i)``."""

    class_names: list[str]
    image_size: int = 256
    augment: Augment | None = None

    def sample(self, i: int):
        """Index -> (PIL RGB image, boxes (M,4) float pixel corners, labels (M,) long)."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def set_augment(self, augment) -> None:
        """Turn box-aware augmentation on (True / "ssd" / an Augment) or off (None / False)."""
        self.augment = resolve_augment(augment)

    def _index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} images")
        return i % n

    def __getitem__(self, i) -> tuple[torch.Tensor, torch.Tensor]:
        """Index, or ``(index, seed)`` -> (image (3,S,S) float [0,1], target (M,5) [class,
        x1,y1,x2,y2] in [0,1]). With augmentation on, ``seed`` makes the draw reproducible
        (:class:`ItemSeeds` hands them out); a bare index augments from fresh entropy."""
        i, seed = i if isinstance(i, tuple) else (i, None)
        img, boxes, labels = self.sample(self._index(int(i)))
        if self.augment is not None:
            rng = np.random.default_rng(seed)  # None: OS entropy, never a process-wide state
            img, boxes, labels = self.augment(img, boxes, labels, rng)
        return image_to_tensor(img, self.image_size), make_target(boxes, labels, img.size)


def plain_item(data, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``data[i]`` without augmentation (the same image every time): for a DetectionDataset its
    sample at its image size, for any other dataset its own item."""
    if not isinstance(data, DetectionDataset):
        return data[i]
    img, boxes, labels = data.sample(data._index(int(i)))
    return image_to_tensor(img, data.image_size), make_target(boxes, labels, img.size)


def takes_item_seeds(data) -> bool:
    """Whether ``data[(index, seed)]`` works: a DetectionDataset using the base __getitem__."""
    return (isinstance(data, DetectionDataset)
            and type(data).__getitem__ is DetectionDataset.__getitem__)


class ItemSeeds(Sampler):
    """A sampler of ``(index, seed)`` pairs: ``base``'s indices, each with the seed
    ``derive_seed(seed, AUGMENT, epoch, *keys, position)``, so an item's augmentation depends on
    the run's seed and where it falls, not on any shared generator. ``epoch`` None reads the
    base sampler's ``epoch`` (DistributedSampler.set_epoch) or else counts the passes."""

    def __init__(self, base, seed: int, epoch: int | None = None, keys=()):
        self.base, self.seed, self.epoch, self.keys = base, int(seed), epoch, tuple(keys)
        self._passes = 0

    def __iter__(self):
        epoch = self.epoch if self.epoch is not None else getattr(self.base, "epoch", self._passes)
        self._passes += 1
        for pos, i in enumerate(self.base):
            yield int(i), derive_seed(self.seed, AUGMENT, epoch, *self.keys, pos)

    def __len__(self) -> int:
        return len(self.base)


def make_target(boxes: torch.Tensor, labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixel boxes (M,4) + labels (M,) + image (W,H) -> target (M,5) [class, normalized corners]."""
    w, h = size
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    norm = (boxes.float().reshape(-1, 4) / scale).clamp_(0.0, 1.0)
    return torch.cat([labels.float().reshape(-1, 1), norm], dim=1)


def detection_collate(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (image (3,S,S), target (M_i,5)) -> (images (B,3,S,S), targets (B,Mmax,5)).

    Shorter targets are padded with rows of -1; Mmax >= 1 even when no image has objects.
    """
    return torch.stack([item[0] for item in batch]), pad_targets([item[1] for item in batch])


def pad_targets(targets) -> torch.Tensor:
    """Targets ``(M_i, 5)`` -> one ``(B, Mmax, 5)`` float32 tensor, padded with rows of -1;
    Mmax >= 1 even when no image has objects."""
    m = max([1] + [t.shape[0] for t in targets])
    out = torch.full((len(targets), m, 5), -1.0, dtype=torch.float32)
    for b, t in enumerate(targets):
        out[b, : t.shape[0]] = t
    return out


def make_loader(ds, batch_size: int = 32, shuffle: bool = True, num_workers: int = 0,
                seed: int | None = None, drop_last: bool = False, **kwargs) -> DataLoader:
    """A DataLoader over a detection dataset with ``detection_collate``. Its draws (order,
    augmentation) come from its own generators: seeded by ``seed`` (the same seed, the same
    batches, epoch after epoch), or from fresh entropy when ``seed`` is None."""
    seed = fresh_seed() if seed is None else int(seed)
    gen = torch_generator(seed, SHUFFLE)
    order = RandomSampler(ds, generator=gen) if shuffle else SequentialSampler(ds)
    sampler = ItemSeeds(order, seed) if takes_item_seeds(ds) else order
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=detection_collate, generator=torch_generator(seed, LOADER),
                      drop_last=drop_last, **kwargs)
