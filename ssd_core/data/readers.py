"""The four dataset readers: COCO JSON, Pascal VOC XML, YOLO txt and the book's banana CSV.
Each ``read_<fmt>(root, fixes) -> (records, class names)`` checks every annotation."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from ssd_core.errors import AnnotationError

from .annotation import (
    CLASS_FILES,
    CSV_HEADER,
    IMAGE_EXTS,
    Fixes,
    Record,
    boxes_tensor,
    check_box,
    class_id,
    find_image,
    image_size_of,
    json_id,
    number,
    read_class_file,
    read_text,
    rel,
    yaml_names,
)


def _only_file(paths: list[Path], root: Path, expected: str) -> tuple[Path, str]:
    """The one annotation file of a format -> (path, its name relative to ``root``); else an
    AnnotationError that starts with ``expected`` and lists what the folder holds."""
    if len(paths) != 1:
        raise AnnotationError(f"{expected} in the dataset folder, found "
                              f"{[rel(p, root) for p in paths] or 'none'}.")
    return paths[0], rel(paths[0], root)


# -- COCO ---------------------------------------------------------------------------------------

def read_coco(root: Path, fixes: Fixes):
    jsons = sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))
    ann_path, af = _only_file(jsons, root, "COCO: expected one annotation .json")
    data = _coco_json(ann_path, af)
    cats = _coco_categories(data["categories"], af)
    cat_ids = sorted(cats, key=lambda v: (str(type(v)), v))
    label_of = {cid: k for k, cid in enumerate(cat_ids)}
    images, order = _coco_images(data["images"], root, ann_path, af)
    for k, a in enumerate(data["annotations"]):
        where = f"{af}, annotations[{k}]" + (f" (id {a['id']})" if isinstance(a, dict)
                                              and "id" in a else "")
        if not isinstance(a, dict):
            raise AnnotationError(f"{where}: an annotation must be an object.")
        json_id(a.get("image_id"), where, "image_id")
        json_id(a.get("category_id"), where, "category_id")
        if a.get("image_id") not in images:
            raise AnnotationError(f"{where}: image_id {a.get('image_id')!r} is not in 'images'.")
        if a.get("category_id") not in label_of:
            raise AnnotationError(f"{where}: unknown category_id {a.get('category_id')!r}; "
                                  f"known ids: {cat_ids}.")
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationError(f"{where}: 'bbox' must be [x, y, width, height].")
        x, y, w, h = (number(v, where, f"bbox[{j}]") for j, v in enumerate(bbox))
        file, size, boxes, labels = images[a["image_id"]]
        boxes.append(check_box(x, y, x + w, y + h, *size, f"{where}, image {file}", fixes))
        labels.append(label_of[a["category_id"]])
    records = [Record(f, boxes_tensor(b), torch.tensor(lab, dtype=torch.int64).reshape(-1), s)
               for f, s, b, lab in (images[i] for i in order)]
    return records, [cats[c] for c in cat_ids]


def _coco_json(ann_path: Path, af: str) -> dict:
    """The annotation file parsed, with its three lists checked."""
    text = read_text(ann_path, af)
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
    return data


def _coco_categories(categories: list, af: str) -> dict:
    """{category id: name}, ids and names unique."""
    cats = {}
    for k, c in enumerate(categories):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise AnnotationError(f"{af}, categories[{k}]: needs 'id' and 'name'.")
        cats[json_id(c["id"], f"{af}, categories[{k}]", "id")] = str(c["name"])
    if not cats:
        raise AnnotationError(f"{af}: 'categories' is empty; a dataset needs at least one class.")
    if len(set(cats.values())) != len(cats):
        raise AnnotationError(f"{af}: category names repeat ({sorted(cats.values())}); give "
                              "each category its own name.")
    return cats


def _coco_images(entries: list, root: Path, ann_path: Path, af: str):
    """-> ({image id: (file, size, boxes [], labels [])}, ids in file order)."""
    images, order = {}, []
    # Images may sit next to the json, in images/, or in a split folder such as val2017/.
    dirs = list(dict.fromkeys([ann_path.parent, root, root / "images",
                               ann_path.parent.parent / "images"]
                              + sorted(p for p in root.iterdir() if p.is_dir())))
    for k, im in enumerate(entries):
        where = f"{af}, images[{k}]"
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise AnnotationError(f"{where}: needs 'id' and 'file_name'.")
        name = str(im["file_name"])
        path = find_image(root, [d / name for d in dirs], where, name)
        size = image_size_of(path, where)
        if "width" in im and "height" in im:
            declared = (int(number(im["width"], where, "width")),
                        int(number(im["height"], where, "height")))
            if declared != size:
                raise AnnotationError(f"{where}: declared size {declared[0]}x{declared[1]} but "
                                      f"image {name!r} is {size[0]}x{size[1]} (after EXIF "
                                      "rotation). Fix width/height or the image.")
        image_id = json_id(im["id"], where, "id")
        if image_id in images:
            raise AnnotationError(f"{where}: image id {image_id!r} is used twice.")
        images[image_id] = (rel(path, root), size, [], [])
        order.append(im["id"])
    return images, order


# -- Pascal VOC ---------------------------------------------------------------------------------

class _NoDoctype(ET.TreeBuilder):
    """Builds the tree but refuses a DOCTYPE (entity declarations live only inside one)."""

    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def doctype(self, name, pubid, system):
        raise AnnotationError(self.message)


def read_voc(root: Path, fixes: Fixes):
    ann_dir = root / "Annotations" if (root / "Annotations").is_dir() else root
    xmls = sorted(ann_dir.glob("*.xml"))
    if not xmls:
        raise AnnotationError("VOC: no .xml annotation files found (expected Annotations/*.xml).")
    names = read_class_file(root)
    fixed_names = names is not None
    names = list(names or [])
    parsed = []
    for path in xmls:
        af = rel(path, root)
        tree = _voc_tree(path, af)
        img_path, size = _voc_image(tree, path, root, af)
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
            xmin, ymin, xmax, ymax = (number(bb.findtext(t), where, t)
                                      for t in ("xmin", "ymin", "xmax", "ymax"))
            # VOC counts pixels from 1 and includes xmax: corners are (xmin - 1, xmax).
            objs.append((name, check_box(xmin - 1, ymin - 1, xmax, ymax, *size, where, fixes)))
        parsed.append((rel(img_path, root), size, objs))
    if not fixed_names:
        names = sorted(names)
    index = {n: k for k, n in enumerate(names)}
    records = [Record(f, boxes_tensor([b for _, b in objs]),
                      torch.tensor([index[n] for n, _ in objs], dtype=torch.int64), s)
               for f, s, objs in parsed]
    if not names:
        raise AnnotationError("VOC: no objects and no classes.txt; cannot tell the classes.")
    return records, names


def _voc_tree(path: Path, af: str):
    """One annotation file parsed; DOCTYPE/ENTITY declarations are refused (XML bombs)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AnnotationError(f"{af}: cannot be read ({e.strerror or e}).") from None
    refused = f"{af}: XML with DOCTYPE/ENTITY declarations is refused."
    if b"<!ENTITY" in raw or b"<!DOCTYPE" in raw:
        raise AnnotationError(refused)
    try:
        # The byte check misses other encodings (UTF-16, EBCDIC): the parser refuses too.
        return ET.fromstring(raw, parser=ET.XMLParser(target=_NoDoctype(refused)))
    except ET.ParseError as e:
        line, col = e.position
        raise AnnotationError(f"{af}: malformed XML (line {line}, column {col}: {e}).") \
            from None
    except (ValueError, LookupError) as e:  # encodings expat cannot read
        raise AnnotationError(f"{af}: unreadable XML ({e}); save it as UTF-8.") from None


