"""A set's photos on disk: prepared (scaled down), re-encoded and written under ``images/``.

Photos come in through ``ssd_core.images.load_image`` (size, pixel and format limits, EXIF
orientation applied, every mode flattened to RGB) and are stored re-encoded, with no EXIF; a
photo whose longer side is over MAX_SIDE pixels is scaled down to it first (a 12 MP phone photo
is ~20 MB as PNG and slow to decode every epoch, and the model sees 256 px at most). MAX_SIDE
follows AutoML's suggested maximum of 1024 x 1024 pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from ssd_core.fileio import atomic_write_bytes
from ssd_core.images import load_image
from ssd_core.userdata.boxes import ImageEntry
from ssd_core.userdata.state import IMAGES_DIR

MAX_SIDE = 1024  # longer side of a stored photo, in pixels
JPEG_QUALITY = 95


def _load_photo(data, filename: str, max_pixels: int) -> Image.Image:
    """A photo (bytes, a path, a file object, PIL image, array) checked and loaded as RGB by
    ``load_image``; InvalidImageError naming ``filename`` for bytes that are not one."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = io.BytesIO(bytes(data))
        data.name = filename
    return load_image(data, max_pixels=max_pixels)


def _encode(img: Image.Image, fmt: str) -> bytes:
    """An RGB image as PNG or JPEG bytes (the one encoder of stored photos)."""
    img = img.copy()
    img.info = {}  # no EXIF, ICC or text chunks carried over
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=JPEG_QUALITY)
    else:
        img.save(buf, "PNG")
    return buf.getvalue()


def _prepare(img: Image.Image, max_side: int | None):
    """-> (the image to store, its format, the scale applied to its pixel coordinates)."""
    fmt = "JPEG" if img.info.get("format") in ("JPEG", "MPO") else "PNG"
    scale = 1.0
    if max_side and max(img.size) > max_side:
        scale = max_side / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.LANCZOS)
    return img, fmt, scale


def _store(folder: Path, image_id: int, img: Image.Image, fmt: str) -> ImageEntry:
    """Encode and write one photo atomically -> its entry (no boxes)."""
    blob = _encode(img, fmt)
    file = f"{image_id:06d}.{'jpg' if fmt == 'JPEG' else 'png'}"
    atomic_write_bytes(folder / IMAGES_DIR / file, lambda f: f.write(blob))
    return ImageEntry(image_id, file, img.width, img.height, [])
