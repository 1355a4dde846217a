"""Images for the pages: the one image picker (synthetic sample, shipped sample, upload,
camera, blank canvas), decoded through ``ssd_core.images`` and handed on as PNG bytes, which
``st.cache_data`` can hash."""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

import numpy as np
import streamlit as st
from PIL import Image

from app import urlstate
from ssd_core.data import SyntheticDetection
from ssd_core.errors import InvalidImageError
from ssd_core.images import ACCEPTED_TEXT, DEFAULT_MAX_PIXELS, load_image
from ssd_core.resources import samples_dir

SYNTHETIC, SHIPPED, UPLOAD, CAMERA, BLANK = (
    "Synthetic sample", "Shipped sample", "Upload", "Camera", "Blank canvas")
EXPLORE_SOURCES = [SYNTHETIC, SHIPPED, UPLOAD, BLANK]
# The shipped sample pages open on: the shipped model finds each of its objects once. (On
# shapes-1 it keeps a second banana box at IoU 0.48 with the first, just under NMS's 0.5.)
DEFAULT_SAMPLE = "shapes-3.jpg"


class Picked(NamedTuple):
    """The chosen image: ``png`` (display copy, None when nothing usable is chosen), a
    description, and for a synthetic sample its ground truth: ``boxes (M, 4)`` pixel corners,
    ``labels (M,)`` and the class names."""

    png: bytes | None
    desc: str
    boxes: np.ndarray | None = None
    labels: np.ndarray | None = None
    class_names: list | None = None

    @property
    def image(self) -> Image.Image | None:
        return None if self.png is None else open_png(self.png)


def png_bytes(img: Image.Image) -> bytes:
    """PIL image -> PNG bytes (hashable input for st.cache_data)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def open_png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@st.cache_data(show_spinner=False, max_entries=64)
def synthetic_sample(index: int, image_size: int = 256, preset: str = "default"):
    """(PNG bytes, boxes (M, 4) pixel corners ndarray, labels (M,) ndarray, class names)."""
    ds = SyntheticDetection(index + 1, seed=0, image_size=image_size, preset=preset)
    img, boxes, labels = ds.sample(index)
    return png_bytes(img), boxes.numpy(), labels.numpy(), list(ds.class_names)


@st.cache_data(show_spinner=False, max_entries=16)
def decode_image(data: bytes, max_side: int = 1024) -> bytes:
    """User bytes -> PNG bytes of an RGB image no larger than ``max_side`` (display copy).

    Raises InvalidImageError for anything that is not a usable image.
    """
    # A file object without a name: ssd_core's reasons then say "The uploaded file ...".
    img = load_image(io.BytesIO(data))
    img.thumbnail((max_side, max_side))
    return png_bytes(img)


def sample_files() -> list[Path]:
    """Shipped sample images (*.png|jpg), sorted by name."""
    folder = samples_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def gradient_image(size: int = 256) -> Image.Image:
    """A plain two-way gradient (stands in for a missing image)."""
    t = np.linspace(0, 1, size)
    r = np.tile(t, (size, 1))
    g = r.T
    b = np.full_like(r, 0.6)
    return Image.fromarray((np.stack([r, g, b], -1) * 200 + 30).astype(np.uint8), "RGB")


def blank_canvas(desc: str = "gradient") -> Picked:
    """The gradient as a :class:`Picked` image (stands in where no image is readable)."""
    return Picked(png_bytes(gradient_image()), desc)


def upload_hint(text: str) -> None:
    """``st.info`` under an empty uploader, with the upload limit: Streamlit refuses a larger
    file in the browser (a red file chip, its reason only on hover) and the page never sees it."""
    mb = st.get_option("server.maxUploadSize")
    st.info(f"{text} At most {mb} MB per file: a larger file turns red above and is not "
            "uploaded.")


def image_error(name: str, error: InvalidImageError) -> None:
    """``st.error`` for a file that is not a usable image: which file, ssd_core's reason, and
    what to choose instead (the library's advice on PIL images and numpy arrays is for code)."""
    shown = " ".join(str(name).replace("`", "'").split())[:100] or "the file"  # a code span
    st.error(f"`{shown}` could not be used: {error.reason} Choose an image file in one of "
             f"{ACCEPTED_TEXT} (at most {DEFAULT_MAX_PIXELS // 1_000_000} megapixels).")


def _synthetic(key: str) -> Picked:
    i = int(urlstate.bind(st.number_input, f"{key}.sample", 0, "Sample number", 0, 999, step=1,
                          valid=lambda v: 0 <= v <= 999,
                          help="Deterministic synthetic images (seed 0) of bananas, rings and "
                               "stars, with their ground truth."))
    png, boxes, labels, names = synthetic_sample(i)
    return Picked(png, f"synthetic sample {i}", boxes, labels, names)


def _user_file(key: str, source: str, waiting: str | None) -> tuple[bytes | None, str]:
    """(bytes or None, description) of an upload or a camera picture."""
    if source == CAMERA:
        shot = st.camera_input("Take a picture", key=f"{key}.camera",
                               help="The browser asks for the camera (HTTPS or localhost only).")
        if shot is None:
            st.info("Allow the camera and take a picture to detect objects in it.")
        return (None, "") if shot is None else (shot.getvalue(), "camera picture")
    up = st.file_uploader("Upload an image", key=f"{key}.upload",
                          help="PNG, JPEG, GIF, BMP, TIFF, WebP ... (first frame is used)")
    if up is None:
        upload_hint(waiting or "Choose an image file to upload; until then a gradient is shown.")
        return None, ""
    return up.getvalue(), up.name


def pick_image(key: str, sources=EXPLORE_SOURCES, waiting: str | None = None) -> Picked:
    """The image chooser of every page that takes an image; widget keys ``<key>.image`` (the
    source, in the URL as ``?image=``), ``<key>.sample``, ``<key>.file``, ``<key>.upload``.

    An unreadable file shows ``st.error`` and gives ``png=None``, so the page carries on with a
    hint. ``waiting``: the hint under an empty uploader, which then also gives ``png=None``;
    without it a gradient stands in until a file is uploaded.
    """
    files = sample_files()
    sources = [s for s in sources if s != SHIPPED or files]
    source = urlstate.bind(st.radio, f"{key}.image", sources[0], "Image", sources,
                           valid=lambda v: v in sources, horizontal=True)
    if source == SYNTHETIC:
        return _synthetic(key)
    if source == BLANK:
        return Picked(png_bytes(Image.new("RGB", (256, 256), (245, 245, 245))), "blank canvas")
    if source == SHIPPED:
        names = [p.name for p in files]
        first = DEFAULT_SAMPLE if DEFAULT_SAMPLE in names else names[0]
        desc = urlstate.bind(st.selectbox, f"{key}.file", first, "Sample image", names,
                             valid=lambda v: v in names)
        data = files[names.index(desc)].read_bytes()
    else:
        data, desc = _user_file(key, source, waiting)
        if data is None:
            if source == UPLOAD and waiting is None:
                return blank_canvas("gradient (no upload yet)")
            return Picked(None, desc)
    try:
        return Picked(decode_image(data), desc)
    except InvalidImageError as e:
        image_error(desc, e)
        return Picked(None, desc)
