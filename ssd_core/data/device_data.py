"""A detection dataset held on the training device, augmented there in batches.

``DeviceData.from_dataset(ds, device)`` renders every image once (PIL, on the host) into one
uint8 tensor ``(N, 3, S, S)`` on ``device`` and the targets into ``(N, M, 5)`` (rows of -1 pad);
``batch(indices, generator)`` then gives ``(images (B,3,S,S) float in [0,1], targets (B,M,5))``
with no host work per step, so PIL never limits a GPU. Without augmentation a batch equals
``detection_collate([ds[i] for i in indices])`` exactly (same pixels, same targets, padding
aside).

The batched augmentations mirror ``ssd_core.data.transforms.Augment`` (same probabilities and
ranges, drawn per image from ``generator``): photometric jitter (brightness, contrast,
saturation, in that fixed order, and a small hue rotation), zoom-out onto a mean-colour canvas,
SSD's IoU crop (keeps the objects whose centre lies inside the patch, clipped to it) and a
horizontal flip. Zoom-out and crop are one window per image, resampled with ``grid_sample``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ssd_core.boxes import box_iou
from ssd_core.errors import ConfigError
from ssd_core.images import image_to_tensor
from ssd_core.seeding import DEVICE_AUGMENT, derive_seed, fresh_seed

from .dataset import DetectionDataset, make_target, pad_targets
from .transforms import Augment

_MIN_IOUS = (0.1, 0.3, 0.5, 0.7, 0.9)  # the random crop's choices besides "no crop"


def renderable(ds) -> bool:
    """Whether ``ds`` items are plain ``DetectionDataset`` items (``sample`` + make_target), so
    rendering ``sample(i)`` once gives the same images and targets as ``ds[i]``."""
    return (isinstance(ds, DetectionDataset)
            and type(ds).__getitem__ is DetectionDataset.__getitem__)


def device_augment(ds) -> Augment | None:
    """The dataset's Augment (mirrored on the device), None without one; a ConfigError for a
    custom augmentation callable or an Augment with rotation or blur, which only the host path
    can run."""
    aug = getattr(ds, "augment", None)
    if isinstance(aug, Augment) and aug.host_only:
        raise ConfigError(f"The device data path does not implement Augment's "
                          f"{' and '.join(aug.host_only)}; set device_data='off' (the host "
                          "path runs them).", field="device_data")
    if aug is None or isinstance(aug, Augment):
        return aug
    raise ConfigError("The dataset has a custom augmentation; the device data path only "
                      "mirrors ssd_core's Augment. Set device_data='off'.", field="device_data")


class DeviceData:
    """Images ``(N,3,S,S)`` uint8 and targets ``(N,M,5)`` on one device (see the module)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, class_names=None,
                 augment: Augment | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, S, S), got {images.dtype} "
                             f"{tuple(images.shape)}")
        if targets.dim() != 3 or targets.shape[0] != images.shape[0] or targets.shape[2] != 5:
            raise ValueError(f"targets must be (N, M, 5), got {tuple(targets.shape)}")
        self.images, self.targets = images, targets.to(images.device, torch.float32)
        self.class_names = None if class_names is None else list(class_names)
        self.augment = augment

    @classmethod
    def from_dataset(cls, ds, device, size: int | None = None, augment="dataset",
                     progress=None):
        """Render ``ds.sample(i)`` for every i once at ``size`` (default: the dataset's);
        ``progress(done, total)`` is called every 256 images and at the end."""
        size = int(size or ds.image_size)
        n = len(ds)
        images = torch.empty((n, 3, size, size), dtype=torch.uint8)
        targets = []
        for i in range(n):
            if progress is not None and i % 256 == 0:
                progress(i, n)
            img, boxes, labels = ds.sample(i)
            # image_to_tensor's own resize and conversion, so the pixels are ds[i]'s exactly.
            images[i] = image_to_tensor(img, size).mul_(255.0).round_().to(torch.uint8)
            targets.append(make_target(boxes, labels, img.size))
        padded = pad_targets(targets)
        if progress is not None:
            progress(n, n)
        aug = device_augment(ds) if augment == "dataset" else augment
        return cls(images.to(device), padded, getattr(ds, "class_names", None), aug)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def nbytes(self) -> int:
        return self.images.numel() + self.targets.numel() * 4

    def batch(self, indices, generator: torch.Generator | None = None):
        """-> (images (B,3,S,S) float32 in [0,1], targets (B,M,5)) for ``indices`` (B,)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        if idx.device != self.device:
            idx = idx.to(self.device)
        X = self.images.index_select(0, idx).float().div_(255.0)
        Y = self.targets.index_select(0, idx)
        if self.augment is not None:
            X, Y = augment_batch(X, Y, self.augment, generator)
        return X, Y

    def batches(self, indices, batch_size: int, seed: int | None = None, first_batch: int = 0):
        """Batches over a list of indices in order. Batch k (counting from ``first_batch``, so a
        resumed epoch numbers on) is augmented with the device generator seeded
        ``derive_seed(seed, DEVICE_AUGMENT, k)``; ``seed`` None takes fresh entropy."""
        seed = fresh_seed() if seed is None else int(seed)
        gen = torch.Generator(device=self.device)
        # One copy of the epoch's order to the device: slicing it needs no host transfer.
        order = torch.as_tensor(list(indices), dtype=torch.long).to(self.device)
        for k, start in enumerate(range(0, len(order), batch_size), start=first_batch):
            gen.manual_seed(derive_seed(seed, DEVICE_AUGMENT, k))
            yield self.batch(order[start:start + batch_size], gen)


# ---------------------------------------------------------------- batched augmentations


_CONSTANTS: dict = {}


def _const(values, device) -> torch.Tensor:
    """A constant float32 tensor on ``device``, copied there once (a copy to a GPU waits)."""
    key = (values, str(device))
    t = _CONSTANTS.get(key)
    if t is None:
        t = _CONSTANTS[key] = torch.tensor(values, dtype=torch.float32).to(device)
    return t


def _uniform(shape, lo, hi, gen, device):
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


def _chance(p, n, gen, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) < p


def hflip_batch(X: torch.Tensor, Y: torch.Tensor, flip: torch.Tensor):
    """Mirror the images where ``flip`` (B,) is True, and their boxes; padding rows stay."""
    X = torch.where(flip[:, None, None, None], X.flip(-1), X)
    valid = (Y[..., 0] >= 0) & flip[:, None]
    boxes = Y[..., 1:].clone()
    boxes[..., 0], boxes[..., 2] = 1 - Y[..., 3], 1 - Y[..., 1]
    Y = torch.cat([Y[..., :1], torch.where(valid[..., None], boxes, Y[..., 1:])], dim=-1)
    return X, Y


_GREY = (0.299, 0.587, 0.114)  # Pillow's L conversion weights (ImageEnhance uses them)


def photometric_batch(X, apply, gen, brightness=0.25, contrast=0.25, saturation=0.25,
                      hue=0.03):
    """Brightness, contrast, saturation (factors 1 +- amount) and a hue rotation (+- turns)
    on the images where ``apply`` (B,) is True: (B,3,H,W) in [0,1] -> same."""
    B, dev = X.shape[0], X.device
    w = _const(_GREY, dev).to(X.dtype).view(1, 3, 1, 1)

    def factor(amount):
        f = _uniform(B, 1 - amount, 1 + amount, gen, dev)
        return torch.where(apply, f, torch.ones_like(f)).view(B, 1, 1, 1).to(X.dtype)

    X = X * factor(brightness)
    grey_mean = (X * w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    X = (X - grey_mean) * factor(contrast) + grey_mean
    grey = (X * w).sum(1, keepdim=True)
    X = (X - grey) * factor(saturation) + grey
    if hue > 0:  # rotate the chroma plane of YIQ by the angle of the hue shift
        a = _uniform(B, -hue, hue, gen, dev) * (2 * math.pi)
        a = torch.where(apply, a, torch.zeros_like(a))
        X = _rotate_hue(X, a)
    return X.clamp_(0.0, 1.0)


_RGB2YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_YIQ2RGB = tuple(tuple(r) for r in torch.linalg.inv(torch.tensor(_RGB2YIQ, dtype=torch.float64))
                 .tolist())


def _rotate_hue(X, angle):
    to_yiq, to_rgb = _const(_RGB2YIQ, X.device), _const(_YIQ2RGB, X.device)
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    rot = torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, c, -s], -1),
                       torch.stack([zero, s, c], -1)], -2)  # (B,3,3)
    m = to_rgb @ rot @ to_yiq  # (B,3,3)
    return torch.einsum("bij,bjhw->bihw", m.to(X.dtype), X)


def zoom_crop_windows(Y, gen, zoom_p=0.5, zoom_max=2.0, crop_p=0.5, min_scale=0.3,
                      max_aspect=2.0, trials=40):
    """Per image a source window (B,4) ``[u0,v0,u1,v1]`` in the image's normalized coordinates
    (beyond [0,1]: zoom-out canvas) and the crop's ``keep`` mask (B,M) of boxes whose centre
    lies inside the window. Zoom-out first (canvas up to ``zoom_max`` sides), then SSD's IoU
    crop of the canvas (a random minimum IoU or no crop; ``trials`` candidates, the first
    acceptable one wins, none: no crop)."""
    B, dev = Y.shape[0], Y.device
    boxes, valid = Y[..., 1:], Y[..., 0] >= 0
    # Zoom-out: the image sits at (left, top) on a canvas of side `scale` (image sides).
    scale = _uniform(B, 1.0, zoom_max, gen, dev)
    scale = torch.where(_chance(zoom_p, B, gen, dev), scale, torch.ones_like(scale))
    left = _uniform(B, 0.0, 1.0, gen, dev) * (scale - 1)
    top = _uniform(B, 0.0, 1.0, gen, dev) * (scale - 1)
    canvas = torch.stack([-left, -top, scale - left, scale - top], -1)  # (B,4)
    # IoU crop: T candidates per image, sizes as fractions of the canvas.
    do_crop = _chance(crop_p, B, gen, dev)
    choice = torch.randint(0, len(_MIN_IOUS) + 1, (B,), generator=gen, device=dev)
    min_iou = _const((0.0, *_MIN_IOUS), dev)[choice]
    do_crop &= choice > 0
    cw = _uniform((B, trials), min_scale, 1.0, gen, dev) * scale[:, None]
    ch = _uniform((B, trials), min_scale, 1.0, gen, dev) * scale[:, None]
    x0 = canvas[:, None, 0] + _uniform((B, trials), 0.0, 1.0, gen, dev) * (scale[:, None] - cw)
    y0 = canvas[:, None, 1] + _uniform((B, trials), 0.0, 1.0, gen, dev) * (scale[:, None] - ch)
    cand = torch.stack([x0, y0, x0 + cw, y0 + ch], -1)  # (B,T,4)
    aspect_ok = (cw / ch >= 1 / max_aspect) & (cw / ch <= max_aspect)
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # (B,M,2)
    inside = ((centres[:, None] > cand[:, :, None, :2])
              & (centres[:, None] < cand[:, :, None, 2:])).all(-1) & valid[:, None]  # (B,T,M)
    iou = box_iou(cand, boxes).masked_fill(~valid[:, None], -1.0)
    has_objects = valid.any(1, keepdim=True)
    ok = aspect_ok & torch.where(
        has_objects, (iou.max(-1).values >= min_iou[:, None]) & inside.any(-1),
        torch.ones_like(aspect_ok))
    first = torch.where(ok, torch.arange(trials, 0, -1, device=dev), 0).argmax(1)  # (B,)
    found = ok.any(1) & do_crop
    pick = cand[torch.arange(B, device=dev), first]
    window = torch.where(found[:, None], pick, canvas)
    keep = torch.where(found[:, None], inside[torch.arange(B, device=dev), first], valid)
    return window, keep


def apply_windows(X, Y, window, keep, fill=None):
    """Resample each image's window (B,4) to the full (H,W) and move its boxes there; boxes not
    in ``keep`` (B,M) become padding rows, the others are clipped to the window. Outside the
    image the canvas has ``fill`` (default: each image's mean colour)."""
    B, _, H, W = X.shape
    dev = X.device
    if fill is None:
        fill = X.mean((2, 3), keepdim=True)
    u0, v0, u1, v1 = window.unbind(-1)
    # grid_sample's coordinates: -1..1 over the source image (align_corners=False).
    xs = (torch.arange(W, device=dev, dtype=X.dtype) + 0.5) / W
    ys = (torch.arange(H, device=dev, dtype=X.dtype) + 0.5) / H
    gx = (u0[:, None] + xs[None] * (u1 - u0)[:, None]) * 2 - 1  # (B,W)
    gy = (v0[:, None] + ys[None] * (v1 - v0)[:, None]) * 2 - 1  # (B,H)
    grid = torch.stack([gx[:, None, :].expand(B, H, W), gy[:, :, None].expand(B, H, W)], -1)
    out = F.grid_sample(X - fill, grid.to(X.dtype), mode="bilinear", padding_mode="zeros",
                        align_corners=False) + fill
    size = (window[:, 2:] - window[:, :2]).repeat(1, 2)[:, None]  # (B,1,4)
    boxes = torch.maximum(torch.minimum(Y[..., 1:], window[:, None, 2:].repeat(1, 1, 2)),
                          window[:, None, :2].repeat(1, 1, 2))
    boxes = ((boxes - window[:, None, :2].repeat(1, 1, 2)) / size).clamp(0.0, 1.0)
    rows = torch.cat([Y[..., :1], boxes], -1)
    Y = torch.where(keep[..., None], rows, torch.full_like(rows, -1.0))
    return out.clamp_(0.0, 1.0), _pack(Y)


def _pack(Y):
    """Move the object rows of each image first (stable), padding rows (class < 0) last."""
    order = torch.argsort((Y[..., 0] < 0).to(torch.int8), dim=1, stable=True)
    return Y.gather(1, order[..., None].expand_as(Y))


def augment_batch(X, Y, aug: Augment, gen: torch.Generator | None = None):
    """Augment a batch on its device as ``aug`` would per image (see the module docstring),
    drawing from ``gen`` (None: a generator of fresh entropy, never torch's global one)."""
    B, dev = X.shape[0], X.device
    if gen is None:
        gen = torch.Generator(device=dev)
        gen.manual_seed(fresh_seed())
    if aug.photometric:
        X = photometric_batch(X, _chance(aug.photometric, B, gen, dev), gen)
    if aug.zoom_out or aug.iou_crop:
        window, keep = zoom_crop_windows(Y, gen, aug.zoom_out, aug.zoom_max, aug.iou_crop)
        X, Y = apply_windows(X, Y, window, keep)
    if aug.hflip:
        X, Y = hflip_batch(X, Y, _chance(aug.hflip, B, gen, dev))
    return X, Y
