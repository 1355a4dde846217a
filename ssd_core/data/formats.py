"""Read real detection datasets: COCO JSON, Pascal VOC XML, YOLO txt and the book's banana CSV.

``load_dataset(folder_or_zip)`` finds the format, checks every annotation and returns an
``AnnotatedDetection`` with the same interface as the synthetic set. Problems raise one
``AnnotationError`` naming the file and the row; boxes that stick out of the image by a little
are clipped, with one ``AnnotationWarning`` giving the count. Nothing is dropped silently.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ssd_core.errors import AnnotationError, InvalidImageError
from ssd_core.images import load_image

from .archive import dataset_root, temp_extract
from .dataset import DetectionDataset
from .transforms import resolve_augment

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


class _Fixes:
    """Counts safe fixes (clipping) while reading, to report them in one warning."""

    def __init__(self):
        self.count, self.first = 0, None

    def warn(self, fmt: str) -> None:
        if self.count:
            warnings.warn(AnnotationWarning(
                f"{self.count} box(es) in this {fmt} dataset extended past the image border and "
                f"were clipped to it (first: {self.first})."), stacklevel=3)


def _check_box(x1: float, y1: float, x2: float, y2: float, w: int, h: int, where: str,
               fixes: _Fixes) -> list[float]:
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


def _number(text, where: str, field: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError, OverflowError):
        raise AnnotationError(f"{where}: {field} = {text!r} is not a number.") from None
    if not math.isfinite(v):
        raise AnnotationError(f"{where}: {field} = {text!r} is not a finite number.")
    return v


def _class_id(text, where: str, names: list[str] | None) -> int:
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


def _image_size(path: Path, where: str) -> tuple[int, int]:
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


def _read_text(path: Path, where: str) -> str:
    """A text file's contents; AnnotationError if it is not readable UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{where}: not UTF-8 text ({e}).") from None
    except OSError as e:
        raise AnnotationError(f"{where}: cannot be read ({e.strerror or e}).") from None


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _find_image(root: Path, candidates: list[Path], where: str, name: str) -> Path:
    if name.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", name):
        raise AnnotationError(f"{where}: image file {name!r} points outside the dataset folder; "
                              "give paths relative to it.")
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(sorted({_rel(c.parent, root) or "." for c in candidates}))
    raise AnnotationError(f"{where}: image file {name!r} not found (looked in {looked}). "
                          "Add the image or remove its annotations.")


def _read_class_file(root: Path) -> list[str] | None:
    for name in CLASS_FILES:
        p = root / name
        if p.is_file():
            names = [ln.strip() for ln in _read_text(p, name).splitlines()]
            names = [n for n in names if n]
            if not names:
                raise AnnotationError(f"{name}: the class list is empty.")
            if len(set(names)) != len(names):
                raise AnnotationError(f"{name}: class names repeat ({names}).")
            return names
    return None


def _yaml_names(path: Path) -> list[str] | None:
    """Class names from a YOLO data.yaml (``names: [a, b]``, ``names: {0: a}`` or a dash list)."""
    text = _read_text(path, path.name)
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


# -- COCO ---------------------------------------------------------------------------------------