def _voc_image(tree, path: Path, root: Path, af: str):
    """-> (the image an annotation file describes, its (W, H)), checked against <size>."""
    fname = (tree.findtext("filename") or "").strip()
    if fname:
        cands = [root / "JPEGImages" / fname, path.parent / fname, root / "images" / fname]
    else:
        fname = path.stem + ".*"
        cands = [d / (path.stem + ext) for d in (root / "JPEGImages", path.parent,
                                                 root / "images") for ext in IMAGE_EXTS]
    img_path = find_image(root, cands, af, fname)
    size = image_size_of(img_path, af)
    sz = tree.find("size")
    if sz is not None and sz.findtext("width") and sz.findtext("height"):
        declared = (int(number(sz.findtext("width"), af, "size/width")),
                    int(number(sz.findtext("height"), af, "size/height")))
        if declared != (0, 0) and declared != size:
            raise AnnotationError(f"{af}: declared size {declared[0]}x{declared[1]} but "
                                  f"image {img_path.name!r} is {size[0]}x{size[1]}.")
    return img_path, size


# -- YOLO ---------------------------------------------------------------------------------------

def _yolo_names(root: Path) -> list[str] | None:
    names = read_class_file(root)
    if names is None:
        for y in sorted(root.glob("*.yaml")) + sorted(root.glob("*.yml")):
            names = yaml_names(y)
            if names:
                if len(set(names)) != len(names):
                    raise AnnotationError(f"{y.name}: class names repeat ({names}).")
                break
    return names or None  # "names: []" lists no class


