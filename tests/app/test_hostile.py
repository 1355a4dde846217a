"""Hostile and broken input through the app (AppTest): every page that takes an image shows a
clear ``st.error`` (which file, what was wrong, what to choose instead) for each file
``ssd_core.images.load_image`` refuses, and renders awkward but valid images; the Training and
Evaluation pages refuse hostile dataset zips (traversal, absolute paths, symlinks, bombs, too
many files, broken annotations) with a message, never a traceback, and write nothing outside
the runs folder. Every upload here is made in memory; runs and temp files go to tmp_path."""

from __future__ import annotations

import gc
import io
import json
import stat
import struct
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import encode, png_claiming

from .conftest import app_on_page

ACCEPTED = "PNG, JPEG"  # the start of the list of accepted formats every refusal names


# ---------------------------------------------------------------------------- images


def jpeg_claiming(jpg: bytes, w: int, h: int) -> bytes:
    """A JPEG whose frame header (SOF0) claims w x h pixels; its header and EXIF read fine,
    only decoding it fails."""
    i = jpg.index(b"\xff\xc0")
    return jpg[: i + 5] + struct.pack(">HH", h, w) + jpg[i + 9:]


def noise(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8))


def zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def bad_images() -> dict[str, tuple[bytes, str]]:
    """File name -> (bytes, a word the refusal must contain)."""
    png, jpg = encode(noise(), "PNG"), encode(noise(), "JPEG")
    pdf = (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
           b"trailer\n<< /Root 1 0 R >>\n%%EOF\n")
    return {
        "empty.png": (b"", "empty"),
        "photo.jpg": (np.random.default_rng(1).bytes(4096).lstrip(b"\x89\xff"),
                      "not a recognised image"),
        "notes.jpg": (b"Shopping list: bananas, rings, stars.\n", "not a recognised image"),
        "cut.png": (png[: len(png) // 2], "truncated"),
        "cut.jpg": (jpg[: len(jpg) // 2], "truncated"),
        "bomb.png": (png_claiming(100_000, 100_000), "decompression bomb"),
        "bomb-80mp.png": (png_claiming(9_000, 9_000), "decompression bomb"),
        "paper.png": (pdf, "not a recognised image"),
        "archive.png": (zip_of({"a.txt": b"hello"}), "not a recognised image"),
    }


def odd_images() -> dict[str, tuple[bytes, tuple[int, int]]]:
    """Awkward but valid images: file name -> (bytes, (width, height) as the app shows it)."""
    gray16 = Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 21).astype(np.uint16))
    palette = noise(40, 30).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    frames = [Image.new("RGB", (50, 40), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=80,
                   loop=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": stored 60x30, shown 30x60
    return {
        "dot.png": (encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), (1, 1)),
        "gray16.png": (encode(gray16, "PNG"), (64, 48)),
        "cmyk.jpg": (encode(noise().convert("CMYK"), "JPEG"), (64, 48)),
        "palette-alpha.png": (encode(palette, "PNG", transparency=0), (40, 30)),
        "animated.gif": (gif.getvalue(), (50, 40)),
        "strip.png": (encode(noise(4000, 10), "PNG"), (1024, 3)),
        "tower.png": (encode(noise(10, 4000), "PNG"), (3, 1024)),
        "float.tif": (encode(Image.fromarray(np.linspace(0, 1, 32 * 24, dtype=np.float32)
                                             .reshape(24, 32), "F"), "TIFF"), (32, 24)),
        "rotated.jpg": (encode(noise(60, 30), "JPEG", exif=exif.tobytes()), (30, 60)),
    }


# Pages that take an image: (page, the Image radio, the uploader).
IMAGE_PAGES = ["anchors", "labeling", "model", "detection"]


def image_page(page: str, tmp_path, monkeypatch):
    at = app_on_page(page, tmp_path / "runs", monkeypatch)
    if page == "detection":
        at.session_state["detection.model"] = "untrained"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.radio(key=f"{page}.image").set_value("Upload").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("At most 50 MB per file" in i.value for i in at.info)  # the upload limit
    return at


def upload(at, key: str, name: str, data: bytes, mime: str = "application/octet-stream"):
    at.file_uploader(key=key).upload(name, data, mime).run()
    return at


def texts(at) -> list[str]:
    """Every text the page shows (markdown, captions, alerts), to look for a traceback."""
    out = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "text", "code"):
        out += [str(el.value) for el in at.get(kind)]
    return out


def page_works(at, page: str) -> None:
    """The page still draws its main content."""
    if page == "anchors":
        assert any(m.label == "Total anchors" and m.value == "5444" for m in at.metric)
    else:
        assert at.get("plotly_chart") or at.get("imgs"), f"{page}: nothing drawn"


@pytest.mark.parametrize("page", IMAGE_PAGES)
def test_unusable_images_are_clear_errors(page, tmp_path, monkeypatch):
    at = image_page(page, tmp_path, monkeypatch)
    problems = []
    for name, (data, word) in bad_images().items():
        upload(at, f"{page}.upload", name, data)
        if at.exception:
            problems.append(f"{name}: traceback {[e.value for e in at.exception]}")
            continue
        errors = [e.value for e in at.error if "could not be used" in e.value]
        if len(errors) != 1:
            problems.append(f"{name}: expected one 'could not be used' error, got "
                            f"{[e.value for e in at.error]}")
            continue
        msg = errors[0]
        for part in (f"`{name}`", word, ACCEPTED, "Choose an image file"):
            if part not in msg:
                problems.append(f"{name}: {part!r} missing from {msg!r}")
        if "numpy" in msg or "PIL" in msg:
            problems.append(f"{name}: library-only advice shown to a browser user: {msg!r}")
        if any("Traceback" in t for t in texts(at)):
            problems.append(f"{name}: 'Traceback' on the page")
        if page == "detection":
            if at.get("plotly_chart"):
                problems.append(f"{name}: detections drawn for an unusable file")
        else:
            page_works(at, page)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", IMAGE_PAGES)
def test_awkward_valid_images_render(page, tmp_path, monkeypatch):
    at = image_page(page, tmp_path, monkeypatch)
    problems = []
    for name, (data, (w, h)) in odd_images().items():
        upload(at, f"{page}.upload", name, data)
        if at.exception:
            problems.append(f"{name}: traceback {[e.value for e in at.exception]}")
            continue
        if at.error:
            problems.append(f"{name}: error {[e.value for e in at.error]}")
            continue
        page_works(at, page)
        if page == "detection":
            caption = " ".join(c.value for c in at.caption)
            if f"{name} ({w}×{h})" not in caption:
                problems.append(f"{name}: expected {w}×{h} in {caption!r}")
            if not any(m.label == "Anchors" for m in at.metric):
                problems.append(f"{name}: no detection metrics")
        if page == "anchors":
            caption = " ".join(c.value for c in at.caption)
            if f"Image: {name} ({w}×{h})" not in caption:
                problems.append(f"{name}: expected {w}×{h} in {caption!r}")
    assert not problems, "\n".join(problems)


def test_upload_name_cannot_inject_markdown(tmp_path, monkeypatch):
    """A file name is shown in a code span: backticks, links and HTML stay text."""
    at = image_page("detection", tmp_path, monkeypatch)
    name = "x`<b>y</b>[link](javascript:alert(1))\n.png"
    upload(at, "detection.upload", name, b"not an image")
    assert not at.exception
    msg = next(e.value for e in at.error if "could not be used" in e.value)
    assert msg.startswith("`x'<b>y</b>[link](javascript:alert(1)) .png` could not be used")


# ---------------------------------------------------------------------------- dataset zips

CLASSES = ["banana", "ring", "star"]  # the untrained model's classes (Evaluation checks them)


def small_png(w: int = 32, h: int = 32) -> bytes:
    return encode(noise(w, h, seed=w), "PNG")


def coco_zip(images=None, annotations=None, files=None, raw_json: bytes | None = None) -> bytes:
    images = images if images is not None else [
        {"id": 1, "file_name": "a.png", "width": 32, "height": 32},
        {"id": 2, "file_name": "b.png", "width": 32, "height": 32}]
    annotations = annotations if annotations is not None else [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10]},
        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [4, 4, 12, 8]}]
    files = files if files is not None else {"a.png": small_png(), "b.png": small_png()}
    data = raw_json if raw_json is not None else json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}).encode()
    return zip_of({"annotations/instances.json": data,
                   **{f"images/{k}": v for k, v in files.items()}})


def symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("images/a.png", small_png())
        link = zipfile.ZipInfo("images/b.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
    return buf.getvalue()


def bomb_zip(megabytes: int = 200) -> bytes:
    """One member of ``megabytes`` MiB of zeros (about 0.9 MB compressed)."""
    buf = io.BytesIO()
    with (zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z,
          z.open("data/zeros.bin", "w", force_zip64=True) as f):
        block = bytes(1 << 20)
        for _ in range(megabytes):
            f.write(block)
    return buf.getvalue()


def many_files_zip(n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i in range(n):
            z.writestr(f"empty/{i:05d}", b"")
    return buf.getvalue()


def hostile_zips(evil_abs: str) -> dict[str, tuple[bytes, list[str]]]:
    """File name -> (zip bytes, phrases the page's message must contain)."""
    ok = small_png()
    return {
        "traversal.zip": (zip_of({"../evil_traversal.txt": b"evil", "images/a.png": ok}),
                          ["traversal.zip: member '../evil_traversal.txt'",
                           "outside the archive"]),
        "deep-traversal.zip": (zip_of({"images/../../../evil_deep.txt": b"evil",
                                       "images/a.png": ok}), ["outside the archive"]),
        "absolute.zip": (zip_of({evil_abs: b"evil", "images/a.png": ok}),
                         [f"absolute.zip: member {evil_abs!r}", "absolute path",
                          "relative paths"]),
        "symlink.zip": (symlink_zip(), ["symlink.zip: member 'images/b.png'", "symbolic link"]),
        "bomb.zip": (bomb_zip(), ["bomb.zip: member 'data/zeros.bin'", "209,715,200 bytes",
                                  "zip bomb"]),
        "20001-files.zip": (many_files_zip(20_001), ["20001-files.zip has 20001 entries",
                                                     "limit of 20000",
                                                     "split the dataset"]),
        "3000-empty-files.zip": (many_files_zip(3000), ["No annotations found", "COCO .json"]),
        "not-a-zip.zip": (b"PK\x03\x04 this is no zip",
                          ["not-a-zip.zip is not a readable zip file"]),
        "flipped-box.zip": (coco_zip(annotations=[
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 5, -10, 10]},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [4, 4, 12, 8]}]),
            ["annotations[0]", "x2 (10) <= x1 (20)", "Fix or delete it"]),
        "unknown-class.zip": (coco_zip(annotations=[
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 2, 10, 10]},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [4, 4, 12, 8]}]),
            ["unknown category_id 7", "known ids: [1, 2, 3]"]),
        "missing-image.zip": (coco_zip(files={"a.png": ok}),
                              ["image file 'b.png' not found", "Add the image or remove"]),
        "malformed-json.zip": (coco_zip(raw_json=b'{"images": [ {"id": 1,'),
                               ["instances.json", "not valid JSON", "line 1"]),
    }


