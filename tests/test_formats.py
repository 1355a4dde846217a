"""COCO / VOC / YOLO / CSV: round trips from folders and zips, and every bad-annotation case."""

import io
import json
import shutil
import stat
import warnings
import zipfile

import pytest
import torch
from PIL import Image

from ssd_core.data import (
    FORMATS,
    AnnotationWarning,
    SyntheticDetection,
    detection_collate,
    export_dataset,
    extract_zip,
    load_dataset,
)
from ssd_core.errors import AnnotationError, ConfigError


@pytest.fixture(scope="module")
def synth():
    return SyntheticDetection(6, seed=11, image_size=64)


@pytest.fixture(scope="module")
def exported(synth, tmp_path_factory):
    """fmt -> folder holding the synthetic set exported in that format."""
    out = {}
    for fmt in FORMATS:
        out[fmt] = export_dataset(synth, tmp_path_factory.mktemp(fmt), fmt)
    return out


def copy_of(exported, fmt, tmp_path):
    dst = tmp_path / fmt
    shutil.copytree(exported[fmt], dst)
    return dst


def zip_folder(folder, wrap="data"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{wrap}/{p.relative_to(folder).as_posix()}")
    return buf.getvalue()


def assert_same(ds, synth):
    assert ds.class_names == synth.class_names
    assert len(ds) == len(synth)
    for i in range(len(synth)):
        img, boxes, labels = ds.sample(i)
        s_img, s_boxes, s_labels = synth.sample(i)
        assert img.tobytes() == s_img.tobytes()
        assert torch.allclose(boxes, s_boxes, atol=1e-3), (boxes, s_boxes)
        assert torch.equal(labels, s_labels)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_folder_and_zip(fmt, exported, synth, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean export reads back without any warning
        from_folder = load_dataset(exported[fmt])
        assert from_folder.fmt == fmt  # detected
        assert_same(from_folder, synth)
        data = zip_folder(exported[fmt])
        assert_same(load_dataset(data), synth)  # bytes, wrapped in a folder
        p = tmp_path / "upload.zip"
        p.write_bytes(data)
        assert_same(load_dataset(p, fmt=fmt, image_size=64), synth)
        with open(p, "rb") as f:
            assert_same(load_dataset(f), synth)


def test_loaded_dataset_feeds_the_same_items(exported, synth):
    ds = load_dataset(exported["coco"], image_size=64)
    for i in range(3):
        a, b = ds[i], synth[i]
        assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1], atol=1e-5)
    images, targets = detection_collate([ds[i] for i in range(len(ds))])
    assert images.shape == (len(ds), 3, 64, 64) and targets.shape[2] == 5


def test_coco_official_layout(exported, synth, tmp_path):
    d = copy_of(exported, "coco", tmp_path)
    (d / "annotations").mkdir()
    shutil.move(d / "annotations.json", d / "annotations" / "instances_val2017.json")
    shutil.move(d / "images", d / "val2017")
    assert_same(load_dataset(d), synth)


