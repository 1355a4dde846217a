"""The dataset interface every source shares (synthetic, COCO, VOC, YOLO, CSV) and the collate.

A dataset implements ``sample(i) -> (PIL RGB image, boxes (M,4) float pixel corners,
labels (M,) long)`` and ``class_names``; this base turns that into the torch ``Dataset`` item
``(image (3,S,S) float in [0,1], target (M,5) float [class, x1,y1,x2,y2] normalized)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ssd_core.images import image_to_tensor

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

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Index -> (image (3,S,S) float [0,1], target (M,5) [class, x1,y1,x2,y2] in [0,1])."""
        img, boxes, labels = self.sample(self._index(int(i)))
        if self.augment is not None:
            # Seeded from torch so torch.manual_seed and DataLoader worker seeding apply.
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            img, boxes, labels = self.augment(img, boxes, labels, rng)
        return image_to_tensor(img, self.image_size), make_target(boxes, labels, img.size)


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
    images = torch.stack([item[0] for item in batch])
    m = max([1] + [item[1].shape[0] for item in batch])
    targets = torch.full((len(batch), m, 5), -1.0, dtype=torch.float32)
    for b, (_, t) in enumerate(batch):
        targets[b, : t.shape[0]] = t
    return images, targets


def make_loader(ds, batch_size: int = 32, shuffle: bool = True, num_workers: int = 0,
                seed: int | None = None, drop_last: bool = False, **kwargs) -> DataLoader:
    """A DataLoader over a detection dataset with ``detection_collate`` (seeded shuffle if seed)."""
    gen = None
    if seed is not None:
        gen = torch.Generator()
        gen.manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      collate_fn=detection_collate, generator=gen, drop_last=drop_last, **kwargs)
