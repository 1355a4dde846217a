"""Box-aware augmentations (the SSD paper's recipe): flip, IoU crop, zoom-out, photometric jitter;
and, for few-shot sets (the ``teach`` recipe), small rotations and Gaussian blur.

Each works on ``(PIL RGB image, boxes (M,4) float pixel corners, labels (M,) long)`` and returns
the same triple; randomness comes from a ``numpy.random.Generator`` the caller passes in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from ssd_core.boxes import box_iou_numpy
from ssd_core.errors import ConfigError


def hflip(img: Image.Image, boxes: torch.Tensor) -> tuple[Image.Image, torch.Tensor]:
    """Mirror left-right: image and pixel boxes (M,4); applying it twice is the identity."""
    w = img.width
    out = boxes.clone()
    out[:, 0] = w - boxes[:, 2]
    out[:, 2] = w - boxes[:, 0]
    return ImageOps.mirror(img), out


def zoom_out(img: Image.Image, boxes: torch.Tensor, rng: np.random.Generator,
             max_scale: float = 2.0, fill=None) -> tuple[Image.Image, torch.Tensor]:
    """Place the image at a random spot on a canvas up to ``max_scale`` times larger (boxes move).

    ``fill`` defaults to the image's mean colour, so the canvas edge is not a free cue.
    """
    scale = float(rng.uniform(1.0, max_scale))
    w, h = img.size
    cw, ch = max(w, round(w * scale)), max(h, round(h * scale))
    left, top = int(rng.integers(0, cw - w + 1)), int(rng.integers(0, ch - h + 1))
    if fill is None:
        fill = tuple(int(v) for v in np.asarray(img).reshape(-1, 3).mean(0))
    canvas = Image.new("RGB", (cw, ch), fill)
    canvas.paste(img, (left, top))
    shift = torch.tensor([left, top, left, top], dtype=boxes.dtype)
    return canvas, boxes + shift


def random_iou_crop(img: Image.Image, boxes: torch.Tensor, labels: torch.Tensor,
                    rng: np.random.Generator,
                    min_ious=(None, 0.1, 0.3, 0.5, 0.7, 0.9), min_scale: float = 0.3,
                    max_aspect: float = 2.0, trials: int = 40):
    """SSD's random crop: a patch whose IoU with some object is >= a random minimum.

    Objects whose centre lies in the patch are kept and clipped to it; the others are outside the
    new image by construction. Returns (image, boxes (M',4), labels (M',)); unchanged if no
    acceptable patch is found in ``trials`` tries or when ``None`` is drawn.
    """
    min_iou = min_ious[int(rng.integers(0, len(min_ious)))]
    if min_iou is None:
        return img, boxes, labels
    w, h = img.size
    b = boxes.double().numpy().reshape(-1, 4)
    centres = (b[:, :2] + b[:, 2:]) / 2
    for _ in range(trials):
        cw, ch = rng.uniform(min_scale, 1.0) * w, rng.uniform(min_scale, 1.0) * h
        if not 1 / max_aspect <= cw / ch <= max_aspect:
            continue
        x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
        crop = np.array([x0, y0, x0 + cw, y0 + ch]).round()
        if crop[2] - crop[0] < 1 or crop[3] - crop[1] < 1:
            continue
        if len(b):
            if box_iou_numpy(crop, b).max() < min_iou:
                continue
            keep = ((centres > crop[:2]) & (centres < crop[2:])).all(1)
            if not keep.any():
                continue
        else:
            keep = np.zeros(0, dtype=bool)
        kept = b[keep].copy()
        kept[:, :2] = np.maximum(kept[:, :2], crop[:2]) - crop[:2]
        kept[:, 2:] = np.minimum(kept[:, 2:], crop[2:]) - crop[:2]
        idx = torch.from_numpy(np.flatnonzero(keep))
        patch = img.crop(tuple(int(v) for v in crop))
        return patch, torch.from_numpy(kept).to(boxes.dtype), labels[idx]
    return img, boxes, labels


def photometric(img: Image.Image, rng: np.random.Generator, brightness: float = 0.25,
                contrast: float = 0.25, saturation: float = 0.25,
                hue: float = 0.03) -> Image.Image:
    """Random brightness, contrast, saturation (factors 1 +- amount) and hue shift (+- turns)."""
    ops = [(ImageEnhance.Brightness, brightness), (ImageEnhance.Contrast, contrast),
           (ImageEnhance.Color, saturation)]
    for i in rng.permutation(len(ops)):
        cls, amount = ops[i]
        if amount > 0:
            img = cls(img).enhance(float(rng.uniform(1 - amount, 1 + amount)))
    if hue > 0:
        shift = int(round(rng.uniform(-hue, hue) * 256)) % 256
        if shift:
            h, s, v = img.convert("HSV").split()
            h = h.point([(x + shift) % 256 for x in range(256)])
            img = Image.merge("HSV", (h, s, v)).convert("RGB")
    return img


def rotate(img: Image.Image, boxes: torch.Tensor, degrees: float,
           fill=None) -> tuple[Image.Image, torch.Tensor]:
    """Rotate by ``degrees`` (counter-clockwise) about the centre, same image size; each box
    becomes its rotated corners' enclosing box clipped to the image (boxes (M,4) px). Boxes
    that leave the image entirely are kept at zero size for the caller to drop. ``fill``
    (corners the rotation uncovers) defaults to the image's mean colour; 0 degrees is the
    identity."""
    if degrees == 0:
        return img, boxes
    w, h = img.size
    if fill is None:
        fill = tuple(int(v) for v in np.asarray(img).reshape(-1, 3).mean(0))
    out = img.rotate(degrees, resample=Image.BILINEAR, fillcolor=fill)
    if len(boxes) == 0:
        return out, boxes
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    b = boxes.double().numpy().reshape(-1, 4)
    xs = b[:, [0, 2, 2, 0]] - w / 2
    ys = b[:, [1, 1, 3, 3]] - h / 2
    # PIL rotates counter-clockwise on screen, where y grows downwards.
    rx, ry = c * xs + s * ys + w / 2, -s * xs + c * ys + h / 2
    new = np.stack([rx.min(1), ry.min(1), rx.max(1), ry.max(1)], 1)
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, w)
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, h)
    return out, torch.from_numpy(new).to(boxes.dtype)


def blur(img: Image.Image, radius: float) -> Image.Image:
    """Gaussian blur of ``radius`` pixels (PIL's standard deviation); 0 is the identity."""
    return img.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else img


@dataclass
class Augment:
    """Which augmentations to apply and how often (probabilities in [0, 1]).

    Call: ``aug(img, boxes (M,4) px, labels (M,), rng) -> (img, boxes, labels)``; images may
    change size (crop / zoom-out), the dataset resizes to the model's square afterwards.
    """

    hflip: float = 0.5
    iou_crop: float = 0.5
    zoom_out: float = 0.5
    zoom_max: float = 2.0
    photometric: float = 0.5
    rotate: float = 0.0  # probability of a small rotation (teach recipe)
    rotate_max: float = 10.0  # degrees, drawn uniformly in +-rotate_max
    blur: float = 0.0  # probability of a Gaussian blur
    blur_max: float = 1.5  # radius in pixels of the image as sampled, drawn in (0, blur_max]

    def __post_init__(self):
        for name in ("hflip", "iou_crop", "zoom_out", "photometric", "rotate", "blur"):
            p = getattr(self, name)
            if not 0.0 <= float(p) <= 1.0:
                raise ConfigError(f"Augment.{name} is a probability; got {p}, use 0..1.")
        if self.zoom_max < 1.0:
            raise ConfigError(f"Augment.zoom_max must be >= 1 (got {self.zoom_max}).")
        if not 0.0 <= self.rotate_max <= 45.0:
            raise ConfigError(f"Augment.rotate_max is in degrees, 0..45 (got {self.rotate_max}).")
        if self.blur_max < 0:
            raise ConfigError(f"Augment.blur_max must be >= 0 (got {self.blur_max}).")

    @property
    def host_only(self) -> list[str]:
        """The settings only the host (PIL) path implements, where they are on."""
        return [n for n in ("rotate", "blur") if getattr(self, n) > 0]

    def __call__(self, img, boxes, labels, rng: np.random.Generator):
        if self.photometric and rng.random() < self.photometric:
            img = photometric(img, rng)
        # Rotation and blur before zoom-out, on the smaller image (drawn only when on, so an
        # Augment without them draws exactly as before).
        if self.rotate and rng.random() < self.rotate:
            img, boxes = rotate(img, boxes, float(rng.uniform(-self.rotate_max, self.rotate_max)))
            keep = ((boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1))
            boxes, labels = boxes[keep], labels[keep]
        if self.blur and rng.random() < self.blur:
            img = blur(img, float(rng.uniform(0, self.blur_max)))
        if self.zoom_out and rng.random() < self.zoom_out:
            img, boxes = zoom_out(img, boxes, rng, self.zoom_max)
        if self.iou_crop and rng.random() < self.iou_crop:
            img, boxes, labels = random_iou_crop(img, boxes, labels, rng)
        if self.hflip and rng.random() < self.hflip:
            img, boxes = hflip(img, boxes)
        return img, boxes, labels


# The teach recipe's augmentation for few-shot sets: the SSD recipe, more often, plus small
# rotations and blur.
STRONG = dict(hflip=0.5, iou_crop=0.6, zoom_out=0.5, zoom_max=2.5, photometric=0.8,
              rotate=0.5, rotate_max=10.0, blur=0.3, blur_max=1.5)


def resolve_augment(augment) -> Augment | None:
    """None/False -> None; True/"ssd" -> Augment(); "strong" -> Augment(**STRONG); a dict ->
    Augment(**dict); an Augment as is."""
    if augment is None or augment is False:
        return None
    if augment is True or augment in ("ssd", "default"):
        return Augment()
    if augment == "strong":
        return Augment(**STRONG)
    if isinstance(augment, dict):
        return Augment(**augment)
    if isinstance(augment, Augment) or callable(augment):
        return augment
    raise ConfigError(f"augment={augment!r} is not understood; use None, True, 'ssd', a dict of "
                      "Augment fields or an Augment.")