def test_book_banana_csv_without_class_list(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(2):
        Image.new("RGB", (256, 256), (i * 50, 0, 0)).save(tmp_path / "images" / f"{i}.png")
    (tmp_path / "label.csv").write_text(
        "img_name,label,xmin,ymin,xmax,ymax\n0.png,0,104,20,143,58\n1.png,0,68,175,118,223\n")
    ds = load_dataset(tmp_path)
    assert ds.fmt == "csv" and ds.class_names == ["banana"]
    assert ds.sample(1)[1].tolist() == [[68, 175, 118, 223]]
    _, target = ds[0]
    assert torch.allclose(target, torch.tensor([[0, 104 / 256, 20 / 256, 143 / 256, 58 / 256]]))


def test_yolo_background_image_and_yaml_names(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (40, 20)).save(tmp_path / "images" / f"{name}.jpg")
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (tmp_path / "data.yaml").write_text("path: .\nnames:\n  0: cat\n  1: dog\n")
    ds = load_dataset(tmp_path)
    assert ds.class_names == ["cat", "dog"]
    assert ds.sample(0)[1].tolist() == [[10, 5, 30, 15]] and ds.sample(0)[2].tolist() == [1]
    assert ds.sample(1)[1].shape == (0, 4)  # an image with no label file has no objects


# -- bad annotations: one clear error naming the file and the row -------------------------------

def edit(path, old, new, count=1):
    text = path.read_text()
    assert old in text, (old, text[:300])
    path.write_text(text.replace(old, new, count))


def bad(folder, *words, fmt=None):
    with pytest.raises(AnnotationError) as info:
        load_dataset(folder, fmt=fmt)
    msg = str(info.value)
    for w in words:
        assert w in msg, msg
    return msg


def csv_rows(folder):
    return (folder / "label.csv").read_text().splitlines()


def set_csv_row(folder, n, row):
    """Replace data row n (1-based line number n, header is line 1)."""
    rows = csv_rows(folder)
    rows[n - 1] = row
    (folder / "label.csv").write_text("\n".join(rows) + "\n")


def test_csv_errors(exported, tmp_path):
    d = copy_of(exported, "csv", tmp_path)
    good = csv_rows(d)[2]
    set_csv_row(d, 3, "000000.png,0,50,10,40,30")
    bad(d, "label.csv, row 3", "x2 (40) <= x1 (50)")
    set_csv_row(d, 3, "000000.png,0,10,30,40,30")
    bad(d, "label.csv, row 3", "y2 (30) <= y1 (30)")
    set_csv_row(d, 3, "000000.png,7,10,10,40,30")
    bad(d, "label.csv, row 3", "unknown class id 7")
    set_csv_row(d, 3, "missing.png,0,10,10,40,30")
    bad(d, "label.csv, row 3", "'missing.png' not found")
    set_csv_row(d, 3, "000000.png,0,10,abc,40,30")
    bad(d, "label.csv, row 3", "ymin = 'abc' is not a number")
    set_csv_row(d, 3, "000000.png,0,10,10,40")
    bad(d, "label.csv, row 3", "expected 6 columns")
    set_csv_row(d, 3, "000000.png,0,100,10,140,30")  # 64x64 image
    bad(d, "label.csv, row 3", "entirely outside")
    set_csv_row(d, 3, "000000.png,0,10,10,400,30")
    bad(d, "label.csv, row 3", "far outside")
    set_csv_row(d, 3, good)
    set_csv_row(d, 1, "name,label,x1,y1,x2,y2")
    bad(d, "label.csv, row 1", "header")


def test_clipping_warns_with_count(exported, tmp_path):
    d = copy_of(exported, "csv", tmp_path)
    set_csv_row(d, 2, "000000.png,0,-2,10,40,30")
    set_csv_row(d, 4, "000001.png,1,10,10,40,66")
    with pytest.warns(AnnotationWarning, match=r"2 box\(es\).*clipped.*label.csv, row 2"):
        ds = load_dataset(d)
    rows = {(f, tuple(b)) for f, b in [(r.file, b) for r in ds.records for b in r.boxes.tolist()]}
    assert ("images/000000.png", (0.0, 10.0, 40.0, 30.0)) in rows
    assert ("images/000001.png", (10.0, 10.0, 40.0, 64.0)) in rows
    # nothing dropped: every row of the file is still there
    assert sum(len(r.labels) for r in ds.records) == len(csv_rows(d)) - 1


def coco_edit(folder, fn):
    p = folder / "annotations.json"
    data = json.loads(p.read_text())
    fn(data)
    p.write_text(json.dumps(data))


def test_coco_errors(exported, tmp_path):
    d = copy_of(exported, "coco", tmp_path)
    orig = (d / "annotations.json").read_text()

    def ann(k, **kv):
        return lambda data: data["annotations"][k].update(kv)

    coco_edit(d, ann(1, category_id=99))
    bad(d, "annotations.json, annotations[1] (id 2)", "unknown category_id 99")
    (d / "annotations.json").write_text(orig)
    coco_edit(d, ann(2, bbox=[5, 5, 0, 10]))
    bad(d, "annotations[2]", "x2 (5) <= x1 (5)")
    (d / "annotations.json").write_text(orig)
    coco_edit(d, ann(0, bbox=[5, 5, 10]))
    bad(d, "annotations[0]", "'bbox' must be [x, y, width, height]")
    (d / "annotations.json").write_text(orig)
    coco_edit(d, ann(0, image_id=1234))
    bad(d, "annotations[0]", "image_id 1234")
    (d / "annotations.json").write_text(orig)
    coco_edit(d, lambda data: data["images"][3].update(file_name="gone.png"))
    bad(d, "annotations.json, images[3]", "'gone.png' not found")
    (d / "annotations.json").write_text(orig)
    coco_edit(d, lambda data: data["images"][0].update(width=100))
    bad(d, "images[0]", "declared size 100x64")
    (d / "annotations.json").write_text(orig[:-20])
    bad(d, "annotations.json: not valid JSON", "line 1")


def test_voc_errors(exported, tmp_path):
    d = copy_of(exported, "voc", tmp_path)
    xml = d / "Annotations" / "000002.xml"
    orig = xml.read_text()
    edit(xml, "<name>", "<name>zebra", 1)
    name = bad(d, "Annotations/000002.xml, object 1", "unknown class")
    assert "zebra" in name
    xml.write_text(orig)
    edit(xml, "<xmin>", "<xmin>9", 1)  # xmin becomes 9xx > xmax
    bad(d, "Annotations/000002.xml, object 1", "x2", "<= x1")
    xml.write_text(orig)
    edit(xml, "</annotation>", "")
    bad(d, "Annotations/000002.xml: malformed XML", "line")
    xml.write_text(orig)
    edit(xml, "<filename>000002.png", "<filename>nope.png")
    bad(d, "Annotations/000002.xml", "'nope.png' not found")
    xml.write_text(orig)
    edit(xml, "<ymax>", "<ymax>x")
    bad(d, "Annotations/000002.xml, object 1", "ymax = 'x")


def test_yolo_errors(exported, tmp_path):
    d = copy_of(exported, "yolo", tmp_path)
    lab = d / "labels" / "000001.txt"
    orig = lab.read_text()
    lab.write_text(orig + "5 0.5 0.5 0.1 0.1\n")
    line = len(orig.splitlines()) + 1
    bad(d, f"labels/000001.txt, line {line}", "unknown class id 5")
    lab.write_text(orig + "0 0.5 0.5 0.1\n")
    bad(d, f"labels/000001.txt, line {line}", "expected 5 numbers")
    lab.write_text(orig + "0 0.5 0.5 -0.1 0.2\n")
    bad(d, f"labels/000001.txt, line {line}", "<= x1")
    lab.write_text(orig + "1.5 0.5 0.5 0.1 0.1\n")
    bad(d, f"labels/000001.txt, line {line}", "not a non-negative integer")
    lab.write_text(orig)
    (d / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    bad(d, "labels/orphan.txt", "missing image file")
    (d / "labels" / "orphan.txt").unlink()
    lab.write_text(orig + "0 0.99 0.5 0.04 0.1\n")
    with pytest.warns(AnnotationWarning, match=r"1 box\(es\)"):
        load_dataset(d)


class Boxes:
    """A dataset of blank images with the given boxes of class "a" (for export_dataset)."""

    class_names = ["a"]

    def __init__(self, items):
        self.items = items  # [((w, h), [[x1, y1, x2, y2], ...]), ...]

    def __len__(self):
        return len(self.items)

    def sample(self, i):
        (w, h), boxes = self.items[i]
        return (Image.new("RGB", (w, h)), torch.tensor(boxes, dtype=torch.float32),
                torch.zeros(len(boxes), dtype=torch.int64))


def test_yolo_round_trip_is_exact_and_silent(tmp_path):
    """Boxes on the border and at odd float32 corners come back as the same float32 numbers,
    with no 'clipped' warning (8 fixed decimals put border boxes ~1e-8 past it)."""
    g = torch.Generator().manual_seed(0)
    items = []
    for k in range(40):
        w, h = 37 + 29 * k, 1000 - 23 * k
        a = torch.rand(2, generator=g).tolist()
        items.append(((w, h), [[a[0] * (w - 2), a[1] * (h - 2), float(w), float(h)],
                               [0.0, 0.0, 1 + a[1] * (w - 1), 1 + a[0] * (h - 1)],
                               [10.123, 3.5, 11.25, 7.001]]))
    ds = Boxes(items)
    export_dataset(ds, tmp_path, "yolo")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = load_dataset(tmp_path)
    for i in range(len(ds)):
        assert torch.equal(back.sample(i)[1], ds.sample(i)[1]), i


def test_yolo_float_noise_past_the_border_is_the_border(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (640, 480)).save(tmp_path / "images" / "a.png")
    (tmp_path / "classes.txt").write_text("a\n")
    # another program's 6 decimals: the box's right edge lands 3e-4 px past 640
    (tmp_path / "labels" / "a.txt").write_text("0 0.843750 0.500000 0.312501 0.500000\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        box = load_dataset(tmp_path).sample(0)[1]
    assert box[0, 2].item() == 640.0
    # a real overshoot is still clipped and reported
    (tmp_path / "labels" / "a.txt").write_text("0 0.85 0.5 0.31 0.5\n")
    with pytest.warns(AnnotationWarning, match=r"1 box\(es\).*clipped"):
        assert load_dataset(tmp_path).sample(0)[1][0, 2].item() == 640.0


def test_detection_errors(tmp_path):
    bad(tmp_path, "No annotations found")
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.csv").write_text("")
    bad(tmp_path, "several formats", "coco", "csv")
    with pytest.raises(AnnotationError, match="not found"):
        load_dataset(tmp_path / "nothing.zip")
    with pytest.raises(AnnotationError, match="Unknown dataset format"):
        load_dataset(tmp_path, fmt="kitti")
    with pytest.raises(ConfigError):
        export_dataset(SyntheticDetection(1), tmp_path / "x", "kitti")


# -- zip safety ---------------------------------------------------------------------------------

def make_zip(members):
    """members: list of (ZipInfo or name, bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in members:
            zf.writestr(info, data)
    return buf.getvalue()


@pytest.mark.parametrize("name,word", [("../evil.txt", "outside"), ("/etc/evil", "absolute"),
                                       ("a/../../evil", "outside")])
def test_zip_refuses_traversal(name, word, tmp_path):
    with pytest.raises(AnnotationError, match=word):
        load_dataset(make_zip([("ok.txt", b"x"), (name, b"x")]))
    assert not (tmp_path.parent / "evil.txt").exists()


def test_zip_refuses_symlinks_bombs_and_junk(tmp_path):
    link = zipfile.ZipInfo("images/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(AnnotationError, match="symbolic link"):
        load_dataset(make_zip([(link, b"/etc/passwd")]))
    bomb = make_zip([("zeros.bin", b"\0" * (4 << 20))])
    with pytest.raises(AnnotationError, match="zip bomb"):
        extract_zip(bomb, tmp_path / "a")
    with pytest.raises(AnnotationError, match="zip bomb"):
        extract_zip(make_zip([("a.txt", b"x" * 5000)]), tmp_path / "b", max_total_bytes=1000)
    many = make_zip([(f"f{i}.txt", b"") for i in range(30)])
    with pytest.raises(AnnotationError, match="30 entries"):
        extract_zip(many, tmp_path / "c", max_files=20)
    with pytest.raises(AnnotationError, match="not a readable zip"):
        load_dataset(b"PK\x03\x04 not really a zip")
