"""Write any dataset (``sample/class_names/len``) as COCO, Pascal VOC, YOLO or the book's CSV.

Images are written as lossless PNG, so a set read back has identical pixels, boxes, labels and
class names. Layouts (what ``load_dataset`` reads):
coco: annotations.json + images/; voc: Annotations/*.xml + JPEGImages/ + classes.txt;
yolo: images/ + labels/*.txt + classes.txt; csv: label.csv + images/ + classes.txt.
"""

from __future__ import annotations

import json
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

from ssd_core.errors import ConfigError

from .formats import CSV_HEADER, FORMATS


def _num(v: float):
    """Integral floats as ints (12, not 12.0); others exactly (repr round-trips)."""
    v = float(v)
    return int(v) if v.is_integer() else v


def _write_classes(out: Path, names) -> None:
    (out / "classes.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


def _voc_xml(file: str, size, boxes, labels, names) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = file
    sz = ET.SubElement(root, "size")
    for tag, v in zip(("width", "height", "depth"), (*size, 3)):
        ET.SubElement(sz, tag).text = str(v)
    for box, lab in zip(boxes.tolist(), labels.tolist()):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = names[lab]
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        # VOC pixels are 1-based with xmax inclusive: xmin = x1 + 1, xmax = x2.
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"),
                          (box[0] + 1, box[1] + 1, box[2], box[3])):
            ET.SubElement(bb, tag).text = str(_num(v))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _add_coco(coco: dict, i: int, file: str, size, boxes, labels) -> None:
    """Append image ``i`` and its objects to a COCO dict (bbox = x, y, width, height)."""
    w, h = size
    coco["images"].append({"id": i + 1, "file_name": file, "width": w, "height": h})
    for (x1, y1, x2, y2), lab in zip(boxes.tolist(), labels.tolist()):
        coco["annotations"].append({
            "id": len(coco["annotations"]) + 1, "image_id": i + 1, "category_id": lab + 1,
            "bbox": [_num(x1), _num(y1), _num(x2 - x1), _num(y2 - y1)],
            "area": _num((x2 - x1) * (y2 - y1)), "iscrowd": 0})


def _yolo_lines(size, boxes, labels) -> str:
    """YOLO label lines: class cx cy w h, normalized by the image size, each number in full
    (repr: the shortest text that reads back as the same float), so the reader's corners come
    back to the same float32 boxes (a fixed 8 decimals left them up to 1e-5 px off and put a
    box at the border up to 1e-8 past it)."""
    w, h = size
    lines = []
    for (x1, y1, x2, y2), lab in zip(boxes.tolist(), labels.tolist()):
        vals = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
        lines.append(" ".join([str(lab)] + [str(_num(v)) for v in vals]) + "\n")
    return "".join(lines)


def export_dataset(ds, out_dir, fmt: str, progress=None) -> Path:
    """Write ``ds`` (anything with sample/class_names/len) to ``out_dir`` in ``fmt``; returns it.

    fmt: "coco" | "voc" | "yolo" | "csv". ``progress(i, n)`` is called after each image if given.
    """
    fmt = str(fmt).lower()
    if fmt not in FORMATS:
        raise ConfigError(f"Unknown export format {fmt!r}; choose from {list(FORMATS)}.")
    out = Path(out_dir)
    names = list(ds.class_names)
    img_dir = out / ("JPEGImages" if fmt == "voc" else "images")
    img_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "voc":
        (out / "Annotations").mkdir(exist_ok=True)
    if fmt == "yolo":
        (out / "labels").mkdir(exist_ok=True)
    coco = {"info": {"description": "exported by SSD Explorer"}, "images": [], "annotations": [],
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}
    csv_lines = [",".join(CSV_HEADER)]
    no_rows = 0  # a CSV has no row for an image without objects
    n = len(ds)
    width = max(6, len(str(n - 1)))
    for i in range(n):
        img, boxes, labels = ds.sample(i)
        stem = f"{i:0{width}d}"
        img.save(img_dir / f"{stem}.png", compress_level=1)
        if fmt == "coco":
            _add_coco(coco, i, f"{stem}.png", img.size, boxes, labels)
        elif fmt == "voc":
            xml = _voc_xml(f"{stem}.png", img.size, boxes, labels, names)
            (out / "Annotations" / f"{stem}.xml").write_bytes(xml)
        elif fmt == "yolo":
            (out / "labels" / f"{stem}.txt").write_text(
                _yolo_lines(img.size, boxes, labels), encoding="utf-8")
        else:
            no_rows += len(labels) == 0
            for box, lab in zip(boxes.tolist(), labels.tolist()):
                csv_lines.append(",".join([f"{stem}.png", str(lab)] + [str(_num(v)) for v in box]))
        if progress is not None:
            progress(i + 1, n)
    if fmt == "coco":
        (out / "annotations.json").write_text(json.dumps(coco), encoding="utf-8")
    else:
        _write_classes(out, names)
    if no_rows:
        warnings.warn(f"{no_rows} image(s) without objects have no row in label.csv and will "
                      "not be read back (the CSV format cannot list them).", stacklevel=2)
    if fmt == "csv":
        (out / "label.csv").write_text("\n".join(csv_lines) + "\n", encoding="utf-8")
    return out