@pytest.fixture(scope="module")
def zips():
    evil_abs = f"/tmp/evil_absolute_{uuid.uuid4().hex}"
    return evil_abs, hostile_zips(evil_abs)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """tmp_path/runs is the runs folder and tmp_path/tmp the temp folder, so a test can see
    every file the app writes."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp_path


def nothing_escaped(root: Path, evil_abs: str) -> None:
    """No hostile member was written anywhere, and extraction folders were cleaned up."""
    gc.collect()  # a refused dataset's temp folder goes with the dataset object
    assert not list(root.rglob("evil*")), list(root.rglob("evil*"))
    assert not Path(evil_abs).exists()
    assert not (Path(tempfile.gettempdir()).parent / "evil_traversal.txt").exists()
    assert {p.name for p in root.iterdir()} == {"runs", "tmp"}
    assert not list((root / "tmp").iterdir()), list((root / "tmp").iterdir())
    uploads = root / "runs" / "_uploads"
    assert all(p.suffix == ".zip" for p in uploads.iterdir()) if uploads.exists() else True


def zip_upload_page(page: str, sandbox, monkeypatch):
    """The ``page`` ("training" or "evaluation", with the untrained model) showing its zip
    upload, which says its size limit."""
    at = app_on_page(page, sandbox / "runs", monkeypatch)
    if page == "evaluation":
        at.session_state["evaluation.model"] = "untrained"
    at.run()
    at.radio(key=f"{page}.data").set_value("Upload a dataset (.zip)").run()
    assert not at.exception
    assert any("At most 50 MB per file" in i.value for i in at.info)
    return at


def test_training_refuses_hostile_zips(sandbox, zips, monkeypatch):
    evil_abs, cases = zips
    at = zip_upload_page("training", sandbox, monkeypatch)
    problems = []
    for name, (data, phrases) in cases.items():
        upload(at, "training.zip", name, data, "application/zip")
        next(b for b in at.button if b.label == "Start training").click().run()
        found = refusal_problems(at, name, phrases)
        problems += found
        if found:
            continue
        if "training.run" in at.session_state:
            problems.append(f"{name}: a run was started")
        if any("Traceback" in t for t in texts(at)):
            problems.append(f"{name}: 'Traceback' on the page")
    assert not problems, "\n".join(problems)
    runs = sandbox / "runs"
    assert {p.name for p in runs.iterdir()} <= {"_uploads"}  # no run folder was made
    nothing_escaped(sandbox, evil_abs)


def refusal_problems(at, name: str, phrases) -> list[str]:
    """What is wrong with the page's refusal of ``name``: a traceback, not exactly one "could
    not be used" error, or a phrase missing from it."""
    if at.exception:
        return [f"{name}: traceback {[e.value for e in at.exception]}"]
    errors = [e.value for e in at.error if "could not be used" in e.value]
    if len(errors) != 1:
        return [f"{name}: expected one error, got {[e.value for e in at.error]}"]
    return [f"{name}: {p!r} missing from {errors[0]!r}" for p in phrases if p not in errors[0]]


