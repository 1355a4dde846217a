"""Load any image a user gives us, safely, as an RGB PIL image; turn it into a model tensor.

``load_image`` is the single door for user images (uploads, camera, paths, arrays): it decodes
fully and closes everything, applies EXIF orientation, flattens every Pillow mode to RGB (alpha
composited on white), keeps only the first frame of animations and refuses decompression bombs
and non-images with :class:`ssd_core.errors.InvalidImageError`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ssd_core.errors import InvalidImageError

# Raster formats we decode. A whitelist, because some Pillow plugins (EPS) call external
# programs and could hang or do worse on hostile input.
ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "ICO", "TGA")
ACCEPTED_TEXT = "PNG, JPEG, GIF, BMP, TIFF, WebP, PPM/PGM, ICO, TGA"

DEFAULT_MAX_PIXELS = 50_000_000  # ~ 8660 x 5770; anything larger is treated as a bomb
DEFAULT_MAX_BYTES = 200 * 1024 * 1024

_WHITE = (255, 255, 255)


# Between what was wrong with an image and the list of accepted inputs (for programmers).
ACCEPTED_MARK = " Accepted: "


def _refuse(what: str) -> InvalidImageError:
    """The refusal: ``what`` was wrong (its ``reason``), then what is accepted."""
    return InvalidImageError(f"{what}{ACCEPTED_MARK}an image file in one of {ACCEPTED_TEXT}, "
                             "a PIL image, or a numpy array (H, W), (H, W, 3) or (H, W, 4).",
                             reason=what)


def _read_bytes(source, max_bytes: int) -> tuple[bytes, str]:
    """Return ``(data, name)`` for a path, bytes or file object; files are read whole and closed."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "The image data"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidImageError(f"Image file not found: {str(path)!r}. Check the path.")
        if path.stat().st_size > max_bytes:
            raise _refuse(f"{path.name}: file is larger than {max_bytes // 2**20} MiB.")
        with open(path, "rb") as f:
            return f.read(), repr(path.name)
    if hasattr(source, "getvalue"):  # Streamlit UploadedFile / BytesIO: independent of position
        data = source.getvalue()
    elif hasattr(source, "read"):
        if hasattr(source, "seek"):
            with contextlib.suppress(OSError, ValueError):
                source.seek(0)
        data = source.read(max_bytes + 1)
    else:
        raise _refuse(f"Cannot read an image from a {type(source).__name__}.")
    if isinstance(data, str):
        raise _refuse("The file object gave text, not bytes (open it in binary mode 'rb').")
    name = repr(str(source.name)) if getattr(source, "name", None) else "The uploaded file"
    if len(data) > max_bytes:
        raise _refuse(f"{name}: file is larger than {max_bytes // 2**20} MiB.")
    return bytes(data), name


def _check_pixels(w: int, h: int, max_pixels: int, name: str) -> None:
    if w < 1 or h < 1:
        raise _refuse(f"{name}: image has no pixels ({w}x{h}).")
    if w * h > max_pixels:
        raise _refuse(f"{name}: image is {w}x{h} = {w * h:,} pixels, over the limit of "
                      f"{max_pixels:,} (possible decompression bomb). Resize it first.")


def _decode(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Decode the first frame fully from memory; returns a loaded image with nothing left open."""
    if not data:
        raise _refuse(f"{name} is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as im:
                _check_pixels(im.width, im.height, max_pixels, name)
                fmt = im.format  # a freshly opened file is on its first frame: no seeking
                im.load()
                try:
                    oriented = ImageOps.exif_transpose(im)
                except Exception:  # malformed EXIF: keep pixels as stored rather than refuse
                    oriented = im
                # copy() detaches from the decoder (and the BytesIO), so the `with` closes all.
                out = oriented.copy() if oriented is im else oriented
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's own check fires first on the largest headers and quotes Pillow's limit, not
        # ours: say it in the same words as _check_pixels.
        claimed = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        raise _refuse(f"{name}: image claims {size}, over the limit of {max_pixels:,} "
                      "(possible decompression bomb). Resize it first.") from None
    except Image.UnidentifiedImageError:
        raise _refuse(f"{name} is not a recognised image.") from None
    except Exception as e:  # truncated data, corrupt chunks, decoder errors of every kind
        raise _refuse(f"{name} could not be decoded ({type(e).__name__}: {e}); "
                      "the file may be truncated or corrupt.") from None
    out.info["format"] = fmt
    return out


def _to_uint8_gray(arr: np.ndarray) -> np.ndarray:
    """Map a 16-bit / int32 / float single-channel array to uint8 (documented heuristics)."""
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0 and hi <= 1.0:  # float image in [0, 1]
        arr = arr * 255.0
    elif lo >= 0 and hi <= 255:
        pass
    elif lo >= 0 and hi <= 65535:  # 16-bit data
        arr = arr / 257.0
    else:  # arbitrary range: stretch
        arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; alpha is composited on white; high bit depths scaled to 8 bits."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        arr = np.asarray(im).astype(np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("I", "F"):
        return Image.fromarray(_to_uint8_gray(np.asarray(im)), "L").convert("RGB")
    if mode == "La":  # premultiplied; Pillow converts it to LA only
        im, mode = im.convert("LA"), "LA"
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        mode in ("P", "L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV


def _from_array(arr, max_pixels: int) -> Image.Image:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise _refuse(f"A numpy array of shape {arr.shape} is not an image.")
    _check_pixels(arr.shape[1], arr.shape[0], max_pixels, "The array")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise _refuse("The float array contains NaN or infinity.")
        scale = 255.0 if float(arr.max(initial=0.0)) <= 1.0 else 1.0  # [0,1] floats or [0,255]
        arr = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    elif arr.dtype == np.uint16:
        arr = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    elif arr.dtype.kind in "iu":
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise _refuse(f"A numpy array of dtype {arr.dtype} is not an image.")
    arr = np.ascontiguousarray(arr)
    mode = "L" if arr.ndim == 2 else ("RGB" if arr.shape[2] == 3 else "RGBA")
    return _to_rgb(Image.fromarray(arr, mode))


def load_image(source, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_BYTES) -> Image.Image:
    """Path / bytes / file object / PIL image / numpy array -> a new, fully loaded RGB PIL image.

    Raises InvalidImageError (a ValueError) naming the problem and the accepted formats.
    """
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, max_pixels, "The PIL image")
        if source.tell() != 0:  # the caller moved to a later frame of an animation
            source.seek(0)
        try:
            source.load()
        except Exception as e:
            raise _refuse(f"The PIL image could not be loaded ({type(e).__name__}: {e}).") from None
        out = _to_rgb(source)
        return out.copy() if out is source else out
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, torch.Tensor):
        raise _refuse("A torch tensor is not accepted here; use .numpy() with shape (H, W, C).")
    data, name = _read_bytes(source, max_bytes)
    return _to_rgb(_decode(data, name, max_pixels))


def image_to_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """RGB PIL image -> float tensor (3, size, size) in [0, 1] (bilinear resize to a square)."""
    if img.mode != "RGB":
        img = _to_rgb(img)
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    # One contiguous uint8 buffer per channel, then a single cast: ~10x faster than permuting
    # an interleaved (H,W,3) array before the float conversion.
    w, h = img.size
    planes = [torch.frombuffer(bytearray(ch.tobytes()), dtype=torch.uint8) for ch in img.split()]
    return torch.stack(planes).view(3, h, w).float().div_(255.0)
