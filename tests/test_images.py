"""load_image on awkward inputs made here: modes, EXIF rotation, broken files, bombs, arrays."""

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ssd_core.errors import InvalidImageError
from ssd_core.images import image_to_tensor, load_image
from tests.helpers import encode, png_claiming


def gradient(w=7, h=5) -> np.ndarray:
    """(h, w, 3) uint8 with distinct pixels, so orientation and values are checkable."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 30, y * 40, (x + y) * 10], -1).astype(np.uint8)


def assert_rgb(img, size):
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    assert img.size == size


# -- modes -------------------------------------------------------------------------------------

def test_rgb_png_pixels_preserved_from_path_bytes_and_file(tmp_path):
    arr = gradient()
    data = encode(Image.fromarray(arr), "PNG")
    p = tmp_path / "g.png"
    p.write_bytes(data)
    with open(p, "rb") as handle:
        for src in (p, str(p), data, bytearray(data), io.BytesIO(data), handle):
            img = load_image(src)
            assert_rgb(img, (7, 5))
            np.testing.assert_array_equal(np.asarray(img), arr)


@pytest.mark.parametrize("mode", ["L", "P", "1", "CMYK", "I", "F", "I;16"])
def test_opaque_modes_become_rgb(mode):
    gray = np.array([[0, 128, 255], [10, 20, 30]], dtype=np.uint8)
    if mode in ("L", "1"):
        src = Image.fromarray(gray, "L").convert(mode)
        expect = np.asarray(src.convert("L"))
    elif mode == "P":
        src = Image.fromarray(gradient(3, 2)).convert("P")
        expect = np.asarray(src.convert("RGB"))[..., 0]
    elif mode == "CMYK":
        src = Image.fromarray(np.repeat(gray[..., None], 3, 2), "RGB").convert("CMYK")
        expect = gray
    elif mode == "I":  # 16-bit data held in 32-bit ints: scaled by 1/257
        src = Image.fromarray(gray.astype(np.int32) * 257)
        expect = gray
    elif mode == "F":  # floats in [0, 1]
        src = Image.fromarray(gray.astype(np.float32) / 255.0)
        expect = gray
    else:
        src = Image.fromarray(gray.astype(np.uint16) * 257)
        expect = gray
    assert src.mode == mode
    img = load_image(src)
    assert_rgb(img, (3, 2))
    out = np.asarray(img)
    np.testing.assert_allclose(out[..., 0], expect, atol=1)
    if mode != "P":
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_sixteen_bit_png_file():
    gray = np.array([[0, 65535], [257 * 100, 257 * 7]], dtype=np.uint16)
    data = encode(Image.fromarray(gray), "PNG")
    img = load_image(data)
    np.testing.assert_array_equal(np.asarray(img)[..., 0], [[0, 255], [100, 7]])


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_alpha_composited_on_white(mode):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent black -> white
    rgba[0, 1] = (0, 0, 0, 255)  # opaque black stays black
    rgba[1, 0] = (0, 0, 0, 128)  # half -> mid grey
    rgba[1, 1] = (0, 0, 0, 255)
    src = Image.fromarray(rgba, "RGBA")
    if mode == "LA":
        src = src.convert("LA")
    elif mode == "PA":
        src = Image.fromarray(rgba[..., 3] * 0, "L").convert("P").convert("PA")
        src.putalpha(Image.fromarray(rgba[..., 3], "L"))
    img = load_image(encode(src, "PNG") if mode != "PA" else src)
    out = np.asarray(img).astype(int)
    assert_rgb(img, (2, 2))
    assert (out[0, 0] == 255).all()
    assert (out[0, 1] == 0).all()
    assert 120 <= out[1, 0, 0] <= 135


def test_palette_png_with_transparency():
    src = Image.new("P", (2, 1))
    src.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    src.putpixel((0, 0), 0)
    src.putpixel((1, 0), 1)
    src.info["transparency"] = 0
    img = load_image(encode(src, "PNG", transparency=0))
    assert np.asarray(img).tolist() == [[[255, 255, 255], [0, 0, 255]]]


# -- orientation, frames, sizes ----------------------------------------------------------------

def test_exif_orientation_6_turns_w_by_h_into_h_by_w():
    arr = gradient(8, 4)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(arr), "PNG", exif=exif)
    img = load_image(data)
    assert_rgb(img, (4, 8))
    # orientation 6 = rotate 90 degrees clockwise for display
    np.testing.assert_array_equal(np.asarray(img), np.rot90(arr, k=-1))


def test_exif_orientation_jpeg():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.new("RGB", (40, 20), (200, 10, 10)), "JPEG", exif=exif)
    assert load_image(data).size == (20, 40)


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (6, 4), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(io.BytesIO(buf.getvalue())) as check:
        assert check.n_frames == 3
    img = load_image(buf.getvalue())
    assert_rgb(img, (6, 4))
    assert tuple(np.asarray(img)[0, 0]) == (255, 0, 0)
    with Image.open(io.BytesIO(buf.getvalue())) as opened:
        opened.seek(2)  # a PIL image left on a later frame still gives the first one
        assert load_image(opened).getpixel((0, 0)) == (255, 0, 0)


def test_one_by_one_image():
    img = load_image(encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"))
    assert_rgb(img, (1, 1))
    assert img.getpixel((0, 0)) == (1, 2, 3)


# -- numpy arrays ------------------------------------------------------------------------------

def test_numpy_arrays():
    arr = gradient()
    np.testing.assert_array_equal(np.asarray(load_image(arr)), arr)
    gray = arr[..., 0]
    out = np.asarray(load_image(gray))
    assert out.shape == (5, 7, 3) and (out[..., 1] == gray).all()
    rgba = np.concatenate([arr, np.full((5, 7, 1), 255, np.uint8)], -1)
    np.testing.assert_array_equal(np.asarray(load_image(rgba)), arr)
    rgba[..., 3] = 0
    assert (np.asarray(load_image(rgba)) == 255).all()
    as_float = arr.astype(np.float32) / 255.0
    np.testing.assert_array_equal(np.asarray(load_image(as_float)), arr)
    np.testing.assert_array_equal(np.asarray(load_image(arr.astype(np.float64))), arr)


@pytest.mark.parametrize("bad", [np.zeros((0, 5), np.uint8), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros((2, 2, 2, 3), np.uint8),
                                 np.full((2, 2), np.nan, np.float32)])
def test_bad_arrays_refused(bad):
    with pytest.raises(InvalidImageError):
        load_image(bad)


# -- refusals ----------------------------------------------------------------------------------

def refused(source, *words):
    with pytest.raises(InvalidImageError) as info:
        load_image(source)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "PNG, JPEG" in msg, msg  # says which formats are accepted
    for w in words:
        assert w in msg.lower(), msg
    return msg


def test_truncated_files_refused():
    jpeg = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3),
                                                                    dtype=np.uint8)), "JPEG")
    refused(jpeg[: len(jpeg) // 2], "truncated")
    png = encode(Image.fromarray(gradient(64, 64)), "PNG")
    refused(png[: len(png) // 2])


def test_empty_random_and_text_refused(tmp_path):
    refused(b"", "empty")
    refused(np.random.default_rng(1).bytes(4096).lstrip(b"\x89\xff"), "not a recognised image")
    fake = tmp_path / "photo.jpg"
    fake.write_text("this is not an image, just text\n")
    msg = refused(fake, "not a recognised image")
    assert "photo.jpg" in msg


def test_bomb_header_refused():
    refused(png_claiming(100_000, 100_000), "bomb")
    with pytest.raises(InvalidImageError, match="bomb"):
        load_image(png_claiming(300, 300), max_pixels=10_000)


def test_missing_path_and_wrong_types(tmp_path):
    with pytest.raises(InvalidImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    for bad in (12, None, torch.zeros(3, 4, 4)):
        with pytest.raises(InvalidImageError):
            load_image(bad)


def test_no_file_handle_left_open(tmp_path):
    p = tmp_path / "g.png"
    Image.fromarray(gradient()).save(p)
    fd_dir = "/proc/self/fd"
    before = len(os.listdir(fd_dir))
    for _ in range(20):
        load_image(p)
    assert len(os.listdir(fd_dir)) == before


# -- image_to_tensor ---------------------------------------------------------------------------

def test_image_to_tensor_matches_plain_reference():
    arr = np.random.default_rng(2).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    t = image_to_tensor(img, 64)
    assert t.shape == (3, 64, 64) and t.dtype == torch.float32
    ref = np.asarray(img.resize((64, 64), Image.BILINEAR)).astype(np.float32) / 255.0
    assert torch.equal(t, torch.from_numpy(ref).permute(2, 0, 1))
    same = image_to_tensor(Image.fromarray(arr[:30, :30]), 30)
    assert torch.equal(same, torch.from_numpy(arr[:30, :30] / 255.0).float().permute(2, 0, 1))
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
