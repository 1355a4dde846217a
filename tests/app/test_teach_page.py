"""Teach page through AppTest: create a set, add photos (uploads and a camera snapshot, a bad
file refused with a clear message), thumbnails and delete, label (the box editor's edits as the
browser sends them, the class typed once, the box table's edits and deletes, previous / next),
keep (rename, delete), all saved in the runs folder and found again by a fresh session (a
refresh).

AppTest runs no component JavaScript: the box editor (app/box_editor.py) is an element holding
its data, and :func:`send_edit` sends what its JavaScript sends at the end of a gesture (the
trigger ``edit`` with every box of the photo), as the browser would; tests/e2e/test_teach_e2e.py
draws with a real mouse."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from ssd_core.userdata import Box, list_datasets

from .conftest import app_on_page


def photo(colour=(200, 40, 40), size=(160, 120), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", size, (240, 240, 240))
    img.paste(colour, (40, 30, 100, 90))
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"


def fresh(runs, monkeypatch, query=None):
    at = app_on_page("teach", runs, monkeypatch)
    if query:
        at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def store(runs, name):
    """The set as saved in the runs folder (read again from disk)."""
    return next(s for s in list_datasets(runs) if s.name == name)


def create(at, name="mugs"):
    at.text_input(key="teach.new_name").input(name)
    next(b for b in at.button if b.label == "Create").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]


def photos(at):
    return next(u for u in at.file_uploader if u.key.startswith("teach.upload."))


def editor_data(at) -> dict:
    """What the page gave the box editor (photo, boxes, class of the next box, colours)."""
    (el,) = at.get("bidi_component")
    assert el.proto.component_name == "ssd_explorer_box_editor"
    return json.loads(el.proto.json)


def send_edit(at, boxes, image_id=None) -> None:
    """Run the app as after a gesture in the box editor: the browser sends the trigger ``edit``
    with the photo's boxes (``[{"label", "x1", "y1", "x2", "y2"}]``). Streamlit's own trigger
    id and widget-state proto, as its frontend sends them (AppTest has no API for a
    component's events)."""
    from streamlit.components.v2.bidi_component.main import _make_trigger_id

    (el,) = at.get("bidi_component")
    image_id = editor_data(at)["image_id"] if image_id is None else image_id
    states = at._tree.get_widget_states()
    w = states.widgets.add()
    w.id = _make_trigger_id(el.proto.id, "events")
    w.json_trigger_value = json.dumps([{"event": "edit",
                                        "value": {"image_id": image_id, "boxes": boxes}}])
    at._run(states)


def type_class(at, name):
    """Type a new class name into the class selectbox (accept_new_options): the browser sends
    the typed string as the widget's value, as AppTest does for a listed option."""
    box = at.selectbox(key="teach.class")
    if name not in box.options:
        box.options = [*box.options, name]
    box.set_value(name).run()


def button(at, label):
    return next(b for b in at.button if b.label == label)


def test_collect_label_keep(runs, monkeypatch):
    at = fresh(runs, monkeypatch)
    assert any("Create a photo set" in i.value for i in at.info)
    create(at)
    assert at.query_params["set"] == "mugs" and at.selectbox(key="teach.set_pick").value == "mugs"

    # Collect: two uploads at once and a file that is not an image
    up = photos(at)
    up.upload("a.png", photo(), "image/png").upload("b.jpg", photo((20, 90, 200), fmt="JPEG"),
                                                     "image/jpeg")
    up.upload("notes.png", b"not an image at all", "image/png")
    at.run()
    assert not at.exception
    assert any("notes.png" in e.value and "could not be used" in e.value for e in at.error)
    ds = store(runs, "mugs")
    assert len(ds.images) == 2
    # a camera snapshot adds one photo, and the camera is ready for the next
    at.camera_input[0].upload("snap.jpg", photo((30, 160, 60), fmt="JPEG")).run()
    assert not at.exception
    assert len(store(runs, "mugs").images) == 3
    assert at.camera_input[0].value is None
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1
    assert any(m.label == "Photos" and m.value == "3" for m in at.metric)

    # delete the third photo from the grid
    third = store(runs, "mugs").images[2].id
    next(b for b in at.button if b.key == f"teach.del.{third}").click().run()
    assert len(store(runs, "mugs").images) == 2

    # Label: open the first photo, type a class, draw a box (what the editor sends)
    next(b for b in at.button if b.key.startswith("teach.open.")).click().run()
    assert at.session_state["teach.step"] == "Label"
    assert any("Photo 1 of 2" in m.value for m in at.markdown)
    entry = store(runs, "mugs").images[0]
    data = editor_data(at)
    assert (data["image_id"], data["width"], data["height"], data["boxes"]) == (
        entry.id, 160, 120, [])
    assert data["label"] is None and data["url"].startswith("data:image/jpeg;base64,")
    type_class(at, "mug")
    assert editor_data(at)["label"] == "mug" and "mug" in editor_data(at)["colors"]
    send_edit(at, [{"label": "mug", "x1": 99.5, "y1": 89.0, "x2": 41.0, "y2": 29.0}])
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    boxes = store(runs, "mugs").images[0].boxes
    assert [(b.label, b.x1, b.y1, b.x2, b.y2) for b in boxes] == [("mug", 41.0, 29.0, 99.5, 89.0)]
    assert entry.id == store(runs, "mugs").images[0].id
    assert any("more box(es) of **mug**" in i.value for i in at.info)
    # the same run draws the saved box (the edit is saved in the callback, before it)
    assert editor_data(at)["boxes"] == [{"label": "mug", "x1": 41.0, "y1": 29.0, "x2": 99.5,
                                         "y2": 89.0}]
    # the class is picked again (it is one of the set's now) and the table shows the box
    assert "mug" in at.selectbox(key="teach.class").options
    assert len(at.data_editor) == 1
    # moved, a second box beside it, then the first deleted: each edit sends every box
    send_edit(at, [{"label": "mug", "x1": 51.0, "y1": 39.0, "x2": 109.5, "y2": 99.0},
                   {"label": "mug", "x1": 5.0, "y1": 5.0, "x2": 30.0, "y2": 25.0}])
    send_edit(at, [{"label": "mug", "x1": 5.0, "y1": 5.0, "x2": 30.0, "y2": 25.0}])
    assert not at.error, [e.value for e in at.error]
    assert [(b.x1, b.y1, b.x2, b.y2) for b in store(runs, "mugs").images[0].boxes] == [
        (5.0, 5.0, 30.0, 25.0)]
    assert any("· 1 box(es)" in m.value for m in at.markdown)

    # Next / Previous
    button(at, "Next").click().run()
    assert any("Photo 2 of 2" in m.value for m in at.markdown) and at.query_params["img"] == "1"
    assert button(at, "Next").disabled
    button(at, "Previous").click().run()
    assert any("Photo 1 of 2" in m.value for m in at.markdown)

    # a refresh (a new session with the URL) finds the set, the step and the photo
    again = fresh(runs, monkeypatch, {"set": "mugs", "step": "Label", "img": "0"})
    assert any("**Photo 1 of 2** · 1 box(es)" in m.value for m in again.markdown)

    # Keep: rename, then delete (photos and all)
    at2 = fresh(runs, monkeypatch, {"set": "mugs", "step": "Keep"})
    at2.text_input(key="teach.rename").input("cups")
    button(at2, "Rename").click().run()
    assert not at2.exception and not at2.error
    assert at2.session_state["teach.set"] == "cups"
    path = store(runs, "cups").path
    at2.checkbox(key="teach.delete_sure").check().run()
    button(at2, "Delete the set").click().run()
    assert not at2.exception and not path.exists()
    assert at2.session_state["teach.set"] is None


def test_box_table_edits_and_deletes(runs, monkeypatch):
    at = fresh(runs, monkeypatch)
    create(at, "keys")
    photos(at).upload("a.png", photo(), "image/png")
    at.run()
    ds = store(runs, "keys")
    ds.set_boxes(ds.images[0].id, [Box("key", 10, 10, 50, 50), Box("key", 60, 20, 90, 80)])
    at = fresh(runs, monkeypatch, {"set": "keys", "step": "Label"})
    table = at.data_editor[0]
    # move the first box (edit two corners), delete the second
    at.session_state[table.key] = {"edited_rows": {0: {"x1": 20.0, "x2": 70.0}},
                                   "added_rows": [], "deleted_rows": [1]}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    got = [(b.label, b.x1, b.x2) for b in store(runs, "keys").images[0].boxes]
    assert got == [("key", 20.0, 70.0)]


def test_label_without_class_says_so(runs, monkeypatch):
    at = fresh(runs, monkeypatch)
    create(at, "pens")
    photos(at).upload("a.png", photo(), "image/png")
    at.run()
    at = fresh(runs, monkeypatch, {"set": "pens", "step": "Label"})
    # the editor sends a drawn box with no class when none is chosen: refused, said, not saved
    send_edit(at, [{"label": None, "x1": 1, "y1": 1, "x2": 50, "y2": 50}])
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Choose or type the class name first, then draw the box again."]
    assert store(runs, "pens").images[0].boxes == []
    assert editor_data(at)["boxes"] == []  # the editor is told what was saved: nothing
    at.run()  # said once
    assert not at.error
    # an edit made on another photo (a stale page) is not applied to this one
    type_class(at, "pen")
    send_edit(at, [{"label": "pen", "x1": 1, "y1": 1, "x2": 50, "y2": 50}], image_id=999)
    assert any("another photo" in e.value for e in at.error)
    assert store(runs, "pens").images[0].boxes == []


def labelled_set(runs, name="balls", n=6):
    """A set of ``n`` photos with one box each, made through ssd_core.userdata."""
    from ssd_core.userdata import UserDataset

    ds = UserDataset.create(runs, name)
    for k in range(n):
        e = ds.add_image(photo((30 * k, 200 - 20 * k, 90)), f"p{k}.png")
        ds.set_boxes(e.id, [Box("ball", 40, 30, 100, 90)])
    return ds


def test_train_step_runs_the_teach_recipe(runs, monkeypatch):
    import time

    ds = labelled_set(runs)
    at = fresh(runs, monkeypatch, {"set": "balls", "step": "Train"})
    assert any("more of ball" in w.value for w in at.warning)  # 6 of the 9 it wants
    at.number_input(key="teach.epochs").set_value(1).run()
    # 6 photos, 1 held out: 5 in one batch of 8 a step; 1 epoch would be 1 step, the recipe
    # trains at least 30
    assert any("5 photo(s) to train on in batches of 8: 30 steps (at least 30 steps however "
               "few the photos: 30 epochs)" in c.value for c in at.caption)
    button(at, "Train on this set").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_id = at.session_state[f"teach.run.{ds.slug}"]
    assert run_id.endswith("-teach-balls")
    deadline = time.time() + 300
    while True:
        at.run()
        assert not at.exception
        line = next(m.value for m in at.markdown if "· run `" in m.value)
        if line.startswith("**finished**") or line.startswith("**failed**"):
            break
        assert time.time() < deadline, line
        time.sleep(1)
    assert line.startswith("**finished**"), line
    assert len(at.get("plotly_chart")) >= 1  # the curves (and the replay)
    from ssd_core import load_checkpoint
    from ssd_core import runfolder as rf
    ckpt = rf.checkpoint(runs / run_id)
    assert list(load_checkpoint(ckpt).class_names) == ["ball"]
    assert load_checkpoint(ckpt).config.epochs == 30  # 30 epochs of one step
    button(at, "Use this model on every page and detect live").click().run()
    assert at.session_state["active_checkpoint"] == str(ckpt)
    # every page's model picker lists the taught run with its class names
    for page in ("detection", "evaluation", "model", "labeling", "anchors"):
        other = app_on_page(page, runs, monkeypatch)
        other.run()
        if page == "anchors":  # its picker belongs to the anchor fit, behind a toggle
            other.toggle(key="anchors.fit_on").set_value(True).run()
        assert not other.exception
        labels = [o for sb in other.selectbox for o in sb.options]
        assert any(run_id in o and o.endswith(": ball") for o in labels), (page, labels)


def test_train_refused_with_the_reason(runs, monkeypatch):
    from ssd_core.userdata import UserDataset

    UserDataset.create(runs, "empty")
    at = fresh(runs, monkeypatch, {"set": "empty", "step": "Train"})
    assert button(at, "Train on this set").disabled
    assert any("no photos" in e.value for e in at.error)


def test_detect_step_live_and_upload(runs, monkeypatch):
    labelled_set(runs, "cars", n=2)
    # streamlit-webrtc needs a real server (tests/e2e); here the live view records its model
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "app"))
    from app.views import _live

    shown = []
    monkeypatch.setattr(_live, "live_view", lambda det, key: shown.append((det, key)))
    at = fresh(runs, monkeypatch, {"set": "cars", "step": "Detect live"})
    assert not at.exception
    # the shipped model by default (no taught run yet), its classes said plainly
    assert any("banana" in c.value and "Anything else" in c.value for c in at.caption)
    assert any("does not know this set's classes" in i.value for i in at.info)
    at.radio(key="teach.detect.image").set_value("Upload").run()
    up = next(u for u in at.file_uploader if u.key == "teach.detect.upload")
    up.upload("a.png", photo(), "image/png")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.key == "teach_detect_chart" for c in at.get("plotly_chart"))
    assert shown and shown[-1][1] == "teach_live"
    assert list(shown[-1][0].class_names) == ["banana", "ring", "star"]


