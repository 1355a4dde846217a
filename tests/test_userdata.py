"""The Teach flow's photo set (ssd_core.userdata): layout, checks, atomic writes, locking and the
round trips through load_dataset, export_zip and import_dataset. Images are made with PIL."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ssd_core import userdata
from ssd_core.data import AnnotationWarning, load_dataset
from ssd_core.data.archive import MAX_FILES
from ssd_core.errors import AnnotationError, ConfigError, InvalidImageError
from ssd_core.userdata import (
    ANNOTATIONS,
    DATASETS_DIR,
    IMAGES_DIR,
    MAX_SIDE,
    TARGET_BOXES_PER_CLASS,
    Box,
    UserDataset,
    import_dataset,
    list_datasets,
)
from tests.helpers import encode, png_claiming


def photo(w=64, h=48, seed=0, fmt="PNG", **kw) -> bytes:
    """Random RGB pixels (so a changed pixel shows) as ``fmt`` bytes."""
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), fmt, **kw)


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def files(ds: UserDataset) -> list[str]:
    return sorted(p.name for p in (ds.path / IMAGES_DIR).iterdir())


def disk(ds: UserDataset) -> bytes:
    return (ds.path / ANNOTATIONS).read_bytes()


@pytest.fixture
def ds(tmp_path):
    return UserDataset.create(tmp_path, "Cups")


@pytest.fixture
def filled(ds):
    """Two photos: cup + pen boxes on the first, a pen on the second."""
    a = ds.add_image(photo(80, 60, 1), "a.png")
    b = ds.add_image(photo(64, 64, 2), "b.png")
    ds.set_boxes(a.id, [Box("cup", 10.25, 5, 40, 50.5), Box("pen", 50, 10, 79, 20)])
    ds.set_boxes(b.id, [Box("pen", 3, 4, 30, 60)])
    return ds


# ---------------------------------------------------------------- making, finding, layout

def test_create_lays_out_the_folder_and_reopening_gives_the_same_set(tmp_path, filled):
    assert filled.path == tmp_path / DATASETS_DIR / "cups"
    assert filled.path.stat().st_mode & 0o777 == (tmp_path / DATASETS_DIR).stat().st_mode & 0o777
    assert (filled.path / ANNOTATIONS).is_file() and files(filled) == ["000001.png",
                                                                       "000002.png"]
    again = UserDataset.open(filled.path)
    assert (again.name, again.class_names, again.images) == (
        "Cups", ["cup", "pen"], filled.images)
    assert again.images[0].boxes[0] == Box("cup", 10.25, 5.0, 40.0, 50.5)
    assert [d.path for d in list_datasets(tmp_path)] == [filled.path]


@pytest.mark.parametrize("name, words", [("", "empty"), ("   \t", "empty"),
                                         ("!!! ???", "no letters or digits"),
                                         ("x" * 61, "at most 60"), ("a\x00b", "control")])
def test_a_bad_name_is_refused_and_nothing_is_made(tmp_path, name, words):
    with pytest.raises(ConfigError, match=words):
        UserDataset.create(tmp_path, name)
    assert list_datasets(tmp_path) == []
    sets = tmp_path / DATASETS_DIR
    assert not sets.exists() or [p for p in sets.iterdir() if p.name != ".lock"] == []


def test_a_duplicate_name_is_refused_in_any_case_and_slugs_never_collide(tmp_path, ds):
    with pytest.raises(ConfigError, match="already exists"):
        UserDataset.create(tmp_path, "  cUPS ")
    ds.rename("Mugs")
    again = UserDataset.create(tmp_path, "cups!")  # the name is free, the slug "cups" is not
    assert again.path.name == "cups-2" and again.name == "cups!"
    with pytest.raises(ConfigError, match="already exists"):
        again.rename("MUGS")
    other = UserDataset.create(tmp_path, "Käse 日本")
    assert other.path.name == "kase"
    assert UserDataset.create(tmp_path, "日本").path.name == "set"  # letters, just not Latin
    assert [d.name for d in list_datasets(tmp_path)] == ["日本", "Käse 日本", "cups!", "Mugs"]


def test_list_datasets_skips_broken_folders(tmp_path, ds):
    sets = tmp_path / DATASETS_DIR
    (sets / "empty").mkdir()
    (sets / "torn").mkdir()
    (sets / "torn" / ANNOTATIONS).write_text('{"images": [', encoding="utf-8")
    (sets / "foreign").mkdir()
    (sets / "foreign" / ANNOTATIONS).write_text(
        json.dumps({"images": [], "annotations": [], "categories": []}), encoding="utf-8")
    (sets / ".new-half").mkdir()
    (sets / "a-file").write_text("x", encoding="utf-8")
    assert [d.path for d in list_datasets(tmp_path)] == [ds.path]
    with pytest.raises(AnnotationError, match="not a photo set"):
        UserDataset.open(sets / "foreign")
    with pytest.raises(AnnotationError, match="not readable JSON"):
        UserDataset.open(sets / "torn")
    assert list_datasets(tmp_path / "nowhere") == []


def age(folder, seconds: float) -> None:
    """Make ``folder`` look ``seconds`` old (its mtime, as a killed operation leaves it)."""
    t = time.time() - seconds
    os.utime(folder, (t, t))


def test_listing_removes_stale_leftovers_of_killed_creates_and_deletes(tmp_path, filled):
    sets = tmp_path / DATASETS_DIR
    half_made = sets / ".new-0123abcd"  # a create killed while building
    (half_made / IMAGES_DIR).mkdir(parents=True)
    (half_made / IMAGES_DIR / "000001.png").write_bytes(photo())
    (half_made / userdata.LOCK).touch()
    half_deleted = sets / ".deleted-mugs-89abcdef"  # a delete killed before its rmtree
    shutil.copytree(filled.path, half_deleted)
    fresh = sets / ".new-fresh"  # a create that has not taken its lock yet
    fresh.mkdir()
    other_hidden = sets / ".keep-me"  # not ours to judge
    other_hidden.mkdir()
    for folder in (half_made, half_deleted, other_hidden):
        age(folder, 2 * userdata.folders.STALE_AFTER)
    age(fresh, userdata.folders.STALE_AFTER / 2)
    assert [d.path for d in list_datasets(tmp_path)] == [filled.path]
    assert left_behind(tmp_path) == [".keep-me", ".new-fresh", "cups"]
    assert UserDataset.open(filled.path).counts() == {"cup": 1, "pen": 2}  # the set untouched


def test_a_leftover_held_by_a_live_operation_stays(tmp_path, ds):
    trash = tmp_path / DATASETS_DIR / ".deleted-cups-01234567"
    trash.mkdir()
    holder = subprocess.Popen(  # another process still removing it, holding its lock
        [sys.executable, "-c", "import fcntl, os, sys; "
         "fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
         "print('held', flush=True); sys.stdin.read()", str(trash / userdata.LOCK)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        age(trash, 2 * userdata.folders.STALE_AFTER)
        list_datasets(tmp_path)
        assert trash.is_dir()
    finally:
        holder.stdin.close()
        holder.wait(10)
    list_datasets(tmp_path)  # released, and still old: a leftover now
    assert not trash.exists()


def test_a_slow_import_is_not_taken_for_a_leftover(tmp_path, filled, monkeypatch):
    blob = filled.export_zip("coco")
    building, go_on = threading.Event(), threading.Event()
    real = userdata.photos._encode

    def slow(img, fmt):
        building.set()
        assert go_on.wait(10)
        return real(img, fmt)

    monkeypatch.setattr(userdata.photos, "_encode", slow)
    done = []
    importer = threading.Thread(target=lambda: done.append(
        import_dataset(tmp_path, blob, name="Slow")))
    importer.start()
    try:
        assert building.wait(10)
        (new,) = (tmp_path / DATASETS_DIR).glob(".new-*")
        age(new, 10 * userdata.folders.STALE_AFTER)
        assert [d.name for d in list_datasets(tmp_path)] == ["Cups"] and new.is_dir()
    finally:
        go_on.set()
        importer.join(10)
    assert done and done[0].counts() == {"cup": 1, "pen": 2}
    assert left_behind(tmp_path) == ["cups", "slow"]


# ---------------------------------------------------------------- photos

def test_photos_are_stored_re_encoded_png_pixels_identical_jpeg_as_jpeg(ds):
    png = photo(70, 50, 3)
    a = ds.add_image(png)
    assert (a.id, a.file, a.width, a.height, a.boxes) == (1, "000001.png", 70, 50, [])
    np.testing.assert_array_equal(pixels(ds.image_path(a.id)), pixels(io.BytesIO(png)))
    b = ds.add_image(photo(40, 30, 4, "JPEG"), "b.jpg")
    assert b.file == "000002.jpg" and Image.open(ds.image_path(b.id)).format == "JPEG"
    rgba = Image.new("RGBA", (20, 10), (255, 0, 0, 0))  # transparent: flattened on white
    c = ds.add_image(encode(rgba, "PNG"))
    assert pixels(ds.image_path(c.id)).min() == 255


def test_exif_orientation_is_applied_and_not_stored(ds):
    img = Image.new("RGB", (60, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    entry = ds.add_image(encode(img, "JPEG", exif=exif.tobytes()), "phone.jpg")
    assert (entry.width, entry.height) == (20, 60)
    with Image.open(ds.image_path(entry.id)) as im:
        assert im.size == (20, 60) and im.getexif().get(0x0112) is None


def test_a_large_photo_is_scaled_down_to_max_side(ds):
    entry = ds.add_image(encode(Image.new("RGB", (MAX_SIDE * 2, 300)), "PNG"))
    assert (entry.width, entry.height) == (MAX_SIDE, 150)
    assert Image.open(ds.image_path(entry.id)).size == (MAX_SIDE, 150)


@pytest.mark.parametrize("data, words", [
    (b"not an image at all", "not a recognised image"),
    (b"", "empty"),
    (photo(30, 30, 5)[:60], "truncated or corrupt"),
    (png_claiming(8000, 7000), "over the limit"),
])
def test_a_bad_photo_is_refused_by_name_and_nothing_is_saved(ds, data, words):
    ds.add_image(photo())
    before, names = disk(ds), files(ds)
    with pytest.raises(InvalidImageError, match=words) as e:
        ds.add_image(data, "holiday.png")
    assert "holiday.png" in str(e.value) or data == b""
    assert (disk(ds), files(ds), len(ds)) == (before, names, 1)


def test_a_failing_encoder_or_annotation_write_leaves_the_set_as_it_was(ds, monkeypatch):
    ds.add_image(photo())
    before, names = disk(ds), files(ds)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(userdata.photos, "_encode", boom)
    with pytest.raises(OSError, match="disk full"):
        ds.add_image(photo(seed=9))
    monkeypatch.undo()
    monkeypatch.setattr(userdata.state, "write_json_atomic", boom)
    with pytest.raises(OSError, match="disk full"):
        ds.add_image(photo(seed=9))  # the photo was written, then removed again
    with pytest.raises(OSError):
        ds.set_boxes(1, [Box("cup", 1, 1, 9, 9)])
    with pytest.raises(OSError):
        ds.rename("Other")
    with pytest.raises(OSError):
        ds.remove_image(1)
    monkeypatch.undo()
    assert (disk(ds), files(ds)) == (before, names)
    again = UserDataset.open(ds.path)
    assert (again.name, len(again), again.class_names, again.images[0].boxes) == (
        "Cups", 1, [], [])
    assert ds.add_image(photo(seed=9)).id == 2  # ids were not spent by the failures


def test_remove_image_deletes_the_file_and_ids_are_never_reused(filled):
    filled.remove_image(1)
    assert files(filled) == ["000002.png"] and [im.id for im in filled.images] == [2]
    assert filled.add_image(photo()).id == 3
    with pytest.raises(ConfigError, match="no photo 1"):
        filled.remove_image(1)
    assert filled.counts() == {"cup": 0, "pen": 1}  # the class stays, with no boxes


# ---------------------------------------------------------------- boxes

def test_set_boxes_clips_orders_corners_and_adds_classes_in_first_use_order(ds):
    e = ds.add_image(photo(100, 50))
    ds.set_boxes(e.id, [Box("pen", 90, 40, 120, -10), ("cup", 1.23456, 2, 3.5, 4), {
        "label": "  pen ", "x1": 0, "y1": 0, "x2": 10, "y2": 10}])
    assert ds.image(e.id).boxes == [Box("pen", 90, 0, 100, 40), Box("cup", 1.235, 2, 3.5, 4),
                                    Box("pen", 0, 0, 10, 10)]
    assert ds.class_names == ["pen", "cup"]
    ds.set_boxes(e.id, [])
    assert ds.image(e.id).boxes == [] and ds.class_names == ["pen", "cup"]


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(*[st.floats(-20, 120, allow_nan=False)] * 4), max_size=4))
def test_every_box_it_keeps_reads_back_exactly_and_through_load_dataset(tmp_path_factory,
                                                                        corners):
    ds = UserDataset.create(tmp_path_factory.mktemp("p"), "p")
    e = ds.add_image(photo(100, 50))
    boxes = []
    for c in corners:
        with contextlib.suppress(ConfigError):  # outside or too thin: refused alone
            ds.set_boxes(e.id, [Box("cup", *c)])
            boxes.append(ds.image(e.id).boxes[0])
    ds.set_boxes(e.id, boxes)
    for b in boxes:
        assert 0 <= b.x1 < b.x2 <= 100 and 0 <= b.y1 < b.y2 <= 50
        assert b.x2 - b.x1 >= 1 and b.y2 - b.y1 >= 1
    assert UserDataset.open(ds.path).images[0].boxes == boxes
    if boxes:
        np.testing.assert_allclose(load_dataset(ds.path).records[0].boxes.numpy(),
                                   [[b.x1, b.y1, b.x2, b.y2] for b in boxes], rtol=1e-6)


@pytest.mark.parametrize("bad, words", [
    (Box("cup", 10, 10, 10, 30), "Box 2 of photo 1 \\('cup'\\).*no area"),
    (Box("cup", 10, 10, 10.5, 30), "narrower than 1 pixel"),
    (Box("cup", 200, 10, 300, 30), "outside the 100x50 image"),
    (Box("cup", -30, 10, -1, 30), "outside"),
    (Box("  ", 1, 1, 20, 20), "Box 2 of photo 1.*class name is empty"),
    (Box("cup", float("nan"), 1, 20, 20), "not a finite number"),
    (Box("cup", "left", 1, 20, 20), "must be numbers"),
    (("cup", 1, 2), "is not a box"),
])
def test_a_bad_box_is_refused_by_name_and_nothing_changes(ds, bad, words):
    e = ds.add_image(photo(100, 50))
    ds.set_boxes(e.id, [Box("pen", 1, 1, 20, 20)])
    before = disk(ds)
    with pytest.raises(ConfigError, match=words):
        ds.set_boxes(e.id, [Box("lamp", 5, 5, 50, 40), bad])
    assert disk(ds) == before and ds.class_names == ["pen"]
    with pytest.raises(ConfigError, match="no photo 7"):
        ds.set_boxes(7, [])


def test_classes_can_be_declared_and_removed_with_their_boxes(filled):
    assert filled.add_class(" lamp ") == "lamp" and filled.add_class("lamp") == "lamp"
    assert filled.counts() == {"cup": 1, "pen": 2, "lamp": 0}
    filled.remove_class("pen")
    assert filled.class_names == ["cup", "lamp"]
    assert [len(im.boxes) for im in filled.images] == [1, 0]
    with pytest.raises(ConfigError, match="no class 'pen'"):
        filled.remove_class("pen")


# ---------------------------------------------------------------- ready to train?

def test_problems_counts_and_needs_say_what_is_missing(ds):
    assert ds.counts() == {} and ds.needs() == {}
    assert ds.problems() == ["The set has no photos yet: take or upload some."]
    with pytest.raises(ConfigError, match="cannot train yet: The set has no photos"):
        ds.to_dataset()
    e = ds.add_image(photo())
    assert ds.problems() == ["No boxes yet: draw a box around each object on your photos."]
    ds.set_boxes(e.id, [Box("cup", 1, 1, 20, 20)] * 3)
    ds.add_class("pen")
    assert ds.problems() == [
        "The class 'pen' has no boxes: draw at least one, or remove the class."]
    assert ds.counts() == {"cup": 3, "pen": 0}
    assert ds.needs() == {"cup": TARGET_BOXES_PER_CLASS - 3, "pen": TARGET_BOXES_PER_CLASS}
    with pytest.raises(ConfigError, match="'pen' has no boxes"):
        ds.to_dataset()
    ds.remove_class("pen")
    assert ds.problems() == []  # one class is enough (the book's bananas are one)


def test_to_dataset_is_an_annotated_detection_of_the_set(filled):
    data = filled.to_dataset(image_size=32)
    assert len(data) == 2 and data.class_names == ["cup", "pen"]
    x, y = data[0]
    assert x.shape == (3, 32, 32)
    np.testing.assert_allclose(y.numpy(), [[0, 10.25 / 80, 5 / 60, 40 / 80, 50.5 / 60],
                                           [1, 50 / 80, 10 / 60, 79 / 80, 20 / 60]], atol=1e-6)
    assert filled.to_dataset(augment=True).augment is not None


def test_a_snapshot_keeps_the_set_as_it_was(tmp_path, filled):
    snap = filled.snapshot(tmp_path / "run" / "data")
    filled.remove_image(1)
    filled.set_boxes(2, [])
    back = load_dataset(snap)
    assert back.class_names == ["cup", "pen"] and len(back) == 2
    assert [len(back.sample(i)[2]) for i in range(2)] == [2, 1]
    with pytest.raises(ConfigError, match="already exists"):
        filled.snapshot(snap)
    assert sorted(p.name for p in snap.parent.iterdir()) == ["data"]


def test_annotations_json_is_coco_that_load_dataset_reads_back(filled):
    filled.add_image(photo(seed=7))  # a photo without boxes is kept (a negative)
    back = load_dataset(filled.path)
    assert back.fmt == "coco" and back.class_names == filled.class_names
    assert [r.file for r in back.records] == [f"{IMAGES_DIR}/{im.file}" for im in filled.images]
    assert [r.size for r in back.records] == [(im.width, im.height) for im in filled.images]
    for rec, im in zip(back.records, filled.images):
        assert [back.class_names[k] for k in rec.labels.tolist()] == [b.label for b in im.boxes]
        np.testing.assert_allclose(rec.boxes.numpy().reshape(-1, 4),
                                   np.array([[b.x1, b.y1, b.x2, b.y2] for b in im.boxes],
                                            dtype=np.float32).reshape(-1, 4))


# ---------------------------------------------------------------- export and import

@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo", "csv"])
def test_export_then_import_gives_the_same_set(tmp_path, filled, fmt):
    blob = filled.export_zip(fmt)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert all(n.startswith("cups/") for n in zf.namelist())
    with warnings.catch_warnings():
        warnings.simplefilter("error", AnnotationWarning)  # silent: nothing to clip or fix
        back = import_dataset(tmp_path, blob)
    assert back.name == "Imported set" and back.class_names == filled.class_names
    assert [im.boxes for im in back.images] == [im.boxes for im in filled.images]
    for a, b in zip(filled.images, back.images):
        np.testing.assert_array_equal(pixels(filled.path / IMAGES_DIR / a.file),
                                      pixels(back.path / IMAGES_DIR / b.file))
    assert UserDataset.open(back.path).images == back.images


def test_import_a_folder_names_it_after_the_folder_and_scales_big_photos(tmp_path):
    src = tmp_path / "src" / "Desk things"
    (src / "images").mkdir(parents=True)
    (src / "images" / "a.png").write_bytes(encode(Image.new("RGB", (2048, 512)), "PNG"))
    (src / "classes.txt").write_text("lamp\nbook\n", encoding="utf-8")
    (src / "label.csv").write_text(
        "img_name,label,xmin,ymin,xmax,ymax\na.png,0,100,50,500,300\n", encoding="utf-8")
    got = import_dataset(tmp_path, src)
    assert got.name == "Desk things" and got.class_names == ["lamp", "book"]
    assert got.images[0].boxes == [Box("lamp", 50, 25, 250, 150)]
    assert (got.images[0].width, got.images[0].height) == (1024, 256)
    assert got.problems() == [
        "The class 'book' has no boxes: draw at least one, or remove the class."]
    assert import_dataset(tmp_path, src).name == "Desk things (2)"
    upload = io.BytesIO(got.export_zip("yolo"))
    upload.name = "Desk things.zip"  # as Streamlit's UploadedFile has one
    assert import_dataset(tmp_path, upload).name == "Desk things (3)"
    with pytest.raises(ConfigError, match="already exists"):
        import_dataset(tmp_path, src, name="desk THINGS")


def zip_of(entries: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def left_behind(tmp_path) -> list[str]:
    sets = tmp_path / DATASETS_DIR
    return sorted(p.name for p in sets.iterdir() if p.name != ".lock") if sets.exists() else []


@pytest.mark.parametrize("blob, words", [
    (zip_of({"../evil.json": "{}", "a.png": photo()}), "points outside the archive"),
    (b"PK\x03\x04 not really a zip", "not a readable zip"),
    (zip_of({"annotations.json": json.dumps({
        "images": [{"id": 1, "file_name": "a.png"}], "annotations": [],
        "categories": [{"id": 1, "name": "cup"}]}), "a.png": b"\x89PNG broken"}),
     "not a readable image"),
    (zip_of({"label.csv": "img_name,label,xmin,ymin,xmax,ymax\na.png,0,1,1,9,9\n"}),
     "not found"),
])
def test_a_bad_zip_is_refused_and_nothing_is_left(tmp_path, blob, words):
    with pytest.raises(AnnotationError, match=words):
        import_dataset(tmp_path, blob, name="evil")
    assert left_behind(tmp_path) == []


def test_a_zip_with_too_many_files_is_refused(tmp_path):
    blob = zip_of({f"{k}.txt": "" for k in range(MAX_FILES + 1)})
    with pytest.raises(AnnotationError, match="more than the limit"):
        import_dataset(tmp_path, blob)
    assert left_behind(tmp_path) == []


def test_an_import_that_fails_half_way_leaves_nothing(tmp_path, filled, monkeypatch):
    blob = filled.export_zip("coco")
    calls = []

    def second_fails(img, fmt):
        calls.append(fmt)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(img, fmt)

    real = userdata.photos._encode
    monkeypatch.setattr(userdata.photos, "_encode", second_fails)
    with pytest.raises(OSError, match="disk full"):
        import_dataset(tmp_path, blob, name="half")
    assert left_behind(tmp_path) == ["cups"]


def test_export_refuses_an_empty_set_and_an_unknown_format(ds):
    with pytest.raises(ConfigError, match="empty"):
        ds.export_zip("coco")
    with pytest.raises(ConfigError, match="Unknown export format"):
        ds.export_zip("tfrecord")


# ---------------------------------------------------------------- concurrency, rename, delete

def test_two_threads_on_one_set_lose_nothing(tmp_path, ds):
    other = UserDataset.open(ds.path)  # a second session's object on the same folder
    errors = []

    def work(d, label, seed):
        try:
            for k in range(6):
                e = d.add_image(photo(24, 24, seed + k))
                d.set_boxes(e.id, [Box(label, 1, 1, 10 + k, 12)])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(d, lab, s))
               for d, lab, s in ((ds, "cup", 0), (other, "pen", 100))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    again = UserDataset.open(ds.path)
    assert len(again) == 12 and sorted(im.id for im in again.images) == list(range(1, 13))
    assert again.counts() == {"cup": 6, "pen": 6} or again.counts() == {"pen": 6, "cup": 6}
    assert len(files(again)) == 12 and ds.images == again.images == other.images
    assert len(load_dataset(ds.path)) == 12


def test_another_process_holding_the_lock_makes_a_writer_wait(ds):
    ds.add_image(photo())
    holder = subprocess.Popen(  # holds the set's flock until its stdin closes
        [sys.executable, "-c", "import fcntl, os, sys; "
         "fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
         "print('held', flush=True); sys.stdin.read()", str(ds.path / userdata.LOCK)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        writer = threading.Thread(target=ds.set_boxes, args=(1, [Box("cup", 1, 1, 20, 20)]))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive() and UserDataset.open(ds.path).counts() == {}
    finally:
        holder.stdin.close()
        holder.wait(10)
    writer.join(10)
    assert UserDataset.open(ds.path).counts() == {"cup": 1}


def test_export_holds_the_lock_without_waiting_on_itself(filled):
    done = []
    writer = threading.Thread(target=lambda: done.append(filled.add_image(photo(seed=5))))
    with userdata.state._locked(filled.path):  # nested: export_zip takes it again in this thread
        writer.start()
        blob = filled.export_zip("coco")
        assert done == []  # the other thread waits for the lock
    writer.join(10)
    assert len(done) == 1 and len(filled) == 3
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".png")]) == 2


def test_rename_keeps_the_folder_and_delete_removes_everything(tmp_path, filled):
    path = filled.path
    filled.rename("  Coffee   cups ")
    assert (filled.name, filled.path, UserDataset.open(path).name) == (
        "Coffee cups", path, "Coffee cups")
    stale = UserDataset.open(path)
    filled.delete()
    assert not path.exists() and list_datasets(tmp_path) == [] and left_behind(tmp_path) == []
    with pytest.raises(ConfigError, match="deleted"):
        filled.add_image(photo())
    with pytest.raises(ConfigError, match="gone"):
        stale.set_boxes(1, [])
