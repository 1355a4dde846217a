"""A few-shot set of photo-like images of three everyday objects, made by code (no downloads):
a ceramic **mug**, a cloth-bound **book** and a **ball**, shaded in 3-D light, with soft
shadows, on a table of wood grain, marble or cloth before a wall of paper or plaster, among
blurred clutter, with lighting gradients, vignetting, sensor noise and a little defocus.

``FewShotObjects(n, seed)`` is a DetectionDataset (``sample(i)`` as every dataset's); the same
``(seed, i)`` gives the same photo on every machine. ``write_fewshot(out, n, seed)`` writes it
as a COCO folder (``annotations.json`` + images), as a user's Teach set is stored. It stands in
for "24 photos of three of your objects" in tests and ``bench/time_to_teach.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from ssd_core.seeding import derive_seed

from .dataset import DetectionDataset
from .export import export_dataset

FEWSHOT_CLASSES = ["mug", "book", "ball"]
FEWSHOT = 8  # the seeding stream of few-shot photos


# ---------------------------------------------------------------- procedural textures


def _noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth value noise in [0, 1] of about ``cells`` cells across, (h, w)."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    img = Image.fromarray((grid * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return np.asarray(img, np.float32) / 255.0


def _fbm(rng: np.random.Generator, h: int, w: int, base: int = 4, octaves: int = 4) -> np.ndarray:
    """Fractal noise in about [0, 1]: octaves of value noise, each twice as fine, half as strong."""
    out, amp, total = np.zeros((h, w), np.float32), 1.0, 0.0
    for o in range(octaves):
        out += amp * _noise(rng, h, w, base * 2 ** o)
        total += amp
        amp /= 2
    return out / total


def _grid(h: int, w: int, angle: float):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    return c * x + s * y, -s * x + c * y


def _mix(a, b, t):
    t = t[..., None]
    return np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t


def wood(rng, h, w) -> np.ndarray:
    """Wood grain: bent rings of two browns with fine fibres, (h, w, 3) in [0, 1]."""
    u, v = _grid(h, w, rng.uniform(-0.2, 0.2))
    warp = _fbm(rng, h, w, 3) * rng.uniform(8, 20)
    rings = 0.5 + 0.5 * np.sin((v + warp) * rng.uniform(0.25, 0.6))
    fibres = _noise(rng, h, max(2, w // 40), max(2, h // 3))
    fibres = np.asarray(Image.fromarray((fibres * 255).astype(np.uint8)).resize((w, h)),
                        np.float32) / 255
    light = rng.uniform(0.45, 0.75)
    a = np.array([light, light * 0.68, light * 0.42])
    b = a * rng.uniform(0.55, 0.75)
    return np.clip(_mix(a, b, rings ** 2) * (0.85 + 0.3 * fibres[..., None]), 0, 1)


def marble(rng, h, w) -> np.ndarray:
    """Marble: pale stone with turbulent veins."""
    u, _ = _grid(h, w, rng.uniform(0, np.pi))
    veins = np.abs(np.sin(u * rng.uniform(0.02, 0.05) + _fbm(rng, h, w, 4, 5) * 9))
    base = rng.uniform(0.75, 0.95) * np.array([1.0, rng.uniform(0.93, 1.0), rng.uniform(0.85, 1)])
    return np.clip(_mix(base, base * 0.45, (1 - veins) ** 6), 0, 1)


def weave(rng, h, w, colour=None) -> np.ndarray:
    """Fabric: two thread directions crossing, slightly uneven, in one dyed colour."""
    colour = rng.uniform(0.2, 0.85, 3) if colour is None else colour
    u, v = _grid(h, w, rng.uniform(-0.3, 0.3))
    f = rng.uniform(0.6, 1.4)
    warp, weft = np.sin(u * f), np.sin(v * f)
    over = (np.sin(u * f / 2) * np.sin(v * f / 2) > 0).astype(np.float32)
    thread = over * (0.5 + 0.5 * warp) + (1 - over) * (0.5 + 0.5 * weft)
    uneven = _fbm(rng, h, w, 6, 3)
    return np.clip(colour * (0.7 + 0.3 * thread[..., None]) * (0.85 + 0.3 * uneven[..., None]),
                   0, 1)


def paper(rng, h, w) -> np.ndarray:
    """Paper or plaster: a light tint with fine grain and faint blotches."""
    tint = rng.uniform(0.6, 0.92) * np.array([1, rng.uniform(0.9, 1.02), rng.uniform(0.8, 1.0)])
    grain = rng.random((h, w)).astype(np.float32)
    blotch = _fbm(rng, h, w, 3, 3)
    return np.clip(tint * (0.9 + 0.06 * grain[..., None] + 0.12 * blotch[..., None]), 0, 1)


TABLES = (wood, wood, marble, weave)
WALLS = (paper, paper, weave, marble)


# ---------------------------------------------------------------- objects


def _ellipse(x, y, cx, cy, rx, ry) -> np.ndarray:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


def _soft(mask: np.ndarray, radius: float = 0.7) -> np.ndarray:
    """A hard mask's edge softened (anti-aliasing), in [0, 1]."""
    img = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(img, np.float32) / 255