# Normalized numbers carry float noise: a corner this share of the image size or less past the
# border is on the border (a rounding, not a box to clip and report).
YOLO_BORDER_NOISE = 1e-6


def _yolo_corner(v: float, size: int) -> float:
    """A pixel corner from YOLO's normalized numbers, float noise past the border taken off."""
    if -YOLO_BORDER_NOISE * size <= v < 0:
        return 0.0
    if size < v <= size * (1 + YOLO_BORDER_NOISE):
        return float(size)
    return v


def read_yolo(root: Path, fixes: Fixes):
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
            raise AnnotationError(f"{rel(p, root)}: no image named {Path(key).name}.* found in "
                                  f"{rel(img_dir, root) or '.'}/ (missing image file).")
    if not images:
        raise AnnotationError("YOLO: no images found (expected images/ and labels/ folders).")
    parsed, max_id = [], -1
    for key, img_path in images.items():
        size = image_size_of(img_path, rel(img_path, root))
        objs = []
        lp = labels.get(key)
        if lp is not None:
            af = rel(lp, root)
            text = read_text(lp, af)
            for n, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                where = f"{af}, line {n}"
                parts = line.split()
                if len(parts) != 5:
                    raise AnnotationError(f"{where}: expected 5 numbers 'class cx cy w h' "
                                          f"(normalized), got {len(parts)}: {line.strip()!r}.")
                k = class_id(parts[0], where, names)
                cx, cy, bw, bh = (number(v, where, f)
                                  for v, f in zip(parts[1:], ("cx", "cy", "w", "h")))
                w, h = size
                box = check_box(*(_yolo_corner(v, s) for v, s in (
                    ((cx - bw / 2) * w, w), ((cy - bh / 2) * h, h), ((cx + bw / 2) * w, w),
                    ((cy + bh / 2) * h, h))), w, h, where, fixes)
                objs.append((k, box))
                max_id = max(max_id, k)
        parsed.append((rel(img_path, root), size, objs))
    if names is None:
        names = [f"class_{k}" for k in range(max_id + 1)]
        if not names:
            raise AnnotationError("YOLO: no objects and no classes.txt; cannot tell the classes.")
    records = [Record(f, boxes_tensor([b for _, b in objs]),
                      torch.tensor([k for k, _ in objs], dtype=torch.int64), s)
               for f, s, objs in parsed]
    return records, names


# -- the book's banana CSV ----------------------------------------------------------------------

def read_csv(root: Path, fixes: Fixes):
    path, af = _only_file(sorted(root.glob("*.csv")), root, "CSV: expected one .csv file")
    names = read_class_file(root)
    text = read_text(path, af)
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
            path_i = find_image(root, [img_dir / name, root / name], where, name)
            per_image[name] = (image_size_of(path_i, where), [], [], rel(path_i, root))
        size, boxes, labels, _ = per_image[name]
        k = class_id(row[1].strip(), where, names)
        x1, y1, x2, y2 = (number(v.strip(), where, f) for v, f in zip(row[2:], CSV_HEADER[2:]))
        boxes.append(check_box(x1, y1, x2, y2, *size, where, fixes))
        labels.append(k)
        max_id = max(max_id, k)
    if not per_image:
        raise AnnotationError(f"{af}: no rows after the header.")
    if names is None:
        # The chapter's banana set has one class and no class list.
        names = ["banana"] if max_id == 0 else [f"class_{k}" for k in range(max_id + 1)]
    records = [Record(f, boxes_tensor(b), torch.tensor(lab, dtype=torch.int64), s)
               for s, b, lab, f in per_image.values()]
    return records, names




READERS = {"coco": read_coco, "voc": read_voc, "yolo": read_yolo, "csv": read_csv}
