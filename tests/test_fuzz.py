"""Property tests with hostile inputs: image decoding, annotation readers, anchor labeling and
detection. Every input either gives a valid result or one of the documented errors (``ssd_core.
errors``), never another exception, NaN or a hang. Hypothesis runs derandomized, so CI sees the
same examples every time; each test keeps to a few seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import signal
import tempfile
import warnings
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.extra import numpy as hnp
from PIL import Image

from ssd_core.data import load_dataset
from ssd_core.data.archive import extract_zip
from ssd_core.detection import multibox_detection
from ssd_core.errors import AnnotationError, InvalidImageError
from ssd_core.images import load_image
from ssd_core.matching import match_anchors, multibox_target
from tests.reference import ref_multibox_detection, ref_multibox_target

# Pillow warns (corrupt EXIF, skipped TIFF tags) on the mutated files it still decodes.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so no ``except Exception`` can swallow it."""


@contextlib.contextmanager
def watchdog(seconds: float = 30.0):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""

    def fire(signum, frame):
        raise Hang(f"still running after {seconds} s: a hang on hostile input")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def note(outcome: str) -> None:
    """Count outcomes (pytest --hypothesis-show-statistics): both kinds must be common."""
    if currently_in_test_context():
        event(outcome)


# ============================================================================ images


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _seed_images() -> list[tuple[str, bytes]]:
    """Small valid files of every accepted format and several modes, to be mutated."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), "RGB")
    rgba = Image.fromarray(rng.integers(0, 256, (5, 7, 4), dtype=np.uint8), "RGBA")
    gray = rgb.convert("L")
    pal = rgb.convert("P")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: load_image transposes it
    frames = [pal, pal.transpose(Image.FLIP_LEFT_RIGHT)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    seeds = [
        ("png-rgb", _encode(rgb, "PNG")), ("png-rgba", _encode(rgba, "PNG")),
        ("png-p-transparency", _encode(pal, "PNG", transparency=0)),
        ("png-16bit", _encode(Image.fromarray(
            rng.integers(0, 65536, (5, 7), dtype=np.uint16)), "PNG")),
        ("png-1bit", _encode(gray.convert("1"), "PNG")), ("png-la", _encode(rgba.convert("LA"),
                                                                         "PNG")),
        ("jpeg-rgb", _encode(rgb, "JPEG")), ("jpeg-gray", _encode(gray, "JPEG")),
        ("jpeg-cmyk", _encode(rgb.convert("CMYK"), "JPEG")),
        ("jpeg-exif-rot", _encode(rgb, "JPEG", exif=exif.tobytes())),
        ("jpeg-progressive", _encode(rgb, "JPEG", progressive=True)),
        ("gif-animated", gif.getvalue()), ("gif", _encode(pal, "GIF")),
        ("bmp-rgb", _encode(rgb, "BMP")), ("bmp-p", _encode(pal, "BMP")),
        ("tiff-rgb", _encode(rgb, "TIFF")), ("tiff-deflate", _encode(rgb, "TIFF",
                                                                     compression="tiff_deflate")),
        ("tiff-cmyk", _encode(rgb.convert("CMYK"), "TIFF")),
        ("tiff-float", _encode(Image.fromarray(rng.random((5, 7), dtype=np.float32)), "TIFF")),
        ("tiff-lab", _encode(rgb.convert("LAB"), "TIFF")),
        ("webp-rgb", _encode(rgb, "WEBP")), ("webp-rgba", _encode(rgba, "WEBP", lossless=True)),
        ("ppm", _encode(rgb, "PPM")), ("pgm", _encode(gray, "PPM")),
        ("ico", _encode(rgba, "ICO")), ("tga", _encode(rgb, "TGA")),
    ]
    return seeds


SEED_IMAGES = _seed_images()
OPS = ("flip", "truncate", "insert", "duplicate", "big-number", "delete")


@st.composite
def mutated_images(draw):
    """A valid seed file with up to four byte-level mutations (bit flips, cuts, insertions,
    header fields overwritten with huge numbers)."""
    name, data = draw(st.sampled_from(SEED_IMAGES))
    data = bytearray(data)
    ops = draw(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 1 << 16),
                                  st.integers(0, 255)), min_size=1, max_size=4))
    for op, pos, val in ops:
        if not data:
            break
        # Most format headers sit in the first bytes: aim half the mutations there.
        p = (pos % min(len(data), 64)) if pos % 2 else pos % len(data)
        if op == "flip":
            data[p] ^= val or 0x80
        elif op == "truncate":
            del data[p:]
        elif op == "insert":
            data[p:p] = bytes([val]) * (1 + val % 9)
        elif op == "duplicate":
            data[p:p] = data[p:p + 1 + val % 32]
        elif op == "big-number":
            data[p:p + 4] = b"\x7f\xff\xff\xff" if val % 2 else b"\x00\x00\xff\xff"
        else:
            del data[p:p + 1 + val % 16]
    return name, bytes(data), [op for op, _, _ in ops]


def assert_loaded_or_refused(source, expected_size=None):
    """load_image(source) is an RGB image of >= 1x1 pixels, or InvalidImageError."""
    try:
        with watchdog():
            img = load_image(source)
    except InvalidImageError as e:
        assert str(e), "the error must carry a message for the user"
        note("refused")
        return None
    note("loaded")
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    assert img.width >= 1 and img.height >= 1
    assert len(img.tobytes()) == img.width * img.height * 3  # fully decoded, detached
    if expected_size is not None:
        assert img.size == expected_size
    return img


def test_every_seed_image_loads():
    """The seeds themselves are valid (otherwise the mutation tests prove little)."""
    for name, data in SEED_IMAGES:
        img = load_image(data)
        assert img.mode == "RGB", name
        assert img.size in ((7, 5), (5, 7)), (name, img.size)  # (5, 7): the EXIF rotation


@FUZZ
@given(st.binary(max_size=4096))
@example(b"")
@example(b"\x89PNG\r\n\x1a\n")
@example(b"GIF89a\xff\xff\xff\xff")
@example(b"BM" + b"\xff" * 60)
@example(b"%!PS-Adobe-3.0 EPSF-3.0\n")  # EPS: never handed to Ghostscript
def test_load_image_arbitrary_bytes(data):
    assert_loaded_or_refused(data)


@settings(FUZZ, max_examples=200)
@given(mutated_images(), st.sampled_from(["bytes", "file", "path"]))
def test_load_image_mutated_files(case, how):
    name, data, _ops = case
    if how == "bytes":
        assert_loaded_or_refused(data)
    elif how == "file":
        assert_loaded_or_refused(io.BytesIO(data))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload.{name.split('-')[0]}"
            path.write_bytes(data)
            assert_loaded_or_refused(path)


ARRAY_DTYPES = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.uint32,
                np.uint64, np.float16, np.float32, np.float64, np.bool_, np.complex64,
                ">u2", ">f4", "<U2", "S2", "M8[s]"]


@st.composite
def arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(ARRAY_DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
    return draw(hnp.arrays(dtype, shape))


@settings(FUZZ, max_examples=200)
@given(arrays())
@example(np.zeros((0, 5, 3), np.uint8))
@example(np.full((2, 3), np.nan))
@example(np.full((2, 3, 4), np.inf, np.float32))
@example(np.full((2, 3), 2**63, np.uint64))
@example(np.zeros((4, 4, 1), np.uint8))
@example(np.zeros((4, 4, 2), np.uint8))
@example(np.array([[1, [2]], [3, 4]], dtype=object))
def test_load_image_arrays(arr):
    img = assert_loaded_or_refused(arr)
    if img is not None:  # an accepted array keeps its geometry: (H, W[, C]) -> W x H
        assert arr.ndim in (2, 3) and img.size == (arr.shape[1], arr.shape[0])


@pytest.mark.parametrize("mode", sorted(set(Image.MODES) | {"I;16L", "I;16B"}))
def test_load_image_pil_every_mode(mode):
    """Every Pillow mode (including premultiplied La / RGBa) becomes RGB."""
    try:
        src = Image.new(mode, (3, 2))
    except (ValueError, OSError):
        pytest.skip(f"this Pillow cannot create mode {mode}")
    img = assert_loaded_or_refused(src, expected_size=(3, 2))
    assert img is not None, f"a valid {mode} image was refused"


# ============================================================================ annotations

# Two real images every dataset can point at; c.png is named but never written.
IMAGES = {"a.png": (24, 20), "b.jpg": (20, 24)}
FILE_NAMES = st.sampled_from(["a.png", "b.jpg", "a.png", "b.jpg", "c.png", "", "../a.png",
                              "/etc/passwd", "A.PNG", "a.png\x00", "images/a.png"])


def write_images(root: Path) -> None:
    for name, size in IMAGES.items():
        Image.new("RGB", size, (200, 40, 40)).save(root / name)


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


def _write(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")


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


def check_dataset(ds) -> None:
    """The contract of a loaded dataset: distinct class names, every box valid and inside its
    image, every label a class index, every item a finite normalized target."""
    names = ds.class_names
    assert isinstance(names, list) and names, names
    assert all(isinstance(n, str) for n in names) and len(set(names)) == len(names), names
    for rec in ds.records:
        w, h = rec.size
        assert w >= 1 and h >= 1
        b, lab = rec.boxes, rec.labels
        assert b.dtype == torch.float32 and b.shape == (lab.shape[0], 4), (b.shape, lab.shape)
        assert lab.dtype == torch.int64
        assert bool(torch.isfinite(b).all()), b
        assert bool((b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()), b
        assert bool((b[:, :2] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()), b
        assert bool(((lab >= 0) & (lab < len(names))).all()), (lab, names)
        rel = Path(rec.file)
        assert not rel.is_absolute() and ".." not in rel.parts and (ds.root / rel).is_file()
    for i in range(len(ds)):
        x, target = ds[i]
        assert x.shape == (3, ds.image_size, ds.image_size)
        assert bool(torch.isfinite(target).all())
        assert bool(((target[:, 1:] >= 0) & (target[:, 1:] <= 1)).all())


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
            _write(root / rel, content)
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


@FUZZ
@given(coco_files())
@example({"instances.json": json.dumps({
    "images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10}],
    "annotations": [{"image_id": 1, "category_id": 7, "bbox": [-1, 2, 5, 5]}],
    "categories": [{"id": 7, "name": "x"}]})})
def test_coco_reader(files):
    load_or_refuse(files, "coco")


@FUZZ
@given(voc_files())
@example({"Annotations/a.xml": b"<annotation><filename>a.png</filename><object><name>x</name>"
          b"<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>21</xmax><ymax>5</ymax></bndbox>"
          b"</object></annotation>"})
def test_voc_reader(files):
    load_or_refuse(files, "voc")


@FUZZ
@given(yolo_files())
@example({"a.txt": "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 1.1 0.2", "b.txt": ""})
def test_yolo_reader(files):
    load_or_refuse(files, "yolo")


@FUZZ
@given(csv_files())
@example({"label.csv": "img_name,label,xmin,ymin,xmax,ymax\na.png,0,1,1,5,5\nb.jpg,0,0,0,16,12\n"})
def test_csv_reader(files):
    load_or_refuse(files, "csv")


@settings(FUZZ, max_examples=50)
@given(st.one_of(coco_files(), voc_files(), yolo_files(), csv_files()), st.booleans())
def test_readers_detect_format_and_zip(files, zipped):
    """The same annotations through format detection and, half the time, a zip upload."""
    load_or_refuse(files, None, zipped)


_COCO_OK = {"images": [{"id": 1, "file_name": "a.png"}], "annotations": [],
            "categories": [{"id": 1, "name": "x"}]}


def _coco(**changes) -> dict:
    return {"instances.json": json.dumps({**_COCO_OK, **changes})}


def _voc(xml: str, encoding: str = "utf-8") -> dict:
    return {"Annotations/a.xml": xml.encode(encoding)}


_VOC_OBJ = ("<annotation><filename>a.png</filename><object><name>{}</name><bndbox><xmin>1</xmin>"
            "<ymin>1</ymin><xmax>{}</xmax><ymax>5</ymax></bndbox></object></annotation>")


# Regression cases found by the fuzzers above: each crashed with an undocumented exception
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
        _write(root / rel, content)
    with watchdog(60), pytest.raises(AnnotationError, match=words):
        load_dataset(root, fmt=fmt)


def _valid_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, size in IMAGES.items():
            zf.writestr(f"data/{name}", _encode(Image.new("RGB", size, (9, 99, 199)),
                                                "PNG" if name.endswith("png") else "JPEG"))
        zf.writestr("data/label.csv", "img_name,label,xmin,ymin,xmax,ymax\na.png,0,1,1,5,5\n"
                                      "b.jpg,0,2,2,9,9\n")
    return buf.getvalue()


VALID_ZIP = _valid_zip()


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 1 << 16), st.integers(0, 255)),
                min_size=1, max_size=3))
def test_mutated_zip_upload(ops):
    data = bytearray(VALID_ZIP)
    for op, pos, val in ops:
        if not data:
            break
        p = pos % len(data)
        if op == "flip":
            data[p] ^= val or 1
        elif op == "truncate":
            del data[p:]
        elif op == "big-number":
            data[p:p + 4] = b"\xff\xff\xff\x7f"
        else:
            data[p:p] = bytes([val]) * (1 + val % 5)
    try:
        with watchdog(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = load_dataset(bytes(data), image_size=32)
            check_dataset(ds)
    except AnnotationError as e:
        assert str(e)


def test_valid_zip_loads():
    ds = load_dataset(VALID_ZIP, image_size=32)
    check_dataset(ds)
    assert len(ds) == 2 and ds.class_names == ["banana"]


@pytest.mark.parametrize("member", ["../evil.txt", "/abs.txt", "a/../../evil.txt"])
def test_zip_members_outside_the_folder_are_refused(member, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(member, "x")
    with pytest.raises(AnnotationError):
        extract_zip(buf.getvalue(), tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


# ============================================================================ matching


@st.composite
def boxes(draw, n, degenerate=True, min_side=0.0):
    """``(n, 4)`` float32 corner boxes in [0, 1]; some zero-width/height when degenerate."""
    out = []
    for _ in range(n):
        x, y = draw(st.floats(0, 1)), draw(st.floats(0, 1))
        side = st.floats(min_side, 1) if min_side > 0 else st.floats(0, 1)
        if degenerate:
            side = st.one_of(side, st.just(0.0))
        w, h = draw(side), draw(side)
        out.append([x, y, min(x + w, 1.5), min(y + h, 1.5)])
    return torch.tensor(out, dtype=torch.float32).reshape(n, 4)


@st.composite
def target_inputs(draw, max_n=60):
    """anchors (1, N, 4) with positive sides, labels (B, M, 5) with padding rows (class -1)
    anywhere, degenerate ground truths allowed, a class count and an IoU threshold."""
    n = draw(st.integers(1, max_n))
    batch = draw(st.integers(1, 3))
    m = draw(st.integers(0, 6))
    num_classes = draw(st.integers(1, 4))
    anchors = draw(boxes(n, degenerate=False, min_side=0.01))[None]
    rows = []
    for _ in range(batch):
        gt = draw(boxes(m))
        cls = [float(draw(st.one_of(st.integers(0, num_classes - 1), st.just(-1))))
               for _ in range(m)]
        rows.append(torch.cat([torch.tensor(cls).reshape(m, 1), gt], dim=1))
    labels = torch.stack(rows) if m else torch.zeros(batch, 0, 5)
    thr = draw(st.one_of(st.floats(0.01, 1.0), st.just(1.0), st.just(0.5)))
    return anchors, labels, num_classes, thr


@settings(FUZZ, max_examples=200)
@given(target_inputs())
def test_multibox_target_properties(case):
    anchors, labels, num_classes, thr = case
    batch, n = labels.shape[0], anchors.shape[1]
    offset, mask, cls = multibox_target(anchors, labels, thr)
    assert offset.shape == (batch, 4 * n) and mask.shape == (batch, 4 * n)
    assert cls.shape == (batch, n) and cls.dtype == torch.int64
    assert bool(torch.isfinite(offset).all()), offset
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert bool(((cls >= 0) & (cls <= num_classes)).all())
    # The mask is 1 exactly on the 4 offsets of positive anchors; other offsets are 0.
    assert torch.equal(mask.reshape(batch, n, 4), (cls > 0)[..., None].expand(-1, -1, 4).float())
    assert bool((offset[mask == 0] == 0).all())
    # Greedy step of the book: every real object gets at least one anchor while anchors last.
    gt_index = match_anchors(anchors, labels, thr).gt_index
    for b in range(batch):
        real = torch.nonzero(labels[b, :, 0] >= 0).reshape(-1).tolist()
        got = set(gt_index[b][gt_index[b] >= 0].tolist())
        if len(real) <= n:
            assert set(real) <= got, (real, got)
        assert got <= set(real)


@settings(FUZZ, max_examples=60)
@given(target_inputs(max_n=25))
def test_multibox_target_matches_reference_loops(case):
    anchors, labels, _, thr = case
    got = multibox_target(anchors, labels, thr)
    want = ref_multibox_target(anchors, labels, thr)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert torch.allclose(g.float(), w.float(), atol=1e-4, rtol=1e-4), (g, w)


# ============================================================================ detection


@st.composite
def detection_inputs(draw, max_n=60):
    n = draw(st.integers(1, max_n))
    batch = draw(st.integers(1, 3))
    num_classes = draw(st.integers(1, 4))
    anchors = draw(boxes(n, degenerate=True))[None]
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 20.0]))
    logits = torch.randn(batch, num_classes + 1, n, generator=g) * scale
    if draw(st.booleans()):  # exact ties between anchors and classes
        logits = logits.round()
    probs = torch.softmax(logits, dim=1)
    offsets = (torch.rand(batch, 4 * n, generator=g) * 2 - 1) * draw(st.sampled_from([0, 1, 5]))
    nms_thr = draw(st.one_of(st.floats(0.01, 1.0), st.just(1.0), st.just(0.5)))
    pos_thr = draw(st.one_of(st.just(0.009), st.floats(0.0, 1.0)))
    per_class, exact = draw(st.booleans()), draw(st.booleans())
    return probs, offsets, anchors, nms_thr, pos_thr, per_class, exact, num_classes


def _iou_matrix(b):
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area[:, None] + area[None, :] - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


@settings(FUZZ, max_examples=200)
@given(detection_inputs())
def test_multibox_detection_properties(case):
    probs, offsets, anchors, nms_thr, pos_thr, per_class, exact, num_classes = case
    batch, n = probs.shape[0], probs.shape[2]
    out = multibox_detection(probs, offsets, anchors, nms_threshold=nms_thr,
                             pos_threshold=pos_thr, per_class=per_class, exact_order=exact)
    assert out.shape == (batch, n, 6)
    assert bool(torch.isfinite(out).all())
    cls, score = out[..., 0], out[..., 1]
    assert bool((cls == cls.round()).all())
    assert bool(((cls >= -1) & (cls <= num_classes - 1)).all())
    assert bool(((score >= 0) & (score <= 1)).all())
    for b in range(batch):
        kept = out[b][out[b, :, 0] >= 0]
        # Detections come first, by descending score, and all pass the score threshold.
        assert bool((out[b, : len(kept), 0] >= 0).all())
        assert bool((kept[1:, 1] <= kept[:-1, 1]).all())
        assert bool((kept[:, 1] >= pos_thr).all())
        iou = _iou_matrix(kept[:, 2:])
        iou.fill_diagonal_(0)
        if per_class:
            iou = iou * (kept[:, None, 0] == kept[None, :, 0])
        assert bool((iou <= nms_thr + 1e-6).all()), (iou.max(), nms_thr)


@settings(FUZZ, max_examples=60)
@given(detection_inputs(max_n=30))
def test_multibox_detection_matches_reference_loops(case):
    probs, offsets, anchors, nms_thr, pos_thr, per_class, exact, _ = case
    got = multibox_detection(probs, offsets, anchors, nms_threshold=nms_thr,
                             pos_threshold=pos_thr, per_class=per_class, exact_order=exact)
    want = ref_multibox_detection(probs, offsets, anchors, nms_thr, pos_thr, per_class)
    if exact:
        assert torch.allclose(got, want, atol=1e-5), (got, want)
    else:  # the detections and their order are the book's; only background rows may move
        for g, w in zip(got, want):
            assert torch.allclose(g[g[:, 0] >= 0], w[w[:, 0] >= 0], atol=1e-5)


# ============================================================================ invalid inputs


@st.composite
def bad_target_inputs(draw):
    anchors, labels, _, thr = draw(target_inputs(max_n=10))
    kind = draw(st.sampled_from(["anchor-shape", "label-shape", "nan-anchor", "inf-anchor",
                                 "nan-box", "nan-class", "inf-class", "huge-class", "flipped-box",
                                 "zero-anchor", "threshold", "not-tensor", "empty-anchors"]))
    if kind == "anchor-shape":
        shape = draw(st.lists(st.integers(0, 4), max_size=4))
        if shape and shape[-1] == 4:
            shape[-1] = 3
        anchors = torch.rand(shape)
    elif kind == "label-shape":
        shape = draw(st.lists(st.integers(0, 5), max_size=4))
        if shape and shape[-1] == 5:
            shape[-1] = 4
        labels = torch.zeros(shape)
    elif kind in ("nan-anchor", "inf-anchor"):
        anchors = anchors.clone()
        anchors[0, draw(st.integers(0, anchors.shape[1] - 1)), draw(st.integers(0, 3))] = (
            math.nan if kind == "nan-anchor" else math.inf)
    elif kind == "zero-anchor":
        anchors = anchors.clone()
        i = draw(st.integers(0, anchors.shape[1] - 1))
        anchors[0, i, 2] = anchors[0, i, 0]
    elif kind == "threshold":
        thr = draw(st.sampled_from([0.0, -0.5, 1.5, math.nan, math.inf]))
    elif kind == "not-tensor":
        anchors = anchors.tolist()
    elif kind == "empty-anchors":
        anchors = torch.zeros(1, 0, 4)
    else:
        labels = torch.cat([labels, torch.tensor([[[0, .1, .1, .5, .5]]]).expand(
            labels.shape[0], 1, 5)], dim=1).clone()
        row = labels[:, -1]
        if kind == "nan-box":
            row[:, 2] = math.nan
        elif kind == "nan-class":
            row[:, 0] = math.nan
        elif kind == "inf-class":
            row[:, 0] = math.inf
        elif kind == "huge-class":
            row[:, 0] = 1e30
        else:  # flipped: x2 < x1
            row[:, 3] = 0.05
    return kind, anchors, labels, thr


@settings(FUZZ, max_examples=150)
@given(bad_target_inputs())
def test_multibox_target_invalid_inputs_raise_value_error(case):
    kind, anchors, labels, thr = case
    with pytest.raises(ValueError):
        multibox_target(anchors, labels, thr)


@st.composite
def bad_detection_inputs(draw):
    probs, offsets, anchors, nms_thr, pos_thr, *_ = draw(detection_inputs(max_n=10))
    kind = draw(st.sampled_from(["probs-shape", "offset-shape", "anchor-shape", "nan-probs",
                                 "nan-offsets", "nan-anchors", "inf-offsets", "nms-threshold",
                                 "pos-threshold", "anchors-list", "offsets-list"]))
    if kind == "probs-shape":
        probs = torch.zeros(draw(st.lists(st.integers(0, 3), max_size=4)))
        if probs.dim() == 3 and probs.shape[1] >= 2:
            probs = probs[:, :1]
    elif kind == "offset-shape":
        offsets = offsets[:, :-1]
    elif kind == "anchor-shape":
        anchors = anchors[:, :-1] if draw(st.booleans()) else anchors[..., :3]
    elif kind == "anchors-list":
        anchors = anchors.tolist()
    elif kind == "offsets-list":
        offsets = offsets.tolist()
    elif kind == "nms-threshold":
        nms_thr = draw(st.sampled_from([-0.1, 1.5, math.nan]))
    elif kind == "pos-threshold":
        pos_thr = draw(st.sampled_from([-0.1, 1.5, math.nan]))
    else:
        t = {"nan-probs": probs, "nan-offsets": offsets, "nan-anchors": anchors,
             "inf-offsets": offsets}[kind].clone()
        t.view(-1)[draw(st.integers(0, t.numel() - 1))] = (
            math.inf if kind == "inf-offsets" else math.nan)
        probs, offsets, anchors = (t if kind == "nan-probs" else probs,
                                   t if kind in ("nan-offsets", "inf-offsets") else offsets,
                                   t if kind == "nan-anchors" else anchors)
    return kind, probs, offsets, anchors, nms_thr, pos_thr


@settings(FUZZ, max_examples=150)
@given(bad_detection_inputs())
def test_multibox_detection_invalid_inputs_raise_value_error(case):
    kind, probs, offsets, anchors, nms_thr, pos_thr = case
    with pytest.raises(ValueError):
        multibox_detection(probs, offsets, anchors, nms_threshold=nms_thr,
                           pos_threshold=pos_thr)


def test_empty_batch_and_no_slots():
    """B = 0 images and M = 0 label slots are valid, just empty."""
    anchors = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9]]])
    offset, mask, cls = multibox_target(anchors, torch.zeros(0, 3, 5))
    assert offset.shape == (0, 8) and mask.shape == (0, 8) and cls.shape == (0, 2)
    offset, mask, cls = multibox_target(anchors, torch.zeros(2, 0, 5))
    assert cls.shape == (2, 2) and not bool(cls.any()) and not bool(mask.any())
    out = multibox_detection(torch.zeros(0, 2, 2), torch.zeros(0, 8), anchors)
    assert out.shape == (0, 2, 6)
