"""Property tests with hostile annotation files for every reader (COCO, VOC, YOLO, CSV), by
folder, format detection and zip upload. Each file loads as a dataset that keeps its contract
(``tests.helpers.check_dataset``) or is refused with an ``AnnotationError``, never another
exception or a hang; the fuzzers check that both outcomes occur, and that loaded datasets with
boxes are among them. Hypothesis runs derandomized, so CI sees the same examples every time.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ssd_core.data import load_dataset
from ssd_core.errors import AnnotationError
from tests.helpers import (
    FUZZ,
    IMAGES,
    assert_both_outcomes,
    check_dataset,
    note,
    watchdog,
    write_file,
    write_images,
)

# Pillow warns (corrupt EXIF, skipped TIFF tags) on the mutated files it still decodes.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

FILE_NAMES = st.sampled_from(["a.png", "b.jpg", "a.png", "b.jpg", "c.png", "", "../a.png",
                              "/etc/passwd", "A.PNG", "a.png\x00", "images/a.png"])


# Numbers as they appear in annotation files: ordinary, edge, huge and not-a-number.
finite_coords = st.one_of(st.integers(-3, 24), st.floats(-3, 24, allow_nan=False))
odd_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e-300, 1e-9, 1e15, 1e308, 2**63, 10**400, 1 - 1e-16]))
json_numbers = st.one_of(finite_coords, finite_coords, finite_coords, odd_numbers)
tokens = st.one_of(
    finite_coords.map(str), st.floats(0, 1).map(repr), odd_numbers.map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e15", "1e400", "0x10", "", "abc", "\u0661\u0662",
                     "1_0", " 5 ", "0.5", "1", "0", "2", "-1", "1.0", "1.5", "1e3", "None"]),
    st.text(max_size=5))


def _text_payload():
    """Arbitrary text, or bytes that are not UTF-8."""
    return st.one_of(st.text(max_size=40), st.binary(max_size=40))


json_scalars = st.one_of(st.none(), st.booleans(), json_numbers, st.text(max_size=4))
json_ids = st.one_of(st.integers(0, 3), st.integers(0, 3), json_scalars,
                     st.lists(st.integers(0, 3), max_size=2),
                     st.dictionaries(st.text(max_size=2), st.integers(0, 3), max_size=1))
coco_image = st.fixed_dictionaries(
    {"id": json_ids, "file_name": st.one_of(FILE_NAMES, json_scalars)},
    optional={"width": st.one_of(st.sampled_from([20, 16, 0, "20"]), json_numbers),
              "height": st.one_of(st.sampled_from([10, 12, -1]), json_numbers)})
coco_ann = st.fixed_dictionaries(
    {"image_id": json_ids, "category_id": json_ids,
     "bbox": st.one_of(st.lists(json_numbers, min_size=4, max_size=4),
                       st.lists(json_numbers, max_size=5), json_scalars)},
    optional={"id": json_ids, "iscrowd": json_scalars})
coco_cat = st.fixed_dictionaries({"id": json_ids, "name": st.one_of(st.text(max_size=3),
                                                                   json_scalars)})
json_any = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3)
                        | st.dictionaries(st.text(max_size=3), c, max_size=3), max_leaves=10)


def rarely(common, rare, one_in=15):
    return st.integers(0, one_in - 1).flatmap(lambda k: rare if k == 0 else common)


# Near-valid coordinates: inside, a little outside, zero-size and sub-float32-precision boxes.
pixel = rarely(st.floats(-1.5, 20), st.sampled_from([0, 20, 1e-7, 19.9999999, -2.5]))
side = rarely(st.one_of(st.floats(0.5, 10), st.integers(1, 10)),
              st.sampled_from([0, 1e-7, 1e-300, -1, 30]))
corners = st.tuples(pixel, pixel, side, side).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])
unit = rarely(st.floats(0.05, 0.95), st.sampled_from([0.0, 1.0, -0.05, 1.05]))
unit_side = rarely(st.floats(0.01, 0.5), st.sampled_from([0.0, 1e-9, 1.0, 1.2]))


def _picker(draw):
    """``pick(valid, hostile)``: in a near-valid file (half of them) a field is valid 39 times in
    40; otherwise either kind. Near-valid files reach the deep checks, hostile ones the parsers."""
    near = draw(st.booleans())

    def pick(valid, hostile):
        if near and draw(st.integers(0, 39)):
            return draw(valid)
        return draw(st.one_of(valid, hostile))

    return near, pick


@st.composite
def coco_files(draw):
    near, pick = _picker(draw)
    names = draw(st.lists(st.sampled_from(["cat", "dog", "bird", "cat "]), min_size=1,
                          max_size=3, unique=True))
    cat_ids = draw(st.lists(st.integers(0, 9), min_size=len(names), max_size=len(names),
                            unique=True))
    cats = [{"id": pick(st.just(i), json_ids), "name": pick(st.just(n), json_scalars)}
            for i, n in zip(cat_ids, names)]
    images = []
    for k, f in enumerate(draw(st.lists(st.sampled_from(list(IMAGES)), min_size=1, max_size=2,
                                        unique=True))):
        im = {"id": pick(st.just(k + 1), json_ids), "file_name": pick(st.just(f), FILE_NAMES)}
        if draw(st.booleans()):
            im["width"] = pick(st.just(IMAGES[f][0]), json_numbers)
            im["height"] = pick(st.just(IMAGES[f][1]), json_numbers)
        images.append(im)
    ids = [im["id"] for im in images]
    anns = [{"id": j, "image_id": pick(st.sampled_from(ids), json_ids),
             "category_id": pick(st.sampled_from(cat_ids), json_ids),
             "bbox": pick(st.tuples(pixel, pixel, side, side).map(list),
                          st.one_of(st.lists(json_numbers, max_size=5), json_scalars))}
            for j in range(draw(st.integers(0, 5)))]
    doc = {"images": images, "annotations": anns, "categories": cats}
    if not near:
        doc = draw(st.one_of(
            st.just(doc),
            st.fixed_dictionaries({"images": st.lists(coco_image, max_size=3),
                                   "annotations": st.lists(coco_ann, max_size=5),
                                   "categories": st.lists(coco_cat, max_size=3)}),
            st.fixed_dictionaries({"images": json_any, "annotations": json_any,
                                   "categories": json_any}),
            json_any))
    text = json.dumps(doc, allow_nan=True)
    if not near and draw(st.booleans()):
        text = text[:draw(st.integers(0, len(text)))]
    if not near and draw(st.integers(0, 3)) == 0:
        text = draw(st.sampled_from(["[" * 50_000 + "]" * 50_000, "[" + "9" * 5000 + "]",
                                     "\ufeff{}", "\x00", '{"images": [], "annotations": [], '
                                     '"categories": [{"id": 1, "name": "x"}]}']))
    return {"instances.json": text}


@st.composite
def voc_files(draw):
    near, pick = _picker(draw)
    files = {}
    stems = ["a", "b"] if near else ["a", "b", "c"]
    for stem in draw(st.lists(st.sampled_from(stems), min_size=1, max_size=3, unique=True)):
        own = f"{stem}.png" if stem != "b" else "b.jpg"
        fname = pick(st.sampled_from([own, None]), FILE_NAMES)
        head = "" if fname is None else f"<filename>{escape(fname)}</filename>"
        if draw(st.booleans()):
            w, h = IMAGES.get(own, (1, 1))
            head += (f"<size><width>{escape(pick(st.just(str(w)), tokens))}</width>"
                     f"<height>{escape(pick(st.just(str(h)), tokens))}</height></size>")
        body = ""
        for _ in range(draw(st.integers(0, 3))):
            name = escape(pick(st.sampled_from(["cat", "dog", " cat "]),
                               st.one_of(st.just(""), st.text(max_size=4))))
            # VOC counts pixels from 1: corners (x1, x2) are written as (x1 + 1, x2).
            x1, y1, x2, y2 = draw(corners)
            tags = "".join(f"<{t}>{escape(pick(st.just(repr(v)), tokens))}</{t}>"
                           for t, v in zip(("xmin", "ymin", "xmax", "ymax"),
                                           (x1 + 1, y1 + 1, x2, y2))
                           if pick(st.just(True), st.booleans()))
            box = pick(st.just(f"<bndbox>{tags}</bndbox>"), st.just(""))
            body += f"<object><name>{name}</name>{box}</object>"
        doc = f"<annotation>{head}{body}</annotation>"
        enc = pick(st.sampled_from([None, "utf-8"]),
                   st.sampled_from(["UTF-16", "latin-1", "shift_jis", "cp500", "nonsense"]))
        if not near and draw(st.integers(0, 3)) == 0:
            doc = '<!DOCTYPE a [<!ENTITY e "cat">]>' + doc.replace("cat", "&e;")
        if enc is not None:
            doc = f'<?xml version="1.0" encoding="{enc}"?>' + doc
        data = doc.encode("utf-16" if enc == "UTF-16" else "utf-8", errors="surrogatepass")
        if not near and draw(st.booleans()):
            data = data[:draw(st.integers(0, len(data)))]
        files[f"Annotations/{stem}.xml"] = data
    if draw(st.booleans()):
        files["classes.txt"] = pick(st.sampled_from(["cat\ndog\n", "dog\ncat\nbird\n"]),
                                    st.one_of(st.sampled_from(["cat\ncat\n", ""]),
                                              _text_payload()))
    return files


@st.composite
def yolo_files(draw):
    near, pick = _picker(draw)

    def line():
        if pick(st.just(True), st.booleans()):
            return " ".join([pick(st.sampled_from(["0", "1", "2"]), tokens),
                             pick(unit.map(repr), tokens), pick(unit.map(repr), tokens),
                             pick(unit_side.map(repr), tokens), pick(unit_side.map(repr), tokens)])
        return " ".join(draw(st.lists(tokens, max_size=7)))

    files = {}
    stems = ["a", "b"] if near else ["a", "b", "c"]
    for stem in draw(st.lists(st.sampled_from(stems), max_size=3, unique=True)):
        files[f"{stem}.txt"] = pick(st.just(None), _text_payload()) or "\n".join(
            line() for _ in range(draw(st.integers(0, 4))))
    extra = draw(st.sampled_from(["", "classes", "yaml"]))
    if extra == "classes":
        files["classes.txt"] = pick(st.sampled_from(["x\ny\nz\n", "x\ny\n"]),
                                    st.one_of(st.sampled_from(["x\nx\n", "\n"]), _text_payload()))
    elif extra == "yaml":
        files["data.yaml"] = pick(
            st.sampled_from(["names: [x, y, z]\n", "names:\n  0: x\n  1: y\n  2: z\n",
                             "names:\n  - x\n  - y\n  - z\n"]),
            st.one_of(st.sampled_from(["names: [x, x]\n", "names: []\n"]), _text_payload()))
    return files


@st.composite
def csv_files(draw):
    near, pick = _picker(draw)
    header = pick(st.sampled_from(["img_name,label,xmin,ymin,xmax,ymax",
                                   "IMG_NAME, Label,xmin,ymin,xmax,ymax"]), st.text(max_size=20))
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        if pick(st.just(True), st.booleans()):
            cells = [pick(st.sampled_from(list(IMAGES)), FILE_NAMES),
                     pick(st.sampled_from(["0", "1"]), tokens)]
            cells += [pick(st.just(repr(v)), tokens) for v in draw(corners)]
        else:
            cells = draw(st.lists(tokens, max_size=8))
        rows.append(",".join(c.replace("\n", " ").replace("\r", " ") for c in cells))
    files = {"label.csv": "\n".join([header] + rows) + "\n"}
    if not near and draw(st.integers(0, 5)) == 0:
        files["label.csv"] = draw(_text_payload())
    if draw(st.integers(0, 3)) == 0:
        files["classes.txt"] = pick(st.sampled_from(["banana\nother\n"]),
                                    st.one_of(st.sampled_from(["a\na\n"]), _text_payload()))
    return files

def load_or_refuse(files: dict, fmt: str | None, zipped: bool = False):
    """Write the annotation ``files`` next to the real images and load them."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        root.mkdir()
        write_images(root)
        if any(rel.startswith("Annotations/") for rel in files):
            (root / "JPEGImages").mkdir()
            write_images(root / "JPEGImages")  # where VOC keeps its images
        for rel, content in files.items():
            write_file(root / rel, content)
        source = root
        if zipped:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                for p in sorted(root.rglob("*")):
                    if p.is_file():
                        zf.write(p, f"upload/{p.relative_to(root).as_posix()}")
            source = buf.getvalue()
        try:
            with watchdog(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = load_dataset(source, fmt=fmt, image_size=32)
                check_dataset(ds)
        except AnnotationError as e:
            assert str(e)
            note("refused")
            return None
        note("loaded, with boxes" if any(len(r.labels) for r in ds.records)
             else "loaded, no boxes")
        return ds


# Each fuzzer has an explicit valid file with boxes among its examples: whatever Hypothesis
# draws, a correct reader loads it, so assert_both_outcomes sees a reader that refuses all.
VALID = {
    "coco": {"instances.json": json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 24, "height": 20}],
        "annotations": [{"image_id": 1, "category_id": 3, "bbox": [2, 3, 8, 5]}],
        "categories": [{"id": 3, "name": "cat"}]})},
    "csv": {"label.csv": "img_name,label,xmin,ymin,xmax,ymax\na.png,0,1,1,5,5\n"
                         "b.jpg,0,0,0,16,12\n"},
}


