"""The Python side of the mouse box editor (app/box_editor.py) as plain functions: the payload
its JavaScript sends at the end of a gesture is checked (classes, corners, clamping, sizes) and
saved through the set (app/views/_teach_label.apply_edit), and the component's files ship with
the package. The mouse itself is driven in tests/e2e/test_teach_e2e.py."""

from __future__ import annotations

import base64
import io
import math
import re
from pathlib import Path

import pytest
from PIL import Image

from app import box_editor
from app.box_editor import NO_CLASS, EditError, boxes_from_payload
from ssd_core.userdata import Box, UserDataset

ROOT = Path(__file__).resolve().parents[1]


def box(label="mug", x1=10.0, y1=20.0, x2=50.0, y2=60.0) -> dict:
    return {"label": label, "x1": x1, "y1": y1, "x2": x2, "y2": y2}


def test_payload_to_boxes_in_order_clamped_and_sorted():
    got = boxes_from_payload({"image_id": 3, "boxes": [
        box(), box("cup", -5, 100, 70.5, 130.25), box(" key ", 90, 50, 20, 10)]}, 160, 120)
    assert got == [Box("mug", 10.0, 20.0, 50.0, 60.0), Box("cup", 0.0, 100.0, 70.5, 120.0),
                   Box("key", 20.0, 10.0, 90.0, 50.0)]
    assert boxes_from_payload({"boxes": []}, 160, 120) == []  # the last box deleted


@pytest.mark.parametrize("label", [None, "", "   ", 3])
def test_a_box_without_a_class_is_refused_with_what_to_do(label):
    with pytest.raises(EditError, match=re.escape(NO_CLASS)):
        boxes_from_payload({"boxes": [box(), box(label)]}, 160, 120)


@pytest.mark.parametrize("payload, says", [
    (None, "no box list"), ({"boxes": "x"}, "no box list"), ([], "no box list"),
    ({"boxes": ["mug"]}, "Box 1 is not a box"),
    ({"boxes": [box(x1="ten")]}, "Box 1: a corner is not a number"),
    ({"boxes": [box(), box(y2=math.nan)]}, "Box 2: a corner is not a number"),
    ({"boxes": [box(x2=math.inf)]}, "not a number"),
    ({"boxes": [box(x1=True)]}, "not a number"),
    ({"boxes": [box(x2=11.5)]}, "smaller than 2 px"),
    ({"boxes": [box(x1=170, x2=200)]}, "smaller than 2 px"),  # all of it right of the photo
    ({"boxes": [box()] * (box_editor.MAX_BOXES + 1)}, "more than"),
])
def test_malformed_payloads_are_refused_saying_why(payload, says):
    with pytest.raises(EditError, match=re.escape(says)):
        boxes_from_payload(payload, 160, 120)


def photo_set(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (160, 120), (200, 40, 40)).save(buf, format="PNG")
    ds = UserDataset.create(tmp_path, "mugs")
    return ds, ds.add_image(buf.getvalue(), "a.png")


def test_apply_edit_saves_every_box_or_nothing(tmp_path):
    from app.views._teach_label import apply_edit

    ds, entry = photo_set(tmp_path)
    assert apply_edit(ds, entry.id, {"image_id": entry.id, "boxes": [box(), box("cup")]}) is None
    again = UserDataset.open(ds.path)
    assert [b.label for b in again.image(entry.id).boxes] == ["mug", "cup"]
    assert again.class_names == ["mug", "cup"]
    # a refused edit (a new box with no class) leaves the saved boxes as they were
    said = apply_edit(ds, entry.id, {"image_id": entry.id, "boxes": [box(), box(None)]})
    assert said == NO_CLASS
    assert len(UserDataset.open(ds.path).image(entry.id).boxes) == 2
    assert "another photo" in apply_edit(ds, entry.id, {"image_id": entry.id + 1, "boxes": []})
    assert "could not be saved" in apply_edit(ds, entry.id + 5, {"boxes": []})
    assert apply_edit(ds, entry.id, {"image_id": entry.id, "boxes": []}) is None
    assert UserDataset.open(ds.path).image(entry.id).boxes == []


def test_photo_url_is_a_jpeg_data_url_with_the_photos_own_size():
    buf = io.BytesIO()
    Image.new("RGB", (2000, 1000), (10, 200, 30)).save(buf, format="PNG")
    url, w, h = box_editor.photo_url.__wrapped__(buf.getvalue(), max_side=500)
    assert (w, h) == (2000, 1000)  # the boxes' pixels
    head, data = url.split(",", 1)
    assert head == "data:image/jpeg;base64"
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (500, 250)  # what is sent


def test_the_component_files_ship_and_fetch_nothing():
    """The JS and CSS are package data of ``app`` (a wheel has them) and name no URL: the
    editor works offline."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {"*.js", "*.css"} <= set(data["package-data"]["app"])
    for name in ("box_editor.js", "box_editor.css"):
        text = (ROOT / "app" / name).read_text()
        assert not re.search(r"https?://|\bimport\s*\(|\bfetch\s*\(|@import", text), name
    js = (ROOT / "app" / "box_editor.js").read_text()
    assert "export default function" in js and 'setTriggerValue("edit"' in js