def mug(look, rng, s: int):
    """A mug in an (s, s) patch -> (rgb (s,s,3), alpha (s,s), box (x1,y1,x2,y2) in the patch);
    its look (colour, proportions) drawn from ``look``, the light and view from ``rng``."""
    y, x = np.mgrid[0:s, 0:s].astype(np.float32)
    colour = look.uniform(0.1, 0.95, 3)
    bw = s * look.uniform(0.52, 0.62)  # body width
    bh = s * look.uniform(0.6, 0.78)
    hr = bh * look.uniform(0.22, 0.3)
    cx = s * 0.42
    top, bottom = s * 0.5 - bh / 2, s * 0.5 + bh / 2
    ry = bw * rng.uniform(0.1, 0.22)  # the ellipse of the rim seen from above
    body = ((np.abs(x - cx) <= bw / 2) & (y >= top) & (y <= bottom)) | _ellipse(
        x, y, cx, bottom, bw / 2, ry)
    rim = _ellipse(x, y, cx, top, bw / 2, ry)
    hx, hy = cx + bw / 2, s * 0.5 - bh * 0.05
    d = np.hypot((x - hx) / 0.8, y - hy)
    handle = (d <= hr) & (d >= hr * 0.6) & (x > cx + bw / 2 - 2)
    # Cylinder shading: Lambert across the body, a specular stripe, darker inside the rim.
    t = np.clip((x - cx) / (bw / 2), -1, 1)
    light = rng.uniform(-0.6, 0.3)
    shade = np.clip(np.sqrt(1 - t ** 2) * 0.75 + 0.25 - 0.35 * (t - light) ** 2, 0.15, 1)
    spec = np.exp(-((t - light * 0.8 + 0.3) ** 2) / 0.01) * 0.5
    rgb = colour * shade[..., None] + spec[..., None]
    inside = _ellipse(x, y, cx, top, bw / 2 * 0.9, ry * 0.8)
    rgb = np.where(inside[..., None], colour * 0.35 * (0.6 + 0.4 * (y - top + ry) / (2 * ry))
                   [..., None], rgb)
    rgb = np.where((rim & ~inside)[..., None], np.clip(colour * 1.1 + 0.15, 0, 1), rgb)
    hshade = 0.55 + 0.35 * np.clip((hy - y) / hr, -1, 1)
    rgb = np.where((handle & ~body)[..., None], colour * hshade[..., None], rgb)
    mask = body | rim | handle
    return np.clip(rgb, 0, 1), _soft(mask), _box(mask)


