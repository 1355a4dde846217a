"""Open a real detection dataset: which format a folder holds and the checked dataset it gives.

``load_dataset(folder_or_zip)`` finds the format, checks every annotation and returns an
``AnnotatedDetection`` with the same interface as the synthetic set. Problems raise one
``AnnotationError`` naming the file and the row; boxes that stick out of the image by a little
are clipped, with one ``AnnotationWarning`` giving the count. Nothing is dropped silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ssd_core.errors import AnnotationError, InvalidImageError
from ssd_core.images import load_image

# CSV_HEADER and AnnotationWarning belong to this module's interface too.
from .annotation import (  # noqa: F401
    CLASS_FILES,
    CSV_HEADER,
    FORMATS,
    AnnotationWarning,
    Fixes,
    Record,
)
from .archive import dataset_root, temp_extract
from .dataset import DetectionDataset
from .readers import READERS
from .transforms import resolve_augment


def detect_format(root: Path) -> str:
    """Guess the annotation format of a dataset folder from the files in it."""
    root = Path(root)
    found = []
    if list(root.glob("*.json")) or list((root / "annotations").glob("*.json")):
        found.append("coco")
    if (root / "Annotations").is_dir() or list(root.glob("*.xml")):
        found.append("voc")
    if list(root.glob("*.csv")):
        found.append("csv")
    txts = [p for p in root.glob("*.txt") if p.name.lower() not in CLASS_FILES]
    if (root / "labels").is_dir() or txts:
        found.append("yolo")
    if len(found) == 1:
        return found[0]
    if not found:
        raise AnnotationError(
            f"No annotations found in {root.name or 'the dataset'}: expected a COCO .json, VOC "
            "Annotations/*.xml, YOLO labels/*.txt or a CSV (img_name,label,xmin,ymin,xmax,ymax).")
    raise AnnotationError(f"The dataset folder looks like several formats ({', '.join(found)}); "
                          "pass fmt= to choose one.")


class AnnotatedDetection(DetectionDataset):
    """A dataset read from disk; ``sample(i)`` -> (PIL RGB image, boxes (M,4) px, labels (M,))."""

    def __init__(self, root: Path, records: list[Record], class_names: list[str], fmt: str,
                 image_size: int = 256, augment=None):
        self.root, self.records, self.class_names, self.fmt = root, records, class_names, fmt
        self.image_size = int(image_size)
        self.augment = resolve_augment(augment)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return (f"AnnotatedDetection(fmt={self.fmt!r}, images={len(self)}, "
                f"classes={self.class_names})")

    def sample(self, i: int):
        """Index -> (PIL RGB image, boxes (M,4) float32 pixel corners, labels (M,) int64)."""
        rec = self.records[self._index(int(i))]
        try:
            img = load_image(self.root / rec.file)
        except InvalidImageError as e:
            raise AnnotationError(f"{rec.file}: {e}", path=self.root / rec.file,
                                  reason=f"{rec.file}: {e.reason}") from None
        boxes = rec.boxes.clone()
        if img.size != rec.size:  # cannot happen unless the file changed after loading
            sx, sy = img.width / rec.size[0], img.height / rec.size[1]
            boxes *= torch.tensor([sx, sy, sx, sy])
        return img, boxes, rec.labels.clone()


def load_dataset(path_or_zip, fmt: str | None = None, image_size: int = 256,
                 augment=None, name: str | None = None) -> AnnotatedDetection:
    """A folder, a ``.zip`` (path, bytes or file object) -> AnnotatedDetection.

    fmt: "coco" | "voc" | "yolo" | "csv" or None to detect it. name: what messages call a zip
    (default its file name; e.g. the name a user uploaded it under). Raises AnnotationError.
    """
    ds = AnnotatedDetection(Path("."), [], [], "", image_size, augment)
    if isinstance(path_or_zip, (str, os.PathLike)) and Path(path_or_zip).is_dir():
        root = dataset_root(Path(path_or_zip))
    elif isinstance(path_or_zip, (str, os.PathLike)) and not Path(path_or_zip).exists():
        raise AnnotationError(f"Dataset not found: {str(path_or_zip)!r}. Give a folder or a .zip.")
    else:  # a zip: extracted to a temp folder that lives as long as the dataset
        root = temp_extract(path_or_zip, owner=ds, name=name)
    if fmt is None:
        fmt = detect_format(root)
    fmt = fmt.lower()
    if fmt not in READERS:
        raise AnnotationError(f"Unknown dataset format {fmt!r}; choose from {list(FORMATS)}.")
    fixes = Fixes()
    records, names = READERS[fmt](root, fixes)
    fixes.warn(fmt.upper())
    ds.root, ds.records, ds.class_names, ds.fmt = root, records, names, fmt
    return ds
