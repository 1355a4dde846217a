"""Hostile annotation files found by the reader fuzzers (tests/test_fuzz_readers.py): each
once crashed with an undocumented exception, hung, or loaded something that breaks training
later; now each is refused with an ``AnnotationError`` that says why.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from ssd_core.data import load_dataset
from ssd_core.errors import AnnotationError
from tests.helpers import watchdog, write_file, write_images

_COCO_OK = {"images": [{"id": 1, "file_name": "a.png"}], "annotations": [],
            "categories": [{"id": 1, "name": "x"}]}


def _coco(**changes) -> dict:
    return {"instances.json": json.dumps({**_COCO_OK, **changes})}


def _voc(xml: str, encoding: str = "utf-8") -> dict:
    return {"Annotations/a.xml": xml.encode(encoding)}


_VOC_OBJ = ("<annotation><filename>a.png</filename><object><name>{}</name><bndbox><xmin>1</xmin>"
            "<ymin>1</ymin><xmax>{}</xmax><ymax>5</ymax></bndbox></object></annotation>")


# Regression cases found by the fuzzers: each crashed with an undocumented exception
# (TypeError, OverflowError, ValueError, RecursionError, UnicodeDecodeError, IsADirectoryError,
# LookupError), hung, or loaded something that breaks training later.
@pytest.mark.parametrize("fmt, files, words", [
    ("coco", _coco(categories=[{"id": [1], "name": "x"}]), "number or a string"),
    ("coco", _coco(images=[{"id": {"a": 1}, "file_name": "a.png"}]), "number or a string"),
    ("coco", _coco(annotations=[{"image_id": [1], "category_id": 1, "bbox": [0, 0, 1, 1]}]),
     "number or a string"),
    ("coco", {"instances.json": json.dumps(_COCO_OK).replace(
        '"annotations": []', '"annotations": [{"image_id": 1, "category_id": 1, "bbox": ['
        + "9" * 400 + ', 0, 1, 1]}]')}, "not a number"),
    ("coco", {"instances.json": '{"images": [{"id": 1, "file_name": "a.png", "width": '
              + "9" * 400 + ', "height": 20}], "annotations": [], "categories": [{"id": 1, "name": '
              '"x"}]}'},
     "not a number"),
    ("coco", {"instances.json": "[" + "9" * 5000 + "]"}, "JSON"),
    ("coco", {"instances.json": "[" * 100_000 + "]" * 100_000}, "JSON"),
    ("coco", {"instances.json/keep": "x"}, "cannot be read"),
    ("coco", _coco(categories=[{"id": 1, "name": "x"}, {"id": 2, "name": "x"}]),
     "names repeat"),
    ("coco", _coco(images=[{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.jpg"}]),
     "used twice"),
    ("coco", _coco(images=[{"id": 1, "file_name": "../outside.png"}]), "outside the dataset"),
    ("coco", _coco(images=[{"id": 1, "file_name": "/tmp/x.png"}]), "outside the dataset"),
    ("coco", _coco(annotations=[{"image_id": 1, "category_id": 1, "bbox": [5, 1, 1e-7, 3]}]),
     "too thin"),
    ("voc", _voc('<?xml version="1.0" encoding="shift_jis"?><annotation/>'), "UTF-8"),
    ("voc", _voc('<?xml version="1.0" encoding="nonsense"?><annotation/>'), "XML"),
    ("voc", _voc('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY e "cat">]>'
                 + _VOC_OBJ.format("&e;", 9), "utf-16"), "DOCTYPE"),
    ("voc", _voc(_VOC_OBJ.format("x", 9)) | {"classes.txt": b"\xff\xfe"}, "UTF-8"),
    ("voc", _voc(_VOC_OBJ.format("x", "2.0000001").replace("<xmin>1<", "<xmin>3<")),
     "too thin"),
    ("voc", _voc(_VOC_OBJ.replace("a.png", "../outside.png").format("x", 9)),
     "outside the dataset"),
    ("yolo", {"a.txt": "1e15 0.5 0.5 0.1 0.1"}, "too large"),
    ("yolo", {"a.txt": "0 0.5 0.5 0.1 0.1", "classes.txt": b"\xff\xfe"}, "UTF-8"),
    ("yolo", {"a.txt": "0 0.5 0.5 0.1 0.1", "data.yaml": b"\xff\xfe"}, "UTF-8"),
    ("yolo", {"a.txt": "0 0.5 0.5 0.1 0.1", "data.yaml": "names: [x, x]\n"}, "repeat"),
    ("yolo", {"a.txt": "", "data.yaml": "names: []\n"}, "no objects"),
    ("yolo", {"a.txt": "0 0.5 0.5 1e-9 0.1"}, "too thin"),
    ("csv", {"label.csv": "img_name,label,xmin,ymin,xmax,ymax\na.png,1e12,0,0,1,1\n"},
     "too large"),
    ("csv", {"label.csv": "img_name,label,xmin,ymin,xmax,ymax\n../outside.png,0,0,0,1,1\n"},
     "outside the dataset"),
    ("csv", {"label.csv": b"img_name,label,xmin,ymin,xmax,ymax\n\xff\n"}, "UTF-8"),
])
def test_hostile_annotation_files(fmt, files, words, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")  # a real image next to the folder
    root = tmp_path / "ds"
    root.mkdir()
    write_images(root)
    if fmt == "voc":
        (root / "JPEGImages").mkdir()
        write_images(root / "JPEGImages")
    for rel, content in files.items():
        write_file(root / rel, content)
    with watchdog(60), pytest.raises(AnnotationError, match=words):
        load_dataset(root, fmt=fmt)