def book(look, rng, s: int):
    """A closed book, its cover a dyed cloth, seen at a slant: cover, spine, page edges."""
    y, x = np.mgrid[0:s, 0:s].astype(np.float32)
    w, h = s * look.uniform(0.55, 0.72), s * look.uniform(0.75, 0.92)
    thick = s * look.uniform(0.06, 0.1)
    cloth = weave(look, s, s, look.uniform(0.1, 0.75, 3))
    band_at, band_colour = look.uniform(-0.2, 0.2), look.uniform(0.5, 0.9, 3)
    if rng.random() < 0.5:
        w, h = h, w  # lying or standing
    ang = rng.uniform(-0.35, 0.35)
    c, si = np.cos(ang), np.sin(ang)
    u = c * (x - s / 2) + si * (y - s / 2)
    v = -si * (x - s / 2) + c * (y - s / 2)
    cover = (np.abs(u) <= w / 2) & (np.abs(v) <= h / 2)
    pages = (np.abs(u) <= w / 2 - 1) & (v > h / 2) & (v <= h / 2 + thick) | (
        (u > w / 2) & (u <= w / 2 + thick * 0.7) & (np.abs(v) <= h / 2 + thick * 0.5))
    slope = 0.85 + 0.25 * (u / w)[..., None]  # the light across the cover
    rgb = cloth * slope
    spine = cover & (u < -w / 2 + w * 0.1)
    rgb = np.where(spine[..., None], rgb * 0.7, rgb)
    band = cover & (np.abs(v + h * band_at) < h * 0.06) & ~spine
    rgb = np.where(band[..., None], np.clip(rgb * 0.4 + band_colour * 0.6, 0, 1),
                   rgb)
    leaves = 0.78 + 0.12 * np.sin(np.maximum(v - h / 2, u - w / 2) * 3.0)
    rgb = np.where((pages & ~cover)[..., None],
                   np.array([0.95, 0.92, 0.82]) * leaves[..., None], rgb)
    mask = cover | pages
    return np.clip(rgb, 0, 1), _soft(mask), _box(mask)


def ball(look, rng, s: int):
    """A ball: a sphere lit from one side, with panels or stripes, a highlight, a dark limb."""
    y, x = np.mgrid[0:s, 0:s].astype(np.float32)
    r = s * look.uniform(0.38, 0.47)
    c1, c2 = look.uniform(0.05, 1, 3), look.uniform(0.05, 1, 3)
    kind, phase = look.integers(0, 3), look.uniform(0, 6)
    spin = rng.uniform(0, 2 * np.pi)  # the ball turned another way in each photo
    cx = cy = s / 2
    nx, ny = (x - cx) / r, (y - cy) / r
    inside = nx ** 2 + ny ** 2 <= 1
    nz = np.sqrt(np.clip(1 - nx ** 2 - ny ** 2, 0, 1))
    lx, ly = rng.uniform(-0.7, 0.2), rng.uniform(-0.8, -0.2)
    lz = np.sqrt(max(0.05, 1 - lx ** 2 - ly ** 2))
    lambert = np.clip(nx * lx + ny * ly + nz * lz, 0, 1)
    spec = np.clip(nx * lx + ny * ly + nz * lz, 0, 1) ** 40
    lon, lat = np.arctan2(nx, nz) + spin, np.arcsin(np.clip(ny, -1, 1))
    if kind == 0:  # panels, like a football
        pat = (np.sin(lon * 5 + phase) * np.sin(lat * 5) > 0.2)
    elif kind == 1:  # a band
        pat = np.abs(np.sin(lat * 2 + lon * (phase / 6 - 0.5))) < 0.35
    else:  # a plain ball with a seam
        pat = np.abs(np.sin(lon * 2 + 0.4 * np.sin(lat * 3))) < 0.08
    colour = np.where(pat[..., None], c2, c1)
    rgb = colour * (0.2 + 0.8 * lambert[..., None]) + 0.6 * spec[..., None]
    return np.clip(rgb, 0, 1), _soft(inside), _box(inside)


OBJECTS = {"mug": mug, "book": book, "ball": ball}