def _read_coco(root: Path, fixes: _Fixes):
    jsons = sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))
    if len(jsons) != 1:
        raise AnnotationError(f"COCO: expected one annotation .json in the dataset folder, found "
                              f"{[_rel(p, root) for p in jsons] or 'none'}.")
    ann_path = jsons[0]
    af = _rel(ann_path, root)
    text = _read_text(ann_path, af)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{af}: not valid JSON ({e.msg} at line {e.lineno}, column "
                              f"{e.colno}).") from None
    except (ValueError, RecursionError) as e:  # a number of > 4300 digits, extreme nesting
        raise AnnotationError(f"{af}: not a usable JSON file ({type(e).__name__}: "
                              f"{str(e)[:100]}).") from None
    if not isinstance(data, dict) or not all(
            isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise AnnotationError(f"{af}: a COCO file needs the lists 'images', 'annotations' and "
                              "'categories'.")
    cats = {}
    for k, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise AnnotationError(f"{af}, categories[{k}]: needs 'id' and 'name'.")
        cats[_json_id(c["id"], f"{af}, categories[{k}]", "id")] = str(c["name"])
    if not cats:
        raise AnnotationError(f"{af}: 'categories' is empty; a dataset needs at least one class.")
    if len(set(cats.values())) != len(cats):
        raise AnnotationError(f"{af}: category names repeat ({sorted(cats.values())}); give "
                              "each category its own name.")
    cat_ids = sorted(cats, key=lambda v: (str(type(v)), v))
    label_of = {cid: k for k, cid in enumerate(cat_ids)}
    images, order = {}, []
    # Images may sit next to the json, in images/, or in a split folder such as val2017/.
    dirs = list(dict.fromkeys([ann_path.parent, root, root / "images",
                               ann_path.parent.parent / "images"]
                              + sorted(p for p in root.iterdir() if p.is_dir())))
    for k, im in enumerate(data["images"]):
        where = f"{af}, images[{k}]"
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise AnnotationError(f"{where}: needs 'id' and 'file_name'.")
        name = str(im["file_name"])
        path = _find_image(root, [d / name for d in dirs], where, name)
        size = _image_size(path, where)
        if "width" in im and "height" in im:
            declared = (int(_number(im["width"], where, "width")),
                        int(_number(im["height"], where, "height")))
            if declared != size:
                raise AnnotationError(f"{where}: declared size {declared[0]}x{declared[1]} but "
                                      f"image {name!r} is {size[0]}x{size[1]} (after EXIF "
                                      "rotation). Fix width/height or the image.")
        image_id = _json_id(im["id"], where, "id")
        if image_id in images:
            raise AnnotationError(f"{where}: image id {image_id!r} is used twice.")
        images[image_id] = (_rel(path, root), size, [], [])
        order.append(im["id"])
    for k, a in enumerate(data["annotations"]):
        where = f"{af}, annotations[{k}]" + (f" (id {a['id']})" if isinstance(a, dict)
                                              and "id" in a else "")
        if not isinstance(a, dict):
            raise AnnotationError(f"{where}: an annotation must be an object.")
        _json_id(a.get("image_id"), where, "image_id")
        _json_id(a.get("category_id"), where, "category_id")
        if a.get("image_id") not in images:
            raise AnnotationError(f"{where}: image_id {a.get('image_id')!r} is not in 'images'.")
        if a.get("category_id") not in label_of:
            raise AnnotationError(f"{where}: unknown category_id {a.get('category_id')!r}; "
                                  f"known ids: {cat_ids}.")
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationError(f"{where}: 'bbox' must be [x, y, width, height].")
        x, y, w, h = (_number(v, where, f"bbox[{j}]") for j, v in enumerate(bbox))
        file, size, boxes, labels = images[a["image_id"]]
        boxes.append(_check_box(x, y, x + w, y + h, *size, f"{where}, image {file}", fixes))
        labels.append(label_of[a["category_id"]])
    records = [Record(f, _tensor(b), torch.tensor(lab, dtype=torch.int64).reshape(-1), s)
               for f, s, b, lab in (images[i] for i in order)]
    return records, [cats[c] for c in cat_ids]


def _json_id(value, where: str, field: str):
    """A COCO id must be a JSON number or string (a list or object cannot be looked up)."""
    if isinstance(value, (list, dict)):
        raise AnnotationError(f"{where}: {field} {value!r} must be a number or a string.")
    return value


def _tensor(boxes) -> torch.Tensor:
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


# -- Pascal VOC ---------------------------------------------------------------------------------

class _NoDoctype(ET.TreeBuilder):
    """Builds the tree but refuses a DOCTYPE (entity declarations live only inside one)."""

    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def doctype(self, name, pubid, system):
        raise AnnotationError(self.message)


def _read_voc(root: Path, fixes: _Fixes):
    ann_dir = root / "Annotations" if (root / "Annotations").is_dir() else root
    xmls = sorted(ann_dir.glob("*.xml"))
    if not xmls:
        raise AnnotationError("VOC: no .xml annotation files found (expected Annotations/*.xml).")
    names = _read_class_file(root)
    fixed_names = names is not None
    names = list(names or [])
    parsed = []
    for path in xmls:
        af = _rel(path, root)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise AnnotationError(f"{af}: cannot be read ({e.strerror or e}).") from None
        refused = f"{af}: XML with DOCTYPE/ENTITY declarations is refused."
        if b"<!ENTITY" in raw or b"<!DOCTYPE" in raw:
            raise AnnotationError(refused)
        try:
            # The byte check misses other encodings (UTF-16, EBCDIC): the parser refuses too.
            tree = ET.fromstring(raw, parser=ET.XMLParser(target=_NoDoctype(refused)))
        except ET.ParseError as e:
            line, col = e.position
            raise AnnotationError(f"{af}: malformed XML (line {line}, column {col}: {e}).") \
                from None
        except (ValueError, LookupError) as e:  # encodings expat cannot read
            raise AnnotationError(f"{af}: unreadable XML ({e}); save it as UTF-8.") from None
        fname = (tree.findtext("filename") or "").strip()
        if fname:
            cands = [root / "JPEGImages" / fname, path.parent / fname, root / "images" / fname]
        else:
            fname = path.stem + ".*"
            cands = [d / (path.stem + ext) for d in (root / "JPEGImages", path.parent,
                                                     root / "images") for ext in IMAGE_EXTS]
        img_path = _find_image(root, cands, af, fname)
        size = _image_size(img_path, af)
        sz = tree.find("size")
        if sz is not None and sz.findtext("width") and sz.findtext("height"):
            declared = (int(_number(sz.findtext("width"), af, "size/width")),
                        int(_number(sz.findtext("height"), af, "size/height")))
            if declared != (0, 0) and declared != size:
                raise AnnotationError(f"{af}: declared size {declared[0]}x{declared[1]} but "
                                      f"image {img_path.name!r} is {size[0]}x{size[1]}.")
        objs = []
        for k, obj in enumerate(tree.findall("object"), start=1):
            where = f"{af}, object {k}"
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise AnnotationError(f"{where}: missing <name>.")
            if name not in names:
                if fixed_names:
                    raise AnnotationError(f"{where}: unknown class {name!r}; the class list has "
                                          f"{names}.")
                names.append(name)
            bb = obj.find("bndbox")
            if bb is None:
                raise AnnotationError(f"{where}: missing <bndbox>.")
            xmin, ymin, xmax, ymax = (_number(bb.findtext(t), where, t)
                                      for t in ("xmin", "ymin", "xmax", "ymax"))
            # VOC counts pixels from 1 and includes xmax: corners are (xmin - 1, xmax).
            objs.append((name, _check_box(xmin - 1, ymin - 1, xmax, ymax, *size, where, fixes)))
        parsed.append((_rel(img_path, root), size, objs))
    if not fixed_names:
        names = sorted(names)
    index = {n: k for k, n in enumerate(names)}
    records = [Record(f, _tensor([b for _, b in objs]),
                      torch.tensor([index[n] for n, _ in objs], dtype=torch.int64), s)
               for f, s, objs in parsed]
    if not names:
        raise AnnotationError("VOC: no objects and no classes.txt; cannot tell the classes.")
    return records, names


# -- YOLO ---------------------------------------------------------------------------------------

def _yolo_names(root: Path) -> list[str] | None:
    names = _read_class_file(root)
    if names is None:
        for y in sorted(root.glob("*.yaml")) + sorted(root.glob("*.yml")):
            names = _yaml_names(y)
            if names:
                if len(set(names)) != len(names):
                    raise AnnotationError(f"{y.name}: class names repeat ({names}).")
                break
    return names or None  # "names: []" lists no class


def _read_yolo(root: Path, fixes: _Fixes):
    names = _yolo_names(root)
    img_dir, lab_dir = root / "images", root / "labels"
    if not (img_dir.is_dir() and lab_dir.is_dir()):
        img_dir = lab_dir = root  # darknet style: image and .txt side by side
    images = {p.relative_to(img_dir).with_suffix("").as_posix(): p
              for p in sorted(img_dir.rglob("*")) if p.suffix.lower() in IMAGE_EXTS}
    skip = set(CLASS_FILES) | {"readme.txt", "license.txt"}
    labels = {p.relative_to(lab_dir).with_suffix("").as_posix(): p
              for p in sorted(lab_dir.rglob("*.txt")) if p.name.lower() not in skip}
    for key, p in labels.items():
        if key not in images:
            raise AnnotationError(f"{_rel(p, root)}: no image named {Path(key).name}.* found in "
                                  f"{_rel(img_dir, root) or '.'}/ (missing image file).")
    if not images:
        raise AnnotationError("YOLO: no images found (expected images/ and labels/ folders).")
    parsed, max_id = [], -1
    for key, img_path in images.items():
        size = _image_size(img_path, _rel(img_path, root))
        objs = []
        lp = labels.get(key)
        if lp is not None:
            af = _rel(lp, root)
            text = _read_text(lp, af)
            for n, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                where = f"{af}, line {n}"
                parts = line.split()
                if len(parts) != 5:
                    raise AnnotationError(f"{where}: expected 5 numbers 'class cx cy w h' "
                                          f"(normalized), got {len(parts)}: {line.strip()!r}.")
                k = _class_id(parts[0], where, names)
                cx, cy, bw, bh = (_number(v, where, f)
                                  for v, f in zip(parts[1:], ("cx", "cy", "w", "h")))
                w, h = size
                box = _check_box((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w,
                                 (cy + bh / 2) * h, w, h, where, fixes)
                objs.append((k, box))
                max_id = max(max_id, k)
        parsed.append((_rel(img_path, root), size, objs))
    if names is None:
        names = [f"class_{k}" for k in range(max_id + 1)]
        if not names:
            raise AnnotationError("YOLO: no objects and no classes.txt; cannot tell the classes.")
    records = [Record(f, _tensor([b for _, b in objs]),
                      torch.tensor([k for k, _ in objs], dtype=torch.int64), s)
               for f, s, objs in parsed]
    return records, names


# -- the book's banana CSV ----------------------------------------------------------------------

def _read_csv(root: Path, fixes: _Fixes):
    csvs = sorted(root.glob("*.csv"))
    if len(csvs) != 1:
        raise AnnotationError(f"CSV: expected one .csv file in the dataset folder, found "
                              f"{[p.name for p in csvs] or 'none'}.")
    path = csvs[0]
    af = path.name
    names = _read_class_file(root)
    text = _read_text(path, af)
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as e:
        raise AnnotationError(f"{af}: not a readable CSV file ({e}).") from None
    if not rows or [c.strip().lower() for c in rows[0]] != CSV_HEADER:
        got = rows[0] if rows else "an empty file"
        raise AnnotationError(f"{af}, row 1: header must be {','.join(CSV_HEADER)}; got {got}.")
    per_image: dict[str, tuple[tuple[int, int], list, list, str]] = {}
    img_dir = root / "images" if (root / "images").is_dir() else root
    max_id = -1
    for n, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{af}, row {n}"
        if len(row) != 6:
            raise AnnotationError(f"{where}: expected 6 columns ({','.join(CSV_HEADER)}), got "
                                  f"{len(row)}: {row}.")
        name = row[0].strip()
        if name not in per_image:
            path_i = _find_image(root, [img_dir / name, root / name], where, name)
            per_image[name] = (_image_size(path_i, where), [], [], _rel(path_i, root))
        size, boxes, labels, _ = per_image[name]
        k = _class_id(row[1].strip(), where, names)
        x1, y1, x2, y2 = (_number(v.strip(), where, f) for v, f in zip(row[2:], CSV_HEADER[2:]))
        boxes.append(_check_box(x1, y1, x2, y2, *size, where, fixes))
        labels.append(k)
        max_id = max(max_id, k)
    if not per_image:
        raise AnnotationError(f"{af}: no rows after the header.")
    if names is None:
        # The chapter's banana set has one class and no class list.
        names = ["banana"] if max_id == 0 else [f"class_{k}" for k in range(max_id + 1)]
    records = [Record(f, _tensor(b), torch.tensor(lab, dtype=torch.int64), s)
               for s, b, lab, f in per_image.values()]
    return records, names


_READERS = {"coco": _read_coco, "voc": _read_voc, "yolo": _read_yolo, "csv": _read_csv}


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
    if fmt not in _READERS:
        raise AnnotationError(f"Unknown dataset format {fmt!r}; choose from {list(FORMATS)}.")
    fixes = _Fixes()
    records, names = _READERS[fmt](root, fixes)
    fixes.warn(fmt.upper())
    ds.root, ds.records, ds.class_names, ds.fmt = root, records, names, fmt
    return ds
