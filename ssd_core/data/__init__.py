"""Datasets: the synthetic generator, real annotation formats, transforms and loaders.

Every dataset has ``sample(i) -> (PIL image, boxes (M,4) pixel corners, labels (M,))``,
``class_names``, ``len()`` and ``ds[i] -> (image (3,S,S) in [0,1], target (M,5) normalized)``.
"""

from .dataset import DetectionDataset, detection_collate, make_loader, make_target
from .synthetic import CLASS_NAMES, PRESETS, SyntheticDetection
from .transforms import Augment, hflip, photometric, random_iou_crop, resolve_augment, zoom_out

__all__ = [
    "CLASS_NAMES", "PRESETS", "Augment", "DetectionDataset", "SyntheticDetection",
    "detection_collate", "hflip", "make_loader", "make_target", "photometric",
    "random_iou_crop", "resolve_augment", "zoom_out",
]
