"""What every dataset reader shares: the format constants, one image's Record, the checks of a
box, a number or a class id (each raising an AnnotationError that names the file and row), and
the file lookups (images, class lists)."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ssd_core.errors import AnnotationError

FORMATS = ("coco", "voc", "yolo", "csv")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
CLASS_FILES = ("classes.txt", "labels.txt", "obj.names", "classes.names")
CSV_HEADER = ["img_name", "label", "xmin", "ymin", "xmax", "ymax"]
FAR_OUTSIDE = 0.1  # boxes past the border by more than this fraction of the side are errors
MAX_CLASSES = 1000  # without a class list, ids up to this; a larger id is a typo, not a class


class AnnotationWarning(UserWarning):
    """Annotations were fixed on load (e.g. boxes clipped to the image); the message counts them."""


@dataclass
class Record:
    """One image: its path under the root, pixel boxes (M,4) corners and labels (M,)."""

    file: str
    boxes: torch.Tensor
    labels: torch.Tensor
    size: tuple[int, int]


class Fixes:
    """Counts safe fixes (clipping) while reading, to report them in one warning."""

    def __init__(self):
        self.count, self.first = 0, None

    def warn(self, fmt: str) -> None:
        if self.count:
            warnings.warn(AnnotationWarning(
                f"{self.count} box(es) in this {fmt} dataset extended past the image border and "
                f"were clipped to it (first: {self.first})."), stacklevel=3)


def check_box(x1: float, y1: float, x2: float, y2: float, w: int, h: int, where: str,
               fixes: Fixes) -> list[float]:
    """Validate one pixel box against a (w,h) image; clip small overshoots; raise otherwise."""
    vals = (x1, y1, x2, y2)
    if not all(math.isfinite(v) for v in vals):
        raise AnnotationError(f"{where}: box {list(vals)} contains a value that is not a finite "
                              "number.")
    if x2 <= x1 or y2 <= y1:
        axis = "x" if x2 <= x1 else "y"
        lo, hi = (x1, x2) if axis == "x" else (y1, y2)
        raise AnnotationError(f"{where}: {axis}2 ({hi:g}) <= {axis}1 ({lo:g}); a box needs "
                              "x1 < x2 and y1 < y2 (empty or flipped box). Fix or delete it.")
    if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
        raise AnnotationError(f"{where}: box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] lies entirely "
                              f"outside the {w}x{h} image.")
    tx, ty = FAR_OUTSIDE * w, FAR_OUTSIDE * h
    if x1 < -tx or y1 < -ty or x2 > w + tx or y2 > h + ty:
        raise AnnotationError(f"{where}: box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] extends far outside "
                              f"the {w}x{h} image; are the coordinates in the right units?")
    if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
        fixes.count += 1
        fixes.first = fixes.first or where
        x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
    f1, g1, f2, g2 = torch.tensor([x1, y1, x2, y2], dtype=torch.float32).tolist()
    if f2 <= f1 or g2 <= g1:  # boxes are stored as float32: a sliver would become empty
        raise AnnotationError(f"{where}: box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] is too thin "
                              "(under float32 precision); fix or delete it.")
    return [float(x1), float(y1), float(x2), float(y2)]


def number(text, where: str, field: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError, OverflowError):
        raise AnnotationError(f"{where}: {field} = {text!r} is not a number.") from None
    if not math.isfinite(v):
        raise AnnotationError(f"{where}: {field} = {text!r} is not a finite number.")
    return v


def class_id(text, where: str, names: list[str] | None) -> int:
    try:
        v = float(text)
    except (TypeError, ValueError, OverflowError):
        v = float("nan")
    if not (math.isfinite(v) and v == int(v) and v >= 0):
        raise AnnotationError(f"{where}: class id {text!r} is not a non-negative integer.")
    k = int(v)
    if names is None and k >= MAX_CLASSES:
        raise AnnotationError(f"{where}: class id {k} is too large (at most {MAX_CLASSES - 1} "
                              "without a class list); fix the id or add a classes.txt.")
    if names is not None and k >= len(names):
        raise AnnotationError(f"{where}: unknown class id {k}; the dataset defines {len(names)} "
                              f"classes (0..{len(names) - 1}: {names}).")
    return k


def image_size_of(path: Path, where: str) -> tuple[int, int]:
    """(W, H) of an image as load_image shows it (EXIF rotation applied); reads the header."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1) if im.format in ("JPEG", "MPO", "TIFF",
                                                                       "PNG", "WEBP") else 1
    except Exception as e:
        raise AnnotationError(f"{where}: image {path.name!r} is not a readable image "
                              f"({type(e).__name__}: {e}).") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def read_text(path: Path, where: str) -> str:
    """A text file's contents; AnnotationError if it is not readable UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{where}: not UTF-8 text ({e}).") from None
    except OSError as e:
        raise AnnotationError(f"{where}: cannot be read ({e.strerror or e}).") from None


def rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def find_image(root: Path, candidates: list[Path], where: str, name: str) -> Path:
    if name.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", name):
        raise AnnotationError(f"{where}: image file {name!r} points outside the dataset folder; "
                              "give paths relative to it.")
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(sorted({rel(c.parent, root) or "." for c in candidates}))
    raise AnnotationError(f"{where}: image file {name!r} not found (looked in {looked}). "
                          "Add the image or remove its annotations.")


def read_class_file(root: Path) -> list[str] | None:
    for name in CLASS_FILES:
        p = root / name
        if p.is_file():
            names = [ln.strip() for ln in read_text(p, name).splitlines()]
            names = [n for n in names if n]
            if not names:
                raise AnnotationError(f"{name}: the class list is empty.")
            if len(set(names)) != len(names):
                raise AnnotationError(f"{name}: class names repeat ({names}).")
            return names
    return None


def yaml_names(path: Path) -> list[str] | None:
    """Class names from a YOLO data.yaml (``names: [a, b]``, ``names: {0: a}`` or a dash list)."""
    text = read_text(path, path.name)
    m = re.search(r"^names[ \t]*:[ \t]*(.*)$", text, re.M)
    if not m:
        return None
    rest = m.group(1).strip()
    if rest.startswith("["):
        return [s.strip().strip("'\"") for s in rest.strip("[]").split(",") if s.strip()]
    items = []
    for line in text[m.end():].splitlines():
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            break
        item = line.strip()
        item = item[1:] if item.startswith("-") else item.split(":", 1)[-1]
        items.append(item.strip().strip("'\""))
    return items or None


def json_id(value, where: str, field: str):
    """A COCO id must be a JSON number or string (a list or object cannot be looked up)."""
    if isinstance(value, (list, dict)):
        raise AnnotationError(f"{where}: {field} {value!r} must be a number or a string.")
    return value


def boxes_tensor(boxes) -> torch.Tensor:
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