def test_evaluation_refuses_hostile_zips(sandbox, zips, monkeypatch):
    evil_abs, cases = zips
    at = zip_upload_page("evaluation", sandbox, monkeypatch)
    problems = []
    for name, (data, phrases) in cases.items():
        upload(at, "evaluation.zip", name, data, "application/zip")
        found = refusal_problems(at, name, phrases)
        problems += found
        if found:
            continue
        if at.get("plotly_chart") or at.metric:
            problems.append(f"{name}: scores shown for a refused dataset")
    assert not problems, "\n".join(problems)
    nothing_escaped(sandbox, evil_abs)


def test_evaluation_dataset_with_a_broken_image_is_an_error(sandbox, monkeypatch):
    """Annotations fine, but an image inside is truncated or a bomb: only decoding it (while
    predicting) finds out. The page says which file, and shows no traceback."""
    png = small_png()
    jpg = encode(noise(64, 64), "JPEG")
    cases = {"truncated-image.zip": ("a.png", jpg[: len(jpg) // 2], "truncated"),
             "bomb-image.zip": ("b.png", jpeg_claiming(jpg, 9_000, 9_000), "decompression bomb")}
    at = zip_upload_page("evaluation", sandbox, monkeypatch)
    for name, (member, data, word) in cases.items():
        files = {"a.png": png, "b.png": small_png(), member: data}
        images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}]
        upload(at, "evaluation.zip", name, coco_zip(images=images, files=files),
               "application/zip")
        assert not at.exception, (name, [e.value for e in at.exception])
        msg = next(e.value for e in at.error if "could not be used" in e.value)
        assert member in msg and word in msg and "Fix or remove that image" in msg, msg
        assert "numpy" not in msg and not at.get("plotly_chart")
    import streamlit as st

    st.cache_resource.clear()  # the cached datasets (they loaded) own their extracted folders
    nothing_escaped(sandbox, "/nonexistent")


def test_annotation_file_names_cannot_reach_outside_the_archive(sandbox, monkeypatch):
    """A COCO file_name ``../../<somewhere>/secret.png`` must not make the server read (and
    show in the Evaluation gallery) an image outside the uploaded dataset."""
    secret = sandbox / "secret.png"
    secret.write_bytes(small_png(40, 40))
    up = "../" * 40 + str(secret).lstrip("/")
    data = coco_zip(images=[{"id": 1, "file_name": up}, {"id": 2, "file_name": "b.png"}],
                    annotations=[])
    at = zip_upload_page("evaluation", sandbox, monkeypatch)
    upload(at, "evaluation.zip", "peek.zip", data, "application/zip")
    assert not at.exception
    msg = next(e.value for e in at.error if "could not be used" in e.value)
    assert "outside" in msg, msg


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "dataloader-worker"])
def test_training_on_a_dataset_with_a_corrupt_image_fails_with_a_message(
        workers, sandbox, monkeypatch):
    """The annotations check passes (it reads image headers only); the tiny job fails on its
    first batch. The page says which image and why, without a traceback, also when the image
    was decoded in a DataLoader worker (as on a GPU server, whose error text carries one)."""
    from ssd_core import Trainer

    if workers:
        setup = Trainer._setup

        def with_workers(self):
            setup(self)
            self._num_workers = workers  # what _setup picks on a GPU

        monkeypatch.setattr(Trainer, "_setup", with_workers)
    jpg = encode(noise(64, 64), "JPEG")
    files = {"a.png": small_png(), "b.png": jpg[: len(jpg) // 2]}  # a.png: the preview image
    images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}]
    at = zip_upload_page("training", sandbox, monkeypatch)
    upload(at, "training.zip", "broken-image.zip", coco_zip(images=images, files=files),
           "application/zip")
    at.number_input(key="training.epochs").set_value(1)
    at.number_input(key="training.batch").set_value(2)
    at.slider(key="training.val_fraction").set_value(0.0)
    at.select_slider(key="training.input_size").set_value(64)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    deadline = time.time() + 120
    while not any("Training failed" in e.value for e in at.error):
        assert time.time() < deadline, "the job did not fail in time"
        time.sleep(0.5)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    msg = next(e.value for e in at.error if "Training failed" in e.value)
    assert "b.png" in msg and "truncated" in msg and "Fix or remove that image" in msg, msg
    assert "numpy" not in msg
    for text in texts(at):
        assert "Traceback" not in text and 'File "' not in text, text