def _box(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


# ---------------------------------------------------------------- the photo


def render_photo(rng: np.random.Generator, size: int = 256, classes=None,
                 max_objects: int = 2, objects: int = 0):
    """One photo -> (PIL RGB (size, size), boxes (M,4) float px, labels (M,) long): a table and
    a wall, 1..max_objects objects (each class of ``classes`` indices, or drawn), shadows,
    clutter, light, noise. ``objects`` seeds the objects' look: the same mug, book and ball
    in every photo of the same ``objects``."""
    h = w = size
    horizon = int(h * rng.uniform(0.2, 0.5))
    img = np.empty((h, w, 3), np.float32)
    img[:horizon] = WALLS[rng.integers(len(WALLS))](rng, horizon, w)
    img[horizon:] = TABLES[rng.integers(len(TABLES))](rng, h - horizon, w)
    # Table perspective: darker and finer far away (a simple depth cue).
    depth = np.linspace(0.8, 1.05, h - horizon, dtype=np.float32)[:, None, None]
    img[horizon:] *= depth
    img[max(0, horizon - 2):horizon + 1] *= 0.75  # the edge where table meets wall
    _clutter(rng, img, horizon)
    if classes is None:
        classes = list(rng.integers(0, len(FEWSHOT_CLASSES), rng.integers(1, max_objects + 1)))
    boxes, labels, placed = [], [], []
    light_dx = rng.uniform(-0.25, 0.25)
    for c in classes:
        for _ in range(30):
            side = int(size * rng.uniform(0.28, 0.62))
            x0 = int(rng.integers(-side // 8, w - side + side // 8))
            y0 = int(rng.integers(max(-side // 8, horizon - side * 2 // 3),
                                  h - side + side // 8))
            if all(_overlap((x0, y0, side), p) < 0.15 for p in placed):
                break
        placed.append((x0, y0, side))
        look = np.random.default_rng(derive_seed(objects, FEWSHOT, -1, int(c)))
        rgb, alpha, (bx1, by1, bx2, by2) = OBJECTS[FEWSHOT_CLASSES[c]](look, rng, side)
        _shadow(img, alpha, x0, y0, side, light_dx)
        _paste(img, rgb, alpha, x0, y0)
        box = np.clip([x0 + bx1, y0 + by1, x0 + bx2, y0 + by2], 0, [w, h, w, h])
        if box[2] - box[0] >= 4 and box[3] - box[1] >= 4:
            boxes.append(box)
            labels.append(int(c))
    _light(rng, img)
    photo = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    if rng.random() < 0.5:
        photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    return (photo, torch.tensor(np.array(boxes, np.float32).reshape(-1, 4)),
            torch.tensor(labels, dtype=torch.long))


def _overlap(a, b) -> float:
    (ax, ay, s), (bx, by, t) = a, b
    ix = max(0, min(ax + s, bx + t) - max(ax, bx))
    iy = max(0, min(ay + s, by + t) - max(ay, by))
    return ix * iy / min(s * s, t * t)


def _paste(img, rgb, alpha, x0, y0) -> None:
    h, w = img.shape[:2]
    sh, sw = alpha.shape
    ys, xs = slice(max(0, y0), min(h, y0 + sh)), slice(max(0, x0), min(w, x0 + sw))
    py, px = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
    a = alpha[py, px][..., None]
    img[ys, xs] = img[ys, xs] * (1 - a) + rgb[py, px] * a


def _shadow(img, alpha, x0, y0, side, light_dx) -> None:
    """A soft contact shadow: the object's mask squashed, shifted away from the light, blurred."""
    s = alpha.shape[0]
    m = Image.fromarray((alpha * 255).astype(np.uint8)).resize((s, max(1, s // 3)))
    canvas = Image.new("L", (s * 2, s * 2))
    canvas.paste(m, (s // 2 + int(light_dx * s), s + s // 3 - s // 8))
    soft = np.asarray(canvas.filter(ImageFilter.GaussianBlur(s / 12)), np.float32) / 255
    dark = np.zeros_like(img[..., 0])
    h, w = dark.shape
    ox, oy = x0 - s // 2, y0 - s // 2 - s // 6
    ys, xs = slice(max(0, oy), min(h, oy + 2 * s)), slice(max(0, ox), min(w, ox + 2 * s))
    if ys.stop > ys.start and xs.stop > xs.start:
        dark[ys, xs] = soft[ys.start - oy:ys.stop - oy, xs.start - ox:xs.stop - ox]
    img *= (1 - 0.55 * dark)[..., None]


def _clutter(rng, img, horizon) -> None:
    """Out-of-focus things that are not the objects: boxes, cloths, a plant pot's shape."""
    h, w = img.shape[:2]
    for _ in range(rng.integers(1, 4)):
        cw, ch = int(w * rng.uniform(0.1, 0.35)), int(h * rng.uniform(0.08, 0.3))
        x0, y0 = int(rng.integers(-cw // 2, w - cw // 2)), int(rng.integers(0, h - ch // 2))
        patch = (weave if rng.random() < 0.5 else paper)(rng, ch, cw)
        patch *= rng.uniform(0.4, 1.0, 3)
        mask = np.ones((ch, cw), np.float32)
        if rng.random() < 0.5:
            yy, xx = np.mgrid[0:ch, 0:cw]
            mask = _ellipse(xx, yy, cw / 2, ch / 2, cw / 2, ch / 2).astype(np.float32)
        mask = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(rng.uniform(1.5, 4))), np.float32) / 255
        blurred = np.asarray(Image.fromarray((patch * 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(2)), np.float32) / 255
        _paste(img, blurred, mask * rng.uniform(0.7, 1.0), x0, y0)


def _light(rng, img) -> None:
    """A light gradient from one side, a warm or cool cast, vignetting and sensor noise."""
    h, w = img.shape[:2]
    u, _ = _grid(h, w, rng.uniform(0, 2 * np.pi))
    u = (u - u.min()) / max(1e-6, u.max() - u.min())
    img *= (rng.uniform(0.7, 0.9) + rng.uniform(0.1, 0.4) * u)[..., None]
    img *= np.array([1 + rng.uniform(-0.08, 0.08), 1, 1 + rng.uniform(-0.08, 0.08)])
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(x / w - 0.5, y / h - 0.5)
    img *= (1 - rng.uniform(0.2, 0.45) * r ** 2 * 2)[..., None]
    img += rng.normal(0, rng.uniform(0.01, 0.03), img.shape).astype(np.float32)


class FewShotObjects(DetectionDataset):
    """``n`` photo-like images of one mug, one book and one ball (see the module); photo ``i``
    is drawn from ``derive_seed(seed, FEWSHOT, i)``, the objects' look from ``objects`` (so
    another ``seed`` with the same ``objects`` gives other photos of the same three things).
    Photo i holds class i % 3, perhaps with another object, so a set of any size >= 3 has
    every class."""

    class_names = FEWSHOT_CLASSES

    def __init__(self, n: int, seed: int = 0, image_size: int = 256, photo_size: int = 256,
                 max_objects: int = 2, objects: int = 0, augment=None):
        self.n, self.seed, self.image_size = int(n), int(seed), int(image_size)
        self.objects = int(objects)
        self.photo_size, self.max_objects = int(photo_size), int(max_objects)
        self.class_names = list(FEWSHOT_CLASSES)
        self.set_augment(augment)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"FewShotObjects(n={self.n}, seed={self.seed})"

    def sample(self, i: int):
        i = self._index(int(i))
        rng = np.random.default_rng(derive_seed(self.seed, FEWSHOT, i))
        k = len(FEWSHOT_CLASSES)
        classes = [i % k] + [int(c) for c in rng.integers(0, k, rng.integers(0, self.max_objects))]
        return render_photo(rng, self.photo_size, classes, self.max_objects, self.objects)


def write_fewshot(out, n: int = 24, seed: int = 0, photo_size: int = 256,
                  objects: int = 0) -> Path:
    """Render ``n`` few-shot photos (FewShotObjects) into a COCO folder at ``out``."""
    return export_dataset(FewShotObjects(n, seed, photo_size=photo_size, objects=objects),
                          out, "coco")
