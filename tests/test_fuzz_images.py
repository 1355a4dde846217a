"""Property tests with hostile images: arbitrary bytes, mutated files of every accepted format,
arrays of every dtype and shape, every Pillow mode. ``load_image`` gives an RGB image or an
``InvalidImageError``, never another exception or a hang; the fuzzers check that both outcomes
occur. Hypothesis runs derandomized, so CI sees the same examples every time.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from ssd_core.errors import InvalidImageError
from ssd_core.images import load_image
from tests.helpers import FUZZ, OPS, assert_both_outcomes, encode, note, watchdog

# Pillow warns (corrupt EXIF, skipped TIFF tags) on the mutated files it still decodes.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")


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
        ("png-rgb", encode(rgb, "PNG")), ("png-rgba", encode(rgba, "PNG")),
        ("png-p-transparency", encode(pal, "PNG", transparency=0)),
        ("png-16bit", encode(Image.fromarray(
            rng.integers(0, 65536, (5, 7), dtype=np.uint16)), "PNG")),
        ("png-1bit", encode(gray.convert("1"), "PNG")), ("png-la", encode(rgba.convert("LA"),
                                                                         "PNG")),
        ("jpeg-rgb", encode(rgb, "JPEG")), ("jpeg-gray", encode(gray, "JPEG")),
        ("jpeg-cmyk", encode(rgb.convert("CMYK"), "JPEG")),
        ("jpeg-exif-rot", encode(rgb, "JPEG", exif=exif.tobytes())),
        ("jpeg-progressive", encode(rgb, "JPEG", progressive=True)),
        ("gif-animated", gif.getvalue()), ("gif", encode(pal, "GIF")),
        ("bmp-rgb", encode(rgb, "BMP")), ("bmp-p", encode(pal, "BMP")),
        ("tiff-rgb", encode(rgb, "TIFF")), ("tiff-deflate", encode(rgb, "TIFF",
                                                                     compression="tiff_deflate")),
        ("tiff-cmyk", encode(rgb.convert("CMYK"), "TIFF")),
        ("tiff-float", encode(Image.fromarray(rng.random((5, 7), dtype=np.float32)), "TIFF")),
        ("tiff-lab", encode(rgb.convert("LAB"), "TIFF")),
        ("webp-rgb", encode(rgb, "WEBP")), ("webp-rgba", encode(rgba, "WEBP", lossless=True)),
        ("ppm", encode(rgb, "PPM")), ("pgm", encode(gray, "PPM")),
        ("ico", encode(rgba, "ICO")), ("tga", encode(rgb, "TGA")),
    ]
    return seeds


SEED_IMAGES = _seed_images()


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
@example((*SEED_IMAGES[0], []), "file")  # not mutated: loads
def fuzz_mutated_files(case, how):
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


def test_load_image_mutated_files():
    """Many mutated files still decode and many do not: both paths are exercised."""
    assert_both_outcomes(fuzz_mutated_files)


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
def fuzz_arrays(arr):
    img = assert_loaded_or_refused(arr)
    if img is not None:  # an accepted array keeps its geometry: (H, W[, C]) -> W x H
        assert arr.ndim in (2, 3) and img.size == (arr.shape[1], arr.shape[0])


def test_load_image_arrays():
    assert_both_outcomes(fuzz_arrays)


@pytest.mark.parametrize("mode", sorted(set(Image.MODES) | {"I;16L", "I;16B"}))
def test_load_image_pil_every_mode(mode):
    """Every Pillow mode (including premultiplied La / RGBa) becomes RGB."""
    try:
        src = Image.new(mode, (3, 2))
    except (ValueError, OSError):
        pytest.skip(f"this Pillow cannot create mode {mode}")
    img = assert_loaded_or_refused(src, expected_size=(3, 2))
    assert img is not None, f"a valid {mode} image was refused"

