"""A deterministic synthetic detection dataset: bananas (crescents), rings and stars.

Every image is drawn from ``numpy.random.default_rng([seed, i])`` with Pillow, so ``sample(i)``
is random-access, identical on every machine, and cheap (about a millisecond at 256x256).
Objects get a random colour (contrasted with the background under them), texture, rotation,
aspect and a size from 10% to 85% of the image side; 1-6 objects per image with bounded overlap;
backgrounds are procedural (gradients, blotches, faint patterns, grain) or the user's own
photos, with clutter (thin lines, dots, rectangles) that looks nothing like the classes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageChops, ImageDraw

from ssd_core.boxes import box_iou_numpy
from ssd_core.errors import ConfigError
from ssd_core.images import load_image

from .dataset import DetectionDataset
from .transforms import resolve_augment

CLASS_NAMES = ("banana", "ring", "star")

PRESETS = {
    # classes, objects per image (min, max), object size range (fraction of the side)
    "default": dict(classes=CLASS_NAMES, num_objects=(1, 6), size_range=(0.1, 0.85)),
    # like the chapter's banana data: one class, one object per image
    "book": dict(classes=("banana",), num_objects=(1, 1), size_range=(0.1, 0.5)),
}

_MIN_CONTRAST = 120.0  # Euclidean RGB distance between an object's colour and the ground under it


def _circle(n: int, radius: float = 1.0, cx: float = 0.0, a0: float = 0.0,
            a1: float = 2 * math.pi) -> np.ndarray:
    """Points (n,2) on a circle arc from angle a0 to a1."""
    t = np.linspace(a0, a1, n)
    return np.stack([cx + radius * np.cos(t), radius * np.sin(t)], 1)


def _unit_shape(name: str, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """The shape in unit coordinates: a list of (polygon points (K,2), fill 255 or 0 to cut)."""
    if name == "banana":
        # A crescent: unit disk minus a disk of radius r centred at (d, 0); tapered tips.
        r, d = rng.uniform(0.78, 0.95), rng.uniform(0.3, 0.5)
        x = (1 + d * d - r * r) / (2 * d)
        y = math.sqrt(max(1 - x * x, 0.0))
        a = math.atan2(y, x)
        p = math.atan2(y, x - d)
        outer = _circle(40, 1.0, 0.0, a, 2 * math.pi - a)
        inner = _circle(32, r, d, 2 * math.pi - p, p)
        return [(np.concatenate([outer, inner]), 255)]
    if name == "ring":
        return [(_circle(48), 255), (_circle(40, rng.uniform(0.45, 0.7)), 0)]
    if name == "star":
        k = int(rng.integers(5, 7))
        radii = np.tile([1.0, rng.uniform(0.38, 0.55)], k)
        t = np.arange(2 * k) * (math.pi / k)
        return [(np.stack([radii * np.cos(t), radii * np.sin(t)], 1), 255)]
    raise ConfigError(f"Unknown synthetic class {name!r}; choose from {list(CLASS_NAMES)}.")


def _draw_mask(name: str, rng: np.random.Generator, side: float):
    """Rasterize one rotated, squashed shape whose longest side is ``side`` pixels.

    Returns (mask PIL 'L' cropped to the shape, mask as bool array (h,w)).
    """
    polys = _unit_shape(name, rng)
    theta = rng.uniform(0, 2 * math.pi)
    aspect = rng.uniform(0.55, 1.0)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    pts = [(p * np.array([1.0, aspect])) @ rot.T for p, _ in polys]
    allp = np.concatenate(pts)
    lo, hi = allp.min(0), allp.max(0)
    scale = (side - 1) / (hi - lo).max()
    size = np.ceil((hi - lo) * scale).astype(int) + 1
    mask = Image.new("L", (int(size[0]), int(size[1])), 0)
    draw = ImageDraw.Draw(mask)
    for p, (_, fill) in zip(pts, polys):
        draw.polygon([tuple(v) for v in ((p - lo) * scale).tolist()], fill=fill)
    m = np.asarray(mask) > 0
    cols, rows = np.flatnonzero(m.any(0)), np.flatnonzero(m.any(1))
    x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    return mask.crop((int(x0), int(y0), int(x1), int(y1))), m[y0:y1, x0:x1]


def _texture(rng: np.random.Generator, h: int, w: int, base: np.ndarray,
             alt: np.ndarray) -> Image.Image:
    """An RGB (w,h) fill: solid+noise, stripes, gradient or spots between two colours (3,).

    Drawn at half resolution and enlarged (4x fewer pixels to compute; looks the same).
    """
    hh, hw = (h + 1) // 2, (w + 1) // 2
    kind = int(rng.integers(0, 4))
    if kind == 0:
        noise = rng.integers(-12, 13, (hh, hw, 1), dtype=np.int16)
        arr = np.clip(base.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    elif kind == 3:
        cell = int(rng.integers(2, 4))
        spots = rng.random((hh // cell + 1, hw // cell + 1)) < 0.35
        sel = spots.repeat(cell, 0).repeat(cell, 1)[:hh, :hw]
        arr = np.where(sel[..., None], alt.astype(np.uint8), base.astype(np.uint8))
    else:
        t = rng.uniform(0, math.pi)
        ct, st = math.cos(t), math.sin(t)
        proj = (np.arange(hw, dtype=np.float32)[None, :] * ct
                + np.arange(hh, dtype=np.float32)[:, None] * st)
        if kind == 1:
            period = rng.uniform(2, 6)
            sel = (proj // (period / 2)).astype(np.int32) & 1
            arr = np.where(sel[..., None].astype(bool), alt.astype(np.uint8),
                           base.astype(np.uint8))
        else:
            lo = min(0.0, ct * (hw - 1)) + min(0.0, st * (hh - 1))
            span = max(abs(ct) * (hw - 1) + abs(st) * (hh - 1), 1.0)
            f = ((proj - lo) * (1.0 / span))[..., None]
            arr = (base + f * (alt - base)).astype(np.uint8)
    return Image.fromarray(arr, "RGB").resize((w, h), Image.NEAREST)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Distance from colour p (3,) to the nearest colour on the segment a-b (3,)."""
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(a + t * ab - p))


