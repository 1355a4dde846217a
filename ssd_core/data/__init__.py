"""Datasets: the synthetic generator, real annotation formats, transforms and loaders.

Every dataset has ``sample(i) -> (PIL image, boxes (M,4) pixel corners, labels (M,))``,
``class_names``, ``len()`` and ``ds[i] -> (image (3,S,S) in [0,1], target (M,5) normalized)``.
"""

from .archive import extract_zip
from .dataset import (
    DetectionDataset,
    ItemSeeds,
    detection_collate,
    make_loader,
    make_target,
    plain_item,
    takes_item_seeds,
)
from .export import export_dataset
from .formats import FORMATS, AnnotatedDetection, AnnotationWarning, detect_format, load_dataset
from .holdout import Subset, held_out_count, split_holdout
from .synthetic import CLASS_NAMES, PRESETS, SyntheticDetection
from .transforms import Augment, hflip, photometric, random_iou_crop, resolve_augment, zoom_out

__all__ = [
    "CLASS_NAMES", "FORMATS", "PRESETS", "AnnotatedDetection", "AnnotationWarning", "Augment",
    "DetectionDataset", "ItemSeeds", "Subset", "SyntheticDetection", "detect_format",
    "detection_collate",
    "export_dataset", "extract_zip", "held_out_count", "hflip", "load_dataset", "make_loader",
    "make_target",
    "photometric", "plain_item", "random_iou_crop", "resolve_augment", "split_holdout",
    "takes_item_seeds",
    "zoom_out",
]