def test_see_ssd_on_the_set(runs, monkeypatch):
    labelled_set(runs, "dice", n=3)
    at = fresh(runs, monkeypatch, {"set": "dice", "step": "See SSD", "img": "1"})
    assert not at.exception, [e.value for e in at.exception]
    keys = [c.key for c in at.get("plotly_chart")]
    assert "teach_fit" in keys and "teach_labeled" in keys
    assert next(m.value for m in at.metric if m.label == "Objects") == "3"
    assert any("Labeled anchors of photo 2" in h.value for h in at.subheader)
    assert len(at.get("imgs")) + len(at.get("image")) >= 1  # the photo and its augmentations


def test_detection_page_says_what_the_shipped_model_knows(runs, monkeypatch):
    at = app_on_page("detection", runs, monkeypatch)
    at.run()
    lesson = [i for i in at.info if "knows only" in i.value]
    assert not lesson  # a synthetic or shipped sample: no lesson
    at.radio(key="detection.image").set_value("Upload").run()
    at.file_uploader(key="detection.upload").upload("cat.png", photo(), "image/png")
    at.run()
    assert not at.exception
    lesson = [i for i in at.info if "knows only" in i.value]
    assert lesson and "banana, ring, star" in lesson[0].value
    assert any(p.proto.page.endswith("teach.py") or "teach" in str(p.proto)
               for p in at.get("page_link"))
    # another model (the untrained one): no lesson
    at.selectbox(key="detection.model").set_value("untrained").run()
    assert not [i for i in at.info if "knows only" in i.value]


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo", "csv"])
def test_keep_exports_and_imports_again(runs, monkeypatch, fmt):
    labelled_set(runs, "bolts", n=2)
    at = fresh(runs, monkeypatch, {"set": "bolts", "step": "Keep"})
    at.radio(key="teach.export_fmt").set_value(fmt).run()
    assert not at.exception and not at.error
    data = store(runs, "bolts").export_zip(fmt)  # what the download button serves
    assert any(f"bolts-{fmt}.zip" in str(b.proto) for b in at.get("download_button"))
    up = next(u for u in at.file_uploader if u.key == "teach.import")
    up.upload(f"bolts-{fmt}.zip", data, "application/zip")
    at.run()
    at.text_input(key="teach.import_name").input(f"bolts again {fmt}").run()
    button(at, "Import").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    again = store(runs, f"bolts again {fmt}")
    assert len(again.images) == 2 and again.counts() == {"ball": 2}
    assert at.query_params["set"] == f"bolts again {fmt}"


def test_import_of_a_bad_zip_says_why(runs, monkeypatch):
    labelled_set(runs, "nuts", n=1)
    at = fresh(runs, monkeypatch, {"set": "nuts", "step": "Keep"})
    up = next(u for u in at.file_uploader if u.key == "teach.import")
    up.upload("junk.zip", b"PK not a zip", "application/zip")
    at.run()
    at.text_input(key="teach.import_name").input("junk").run()
    button(at, "Import").click().run()
    assert not at.exception
    assert any("could not be imported" in e.value for e in at.error)