def _contrasting_colour(rng: np.random.Generator, ground: np.ndarray) -> np.ndarray:
    """A random RGB colour (3,) at least _MIN_CONTRAST away from the mean ground colour (3,)."""
    for _ in range(12):
        c = rng.integers(0, 256, 3).astype(np.float32)
        if np.linalg.norm(c - ground) >= _MIN_CONTRAST:
            return c
    # Fallback: push every channel to the far end from the ground.
    return np.where(ground > 127, rng.uniform(0, 50, 3), rng.uniform(205, 255, 3)).astype(
        np.float32)


class SyntheticDetection(DetectionDataset):
    """Deterministic synthetic detection data; ``sample(i)`` -> (PIL image S x S, boxes, labels).

    n: number of images; seed: same seed -> identical pixels and boxes everywhere.
    image_size: S. backgrounds: optional list of PIL images to draw on (random crops).
    preset: "default" (banana/ring/star, 1-6 objects, sizes 10%-85%) or "book" (one banana per
    image). classes / num_objects (min,max) / size_range (min,max fraction of S) override it.
    max_iou: largest IoU between two objects' boxes; max_occlusion: largest fraction of an
    object's pixels later objects may cover. clutter: 0..1 amount of distractors; grain: add
    film grain to the background.
    augment: None, True/"ssd" or an Augment (applied in ``ds[i]`` only). cache: keep samples.
    """

    def __init__(self, n: int, seed: int = 0, image_size: int = 256, backgrounds=None,
                 preset: str = "default", classes=None, num_objects=None, size_range=None,
                 max_iou: float = 0.3, max_occlusion: float = 0.25, clutter: float = 1.0,
                 grain: bool = True, augment=None, cache: bool = False):
        if preset not in PRESETS:
            raise ConfigError(f"Unknown preset {preset!r}; choose from {sorted(PRESETS)}.")
        cfg = PRESETS[preset]
        self.n, self.seed, self.image_size, self.preset = int(n), int(seed), int(image_size), preset
        if self.n < 0 or self.image_size < 16:
            raise ConfigError(f"Need n >= 0 and image_size >= 16 (got n={n}, "
                              f"image_size={image_size}).")
        self.class_names = list(classes if classes is not None else cfg["classes"])
        unknown = [c for c in self.class_names if c not in CLASS_NAMES]
        if unknown or not self.class_names:
            raise ConfigError(f"Synthetic classes must be a non-empty subset of "
                              f"{list(CLASS_NAMES)}; got {self.class_names}.")
        self.num_objects = tuple(num_objects if num_objects is not None else cfg["num_objects"])
        self.size_range = tuple(size_range if size_range is not None else cfg["size_range"])
        if not 1 <= self.num_objects[0] <= self.num_objects[1]:
            raise ConfigError(f"num_objects must be (min, max) with 1 <= min <= max; "
                              f"got {self.num_objects}.")
        if not 0 < self.size_range[0] <= self.size_range[1] <= 1:
            raise ConfigError("size_range must satisfy 0 < min <= max <= 1; "
                              f"got {self.size_range}.")
        self.max_iou, self.max_occlusion, self.clutter = max_iou, max_occlusion, float(clutter)
        self.grain = bool(grain)
        self.augment = resolve_augment(augment)
        self.backgrounds = [self._prepare_background(b) for b in (backgrounds or [])]
        self._cache = {} if cache else None
        self._grain_tiles: dict[int, Image.Image] = {}

    def _prepare_background(self, img) -> Image.Image:
        img = load_image(img)
        img.thumbnail((2 * self.image_size, 2 * self.image_size))  # cheap crops later
        return img

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (f"SyntheticDetection(n={self.n}, seed={self.seed}, image_size={self.image_size}, "
                f"preset={self.preset!r}, classes={self.class_names})")

    def sample(self, i: int):
        """Index -> (PIL RGB image (S,S), boxes (M,4) float32 pixel corners, labels (M,) int64)."""
        i = self._index(int(i))
        if self._cache is not None and i in self._cache:
            img, boxes, labels = self._cache[i]
            return img.copy(), boxes.clone(), labels.clone()
        out = self._generate(np.random.default_rng([self.seed, i]))
        if self._cache is not None:
            self._cache[i] = (out[0].copy(), out[1].clone(), out[2].clone())
        return out

    # -- drawing -------------------------------------------------------------------------------

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A (S,S,3) uint8 background: a crop of a user photo or a procedural one."""
        s = self.image_size
        if self.backgrounds:
            src = self.backgrounds[int(rng.integers(0, len(self.backgrounds)))]
            w, h = src.size
            side = max(1, int(min(w, h) * rng.uniform(0.5, 1.0)))
            x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            box = (x0, y0, x0 + side, y0 + side)
            return np.asarray(src.resize((s, s), Image.BILINEAR, box=box))
        kind = int(rng.integers(0, 3))
        base = rng.integers(0, 256, 3)
        if kind == 0:  # smooth four-corner gradient
            corners = np.clip(base + rng.integers(-90, 91, (2, 2, 3)), 0, 255).astype(np.uint8)
            small = Image.fromarray(corners, "RGB")
        elif kind == 1:  # soft blotches
            k = int(rng.integers(3, 8))
            cells = np.clip(base + rng.integers(-60, 61, (k, k, 3)), 0, 255).astype(np.uint8)
            small = Image.fromarray(cells, "RGB")
        else:  # faint stripes or checks
            k = int(rng.integers(4, 16))
            alt = np.clip(base + rng.integers(-30, 31, 3), 0, 255)
            yy, xx = np.indices((k, k))
            sel = ((xx + yy) % 2 == 0) if rng.random() < 0.5 else (xx % 2 == 0)
            small = Image.fromarray(np.where(sel[..., None], base, alt).astype(np.uint8), "RGB")
            return np.asarray(small.resize((s, s), Image.NEAREST))
        return np.asarray(small.resize((s, s), Image.BICUBIC))

    def _grain(self, rng: np.random.Generator, img: Image.Image) -> Image.Image:
        """Add film grain: a random window of a per-dataset noise tile (fast, in Pillow)."""
        amp = int(rng.choice([0, 4, 8, 12]))
        if amp == 0 or not self.grain:
            return img
        s = self.image_size
        tile = self._grain_tiles.get(amp)
        if tile is None:  # built once per amplitude, deterministic in the seed
            g = np.random.default_rng([self.seed, 1_000_003, amp])
            noise = g.integers(128 - amp, 129 + amp, (2 * s, 2 * s), dtype=np.uint8)
            tile = self._grain_tiles[amp] = Image.fromarray(noise, "L").convert("RGB")
        x0, y0 = (int(v) for v in rng.integers(0, s + 1, 2))
        return ImageChops.add(img, tile.crop((x0, y0, x0 + s, y0 + s)), 1.0, -128)

    def _draw_clutter(self, rng: np.random.Generator, img: Image.Image) -> None:
        """Distractors unlike any class: thin lines, small dots, rectangles."""
        s, amount = self.image_size, self.clutter
        if amount <= 0:
            return
        draw = ImageDraw.Draw(img)

        def colour():
            return tuple(int(v) for v in rng.integers(0, 256, 3))

        for _ in range(int(rng.integers(0, 7) * amount)):
            p = rng.uniform(0, s, 4)
            draw.line(tuple(p.tolist()), fill=colour(), width=int(rng.integers(1, 3)))
        for _ in range(int(rng.integers(0, 16) * amount)):
            x, y = rng.uniform(0, s, 2)
            r = rng.uniform(1, 3.5)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour())
        for _ in range(int(rng.integers(0, 4) * amount)):
            w, h = rng.uniform(0.04, 0.25) * s, rng.uniform(0.02, 0.2) * s
            c, t = rng.uniform(0, s, 2), rng.uniform(0, math.pi)
            corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
            rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
            poly = [tuple(v) for v in (corners @ rot.T + c).tolist()]
            if rng.random() < 0.5:
                draw.polygon(poly, fill=colour())
            else:
                draw.polygon(poly, outline=colour(), width=int(rng.integers(1, 3)))

    def visible_fraction(self, i: int) -> torch.Tensor:
        """Fraction (M,) of each object's pixels left visible by the objects drawn over it."""
        return self._generate(np.random.default_rng([self.seed, self._index(int(i))]), True)

    def _generate(self, rng: np.random.Generator, visibility: bool = False):
        s = self.image_size
        bg = self._background(rng)
        img = self._grain(rng, Image.fromarray(bg, "RGB"))
        self._draw_clutter(rng, img)

        lo, hi = self.num_objects
        k = int(rng.integers(lo, hi + 1))
        log_lo, log_hi = math.log(self.size_range[0]), math.log(self.size_range[1])
        # Log-uniform sizes give every anchor scale its share; big ones first so they fit.
        sizes = np.sort(np.exp(rng.uniform(log_lo, log_hi, k)))[::-1]
        owner = np.full((s, s), -1, dtype=np.int16)  # which object owns each pixel (occlusion)
        boxes, labels, areas, hidden = [], [], [], []
        for size in sizes:
            label = int(rng.integers(0, len(self.class_names)))
            mask_img, m = _draw_mask(self.class_names[label], rng, max(size * s, 3.0))
            h, w = m.shape
            placed = None
            for _ in range(25):
                x0, y0 = int(rng.integers(0, s - w + 1)), int(rng.integers(0, s - h + 1))
                if self._fits(x0, y0, w, h, m, owner, boxes, areas, hidden):
                    placed = (x0, y0)
                    break
            if placed is None:
                continue
            x0, y0 = placed
            ground = bg[y0:y0 + h:4, x0:x0 + w:4].reshape(-1, 3).mean(0)  # subsampled
            base = _contrasting_colour(rng, ground)
            alt = np.clip(base + rng.uniform(-70, 70, 3), 0, 255)
            if _segment_distance(ground, base, alt) < 0.7 * _MIN_CONTRAST:
                alt = base  # every texture colour (gradients too) must stand out from the ground
            tex = _texture(rng, h, w, base, alt)
            img.paste(tex, (x0, y0), mask_img)
            region = owner[y0:y0 + h, x0:x0 + w]
            covered = region[m]
            for j, c in enumerate(np.bincount(covered[covered >= 0], minlength=len(boxes))):
                hidden[j] += int(c)
            region[m] = len(boxes)
            boxes.append([x0, y0, x0 + w, y0 + h])
            labels.append(label)
            areas.append(int(np.count_nonzero(m)))
            hidden.append(0)
        if visibility:
            return 1 - torch.tensor(hidden, dtype=torch.float64) / torch.tensor(areas)
        return (img, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                torch.tensor(labels, dtype=torch.int64))

    def _fits(self, x0, y0, w, h, m, owner, boxes, areas, hidden) -> bool:
        """Box IoU with every placed object <= max_iou; none of them (already ``hidden`` pixels
        included) would end up covered beyond max_occlusion of its area."""
        if not boxes:
            return True
        iou = box_iou_numpy(np.array([x0, y0, x0 + w, y0 + h], dtype=np.float64),
                            np.asarray(boxes, dtype=np.float64))
        if iou.max() > self.max_iou:
            return False
        if not iou.any():  # no overlap (a placed box's union with it is never empty)
            return True
        covered = owner[y0:y0 + h, x0:x0 + w][m]
        counts = np.bincount(covered[covered >= 0], minlength=len(boxes))
        return bool(((counts + np.asarray(hidden)) / np.asarray(areas) <= self.max_occlusion).all())