@FUZZ
@given(coco_files())
@example(VALID["coco"])
@example({"instances.json": json.dumps({
    "images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10}],
    "annotations": [{"image_id": 1, "category_id": 7, "bbox": [-1, 2, 5, 5]}],
    "categories": [{"id": 7, "name": "x"}]})})
def fuzz_coco(files):
    load_or_refuse(files, "coco")


@FUZZ
@given(voc_files())
@example({"Annotations/a.xml": b"<annotation><filename>a.png</filename><object><name>x</name>"
          b"<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>21</xmax><ymax>5</ymax></bndbox>"
          b"</object></annotation>"})
def fuzz_voc(files):
    load_or_refuse(files, "voc")


@FUZZ
@given(yolo_files())
@example({"a.txt": "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 1.1 0.2", "b.txt": ""})
def fuzz_yolo(files):
    load_or_refuse(files, "yolo")


@FUZZ
@given(csv_files())
@example(VALID["csv"])
def fuzz_csv(files):
    load_or_refuse(files, "csv")


@settings(FUZZ, max_examples=50)
@given(st.one_of(coco_files(), voc_files(), yolo_files(), csv_files()), st.booleans())
@example(VALID["coco"], False)
@example(VALID["csv"], True)
def fuzz_detect_format_and_zip(files, zipped):
    """The same annotations through format detection and, half the time, a zip upload."""
    load_or_refuse(files, None, zipped)


# A reader that refused every file (or accepted every one) would pass each case above: each
# test also checks that files were refused and that datasets with boxes were loaded (the valid
# examples; the generated files add more of both).
def test_coco_reader():
    assert_both_outcomes(fuzz_coco, "loaded, with boxes")


def test_voc_reader():
    assert_both_outcomes(fuzz_voc, "loaded, with boxes")


def test_yolo_reader():
    assert_both_outcomes(fuzz_yolo, "loaded, with boxes")


def test_csv_reader():
    assert_both_outcomes(fuzz_csv, "loaded, with boxes")


def test_readers_detect_format_and_zip():
    assert_both_outcomes(fuzz_detect_format_and_zip, "loaded, with boxes")
