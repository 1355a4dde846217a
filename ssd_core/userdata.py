"""A user's own photo set (the Teach flow) on disk, in one place: its layout, its one writer,
its checks, and the way in and out (a DetectionDataset for training; a zip in any of the four
formats; an import from any of them).

A runs folder holds the sets under ``datasets/`` (a folder the runs listing skips: no
``config.json``). One set::

    <runs>/datasets/<slug>/
        annotations.json   COCO (images, annotations, categories), the set's only record
        images/000001.png  the photos, re-encoded (PNG; JPEG q95 when a JPEG came in)
        .lock              the lock file that serialises writers across processes

``annotations.json`` is plain COCO that ``ssd_core.data.load_dataset(folder)`` reads: category
ids 1..K in class order (first use), bbox ``[x, y, width, height]`` in pixels of the stored
image. The set's display name, creation time and next image id live in its ``info`` object
(``info["ssd_explorer"]``), not in a ``meta.json`` beside it: the COCO reader wants exactly one
``.json`` in the folder, and one file means a rename and a box edit can never disagree.

Photos come in through ``ssd_core.images.load_image`` (size, pixel and format limits, EXIF
orientation applied, every mode flattened to RGB) and are stored re-encoded, with no EXIF; a
photo whose longer side is over MAX_SIDE pixels is scaled down to it first (a 12 MP phone photo
is ~20 MB as PNG and slow to decode every epoch, and the model sees 256 px at most). Boxes are
corners in pixels of the stored image, rounded to 1/1000 pixel (so COCO's x + width gives the
same number back), at least MIN_BOX_SIDE wide and high after clipping to the image.

Writes: every file is written to a temp file and renamed (``ssd_core.fileio``); a photo is
written before the annotations that name it and removed again if they fail, so a failed call
leaves the set as it was (at worst an unreferenced photo file after a crash, never a reference
to a missing one). A new or imported set is built in a hidden folder and renamed into place.
Concurrency: one lock per set (a ``threading.RLock`` per folder in this process, plus
``flock`` on ``.lock`` across processes where the OS has it), and every change re-reads
``annotations.json`` under the lock before it writes (reload-before-write), so two objects on
one folder (two browser sessions, two threads) never lose each other's changes. Reads
(``images``, ``class_names``...) reload when the file changed since they last looked.

What stops training (``problems()``): no photos, no boxes, a class with no boxes. One class is
enough (the book's banana detector has one); images without boxes are fine (negatives).

The rule of thumb (``needs()``): TARGET_BOXES_PER_CLASS = 9 boxes per class for a first
model, measured with ``bench/boxes_needed.py``: the ``teach`` recipe (from the shipped model)
trained for 40 steps on N labelled photos per class of the few-shot mug/book/ball set, validated
on 36 other photos, two seeds. N = 8 photos per class was the smallest whose AP50 reached 0.8
in both seeds (0.884, 0.904); its rarest class had 9 boxes. With fewer the model already finds
things but less reliably (N = 1: AP50 0.42-0.57; N = 4 and 5, 5-6 boxes of the rarest class:
0.78-0.89, one seed below 0.8); 12 photos per class added little (0.87-0.93). For comparison,
hosted custom-detector services, which fine-tune large pretrained networks, ask for about as
many: Google AutoML Vision Object Detection 10 annotations per label minimum, Amazon
Rekognition Custom Labels and Oracle Cloud Vision 10 images, Azure Custom Vision 15 images per
tag. A floor for a first try on a few objects, not a promise of accuracy on harder ones.

MAX_SIDE follows AutoML's suggested maximum of 1024 x 1024 pixels.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import shutil
import tempfile
import threading
import time
import unicodedata
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ssd_core.errors import AnnotationError, ConfigError
from ssd_core.fileio import atomic_write_bytes, read_json, write_json_atomic
from ssd_core.images import DEFAULT_MAX_PIXELS, load_image
from ssd_core.runfolder import DATASETS_DIR  # <runs root>/datasets/<slug>/

try:  # not on Windows: there the lock holds between threads of one process only
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

# ---- the layout
ANNOTATIONS = "annotations.json"
IMAGES_DIR = "images"
LOCK = ".lock"
INFO_KEY = "ssd_explorer"  # annotations.json's info[INFO_KEY]: name, created_ns, next_image_id
SCHEMA = 1

# ---- the limits
MAX_SIDE = 1024  # longer side of a stored photo, in pixels
MIN_BOX_SIDE = 1.0  # pixels
MAX_NAME = 60  # characters of a set's name
MAX_LABEL = 40  # characters of a class name
DECIMALS = 3  # box corners are kept to 1/1000 pixel
JPEG_QUALITY = 95
TARGET_BOXES_PER_CLASS = 9  # measured: see the module docstring


# ---- what a set holds
@dataclass(frozen=True)
class Box:
    """One object: its class name and corners in pixels of the stored image."""

    label: str
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class ImageEntry:
    """One photo: its id (never reused in a set), file under images/, size and boxes."""

    id: int
    file: str
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)


@dataclass
class _State:
    """annotations.json in memory."""

    name: str
    created_ns: int
    next_id: int
    class_names: list[str]
    images: list[ImageEntry]


# ---- locks
class _SetLock:
    """One folder's lock: an RLock between this process's threads, and flock on the folder's
    lock file (taken by the outermost holder only: a second flock on another descriptor of the
    same file would wait for the first forever)."""

    def __init__(self):
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_LOCKS: dict[str, _SetLock] = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _locked(folder: Path):
    """Hold ``folder``'s lock (re-entrant within a thread)."""
    key = os.path.realpath(folder)
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, _SetLock())
    with lock.rlock:
        if lock.depth == 0 and fcntl is not None:
            try:
                fd = os.open(Path(folder) / LOCK, os.O_CREAT | os.O_RDWR, 0o666)
            except FileNotFoundError:
                raise ConfigError(f"The photo set folder {str(folder)!r} is gone (deleted?).",
                                  path=folder) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            lock.fd = fd
        lock.depth += 1
        try:
            yield
        finally:
            lock.depth -= 1
            if lock.depth == 0 and lock.fd is not None:
                fd, lock.fd = lock.fd, None
                os.close(fd)  # releases the flock


# ---- names
def _clean_name(name, what: str = "set", limit: int = MAX_NAME) -> str:
    """A display name: stripped, inner whitespace collapsed; ConfigError when unusable."""
    if not isinstance(name, str):
        raise ConfigError(f"The {what} name must be text, got {type(name).__name__}.",
                          field="name")
    if any(unicodedata.category(c) == "Cc" and c not in " \t\n\r" for c in name):
        raise ConfigError(f"The {what} name {name!r} contains control characters; use letters, "
                          "digits and spaces.", field="name")
    clean = " ".join(name.split())
    if not clean:
        raise ConfigError(f"Give the {what} a name: it is empty.", field="name")
    if len(clean) > limit:
        raise ConfigError(f"The {what} name {clean[:20]!r}... is {len(clean)} characters long; "
                          f"use at most {limit}.", field="name")
    return clean


def slugify(name: str) -> str:
    """A folder name for a set: ASCII lower case, digits and dashes ("My Cups!" -> "my-cups");
    "" when the name has no Latin letter or digit."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")[:40].strip("-")


def _slug_for(name: str) -> str:
    slug = slugify(name)
    if slug:
        return slug
    if any(c.isalnum() for c in name):  # letters of another script: a neutral folder name
        return "set"
    raise ConfigError(f"The set name {name!r} has no letters or digits; give it a name such "
                      "as 'my cups'.", field="name")


def _same_name(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def _clean_label(label, where: str) -> str:
    if not isinstance(label, str):
        raise ConfigError(f"{where}: the class name must be text, got "
                          f"{type(label).__name__}.", field="label")
    clean = " ".join(label.split())
    if not clean:
        raise ConfigError(f"{where}: the class name is empty; type what the box shows.",
                          field="label")
    if any(unicodedata.category(c) == "Cc" for c in clean):
        raise ConfigError(f"{where}: the class name {label!r} contains control characters.",
                          field="label")
    if len(clean) > MAX_LABEL:
        raise ConfigError(f"{where}: the class name {clean[:20]!r}... is {len(clean)} "
                          f"characters long; use at most {MAX_LABEL}.", field="label")
    return clean


# ---- boxes
def _round(v: float) -> float:
    return round(float(v), DECIMALS)


def _check_box(box: Box, width: int, height: int, where: str) -> Box:
    """The box clipped to the image and rounded; ConfigError naming it when unusable."""
    label = _clean_label(box.label, where)
    try:
        vals = [float(v) for v in (box.x1, box.y1, box.x2, box.y2)]
    except (TypeError, ValueError):
        raise ConfigError(f"{where} ({label!r}): its corners must be numbers.",
                          field="boxes") from None
    shown = "[" + ", ".join(f"{v:g}" for v in vals) + "]"
    if not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"{where} ({label!r}) {shown}: a corner is not a finite number.",
                          field="boxes")
    x1, y1, x2, y2 = vals
    x1, x2 = min(x1, x2), max(x1, x2)  # a box dragged up or left has its corners swapped
    y1, y2 = min(y1, y2), max(y1, y2)
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise ConfigError(f"{where} ({label!r}) {shown} lies outside the {width}x{height} "
                          "image; draw it on the photo.", field="boxes")
    x1, y1 = _round(max(x1, 0.0)), _round(max(y1, 0.0))
    x2, y2 = _round(min(x2, float(width))), _round(min(y2, float(height)))
    if x2 - x1 < MIN_BOX_SIDE or y2 - y1 < MIN_BOX_SIDE:
        what = "has no area" if x2 <= x1 or y2 <= y1 else (
            f"is narrower than {MIN_BOX_SIDE:g} pixel")
        raise ConfigError(f"{where} ({label!r}) {shown} {what} inside the {width}x{height} "
                          "image; drag a larger box around the object.", field="boxes")
    return Box(label, x1, y1, x2, y2)


def _as_box(b, where: str) -> Box:
    """A Box, or a (label, x1, y1, x2, y2) sequence, or a dict with those keys."""
    if isinstance(b, Box):
        return b
    if isinstance(b, dict):
        try:
            return Box(b["label"], b["x1"], b["y1"], b["x2"], b["y2"])
        except KeyError as e:
            raise ConfigError(f"{where}: missing {e.args[0]!r}; a box needs label, x1, y1, "
                              "x2, y2.", field="boxes") from None
    if isinstance(b, (list, tuple)) and len(b) == 5:
        return Box(*b)
    raise ConfigError(f"{where}: {b!r} is not a box; give Box(label, x1, y1, x2, y2).",
                      field="boxes")


# ---- annotations.json
def _to_coco(st: _State) -> dict:
    cat = {n: k + 1 for k, n in enumerate(st.class_names)}
    images, anns = [], []
    for im in st.images:
        images.append({"id": im.id, "file_name": im.file, "width": im.width,
                       "height": im.height})
        for b in im.boxes:
            w, h = _round(b.x2 - b.x1), _round(b.y2 - b.y1)
            anns.append({"id": len(anns) + 1, "image_id": im.id, "category_id": cat[b.label],
                         "bbox": [b.x1, b.y1, w, h], "area": _round(w * h), "iscrowd": 0})
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.created_ns / 1e9))
    return {"info": {"description": st.name, "date_created": created,
                     INFO_KEY: {"schema": SCHEMA, "name": st.name, "created_ns": st.created_ns,
                                "next_image_id": st.next_id}},
            "images": images, "annotations": anns,
            "categories": [{"id": k, "name": n} for n, k in cat.items()]}


def _from_coco(data, path: Path) -> _State:
    """Our own annotations.json back in memory; AnnotationError when it is not one."""
    try:
        meta = data["info"][INFO_KEY]
        names = {c["id"]: str(c["name"]) for c in data["categories"]}
        class_names = [names[k] for k in sorted(names)]
        per_image: dict[int, list[Box]] = {int(im["id"]): [] for im in data["images"]}
        for a in data["annotations"]:
            x, y, w, h = (float(v) for v in a["bbox"])
            per_image[int(a["image_id"])].append(
                Box(names[a["category_id"]], x, y, _round(x + w), _round(y + h)))
        images = [ImageEntry(int(im["id"]), str(im["file_name"]), int(im["width"]),
                             int(im["height"]), per_image[int(im["id"])])
                  for im in data["images"]]
        return _State(str(meta["name"]), int(meta["created_ns"]), int(meta["next_image_id"]),
                      class_names, images)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise AnnotationError(f"{path}: not a photo set's {ANNOTATIONS} (written by another "
                              "program, or edited by hand).", path=path) from None


def _read_state(folder: Path) -> _State:
    path = folder / ANNOTATIONS
    data = read_json(path)
    if data is None:
        why = "missing" if not path.exists() else "not readable JSON"
        raise AnnotationError(f"{folder.name}: its {ANNOTATIONS} is {why}; it is not a photo "
                              "set.", path=path)
    return _from_coco(data, path)


def _write_state(folder: Path, st: _State) -> None:
    write_json_atomic(folder / ANNOTATIONS, _to_coco(st))


def _stamp(folder: Path):
    try:
        s = (folder / ANNOTATIONS).stat()
    except OSError:
        return None
    return (s.st_ino, s.st_mtime_ns, s.st_size)


# ---- photos
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


def _datasets_dir(root) -> Path:
    return Path(root) / DATASETS_DIR


def _taken_names(root: Path, but: Path | None = None) -> list[str]:
    return [d.name for d in list_datasets(root)
            if but is None or d.path.resolve() != but.resolve()]


def _check_new_name(root: Path, name: str, but: Path | None = None) -> None:
    for other in _taken_names(root, but):
        if _same_name(other, name):
            raise ConfigError(f"A photo set named {other!r} already exists; choose another "
                              "name.", field="name")


def _place(root: Path, build, name: str) -> Path:
    """Build a set in a hidden folder (``build(folder)``), then rename it into place under a
    free slug; the hidden folder is removed if anything fails."""
    sets = _datasets_dir(root)
    sets.mkdir(parents=True, exist_ok=True)
    tmp = sets / f".new-{uuid.uuid4().hex}"
    tmp.mkdir()  # the mode any new folder gets (mkdtemp's 0700 would shut out a shared folder)
    try:
        build(tmp)
        with _locked(sets):
            _check_new_name(root, name)
            slug, n = _slug_for(name), 1
            while (sets / (slug if n == 1 else f"{slug}-{n}")).exists():
                n += 1
            final = sets / (slug if n == 1 else f"{slug}-{n}")
            os.rename(tmp, final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class UserDataset:
    """A photo set in ``<runs>/datasets/<slug>/``: photos, their boxes, the class names.

    Every method that changes the set writes it to disk before returning; reopening the folder
    gives the same set. See the module docstring for the layout and the locking.
    """

    def __init__(self, path: Path):
        """Use ``open`` or ``create``."""
        self.path = Path(path)
        self._seen = _stamp(self.path)  # before the read: a write in between reads again later
        self._state = _read_state(self.path)
        self._deleted = False

    # ---- making and finding sets
    @classmethod
    def create(cls, root: Path, name: str) -> UserDataset:
        """A new, empty set in ``root`` (the runs folder) named ``name``. ConfigError for an
        empty name, one with no letters or digits, or a name another set has (any case)."""
        name = _clean_name(name)
        _slug_for(name)
        _check_new_name(Path(root), name)
        state = _State(name, time.time_ns(), 1, [], [])

        def build(folder: Path) -> None:
            (folder / IMAGES_DIR).mkdir()
            _write_state(folder, state)

        return cls.open(_place(Path(root), build, name))

    @classmethod
    def open(cls, path: Path) -> UserDataset:
        """The set in folder ``path``; AnnotationError when it is not one."""
        path = Path(path)
        if not path.is_dir():
            raise AnnotationError(f"No photo set at {str(path)!r}.", path=path)
        return cls(path)

    # ---- reading
    def _current(self) -> _State:
        if self._deleted:
            raise ConfigError(f"The photo set {self._state.name!r} was deleted.")
        stamp = _stamp(self.path)
        if stamp != self._seen:
            if stamp is None:
                raise ConfigError(f"The photo set {self._state.name!r} is gone from "
                                  f"{self.path}.")
            self._state, self._seen = _read_state(self.path), stamp
        return self._state

    @property
    def name(self) -> str:
        return self._current().name

    @property
    def slug(self) -> str:
        return self.path.name

    @property
    def created(self) -> float:
        """When the set was made (seconds since the epoch)."""
        return self._current().created_ns / 1e9

    @property
    def class_names(self) -> list[str]:
        """The class names in first-use order."""
        return list(self._current().class_names)

    @property
    def images(self) -> list[ImageEntry]:
        return [ImageEntry(i.id, i.file, i.width, i.height, list(i.boxes))
                for i in self._current().images]

    def image(self, image_id: int) -> ImageEntry:
        """The entry of photo ``image_id``; ConfigError when the set has none."""
        for im in self._current().images:
            if im.id == image_id:
                return ImageEntry(im.id, im.file, im.width, im.height, list(im.boxes))
        raise ConfigError(f"The set {self.name!r} has no photo {image_id}.", field="image_id")

    def image_path(self, image_id: int) -> Path:
        """The stored photo's file."""
        return self.path / IMAGES_DIR / self.image(image_id).file

    def __len__(self) -> int:
        return len(self._current().images)

    def __repr__(self) -> str:
        return f"UserDataset({self.name!r}, images={len(self)}, classes={self.class_names})"

    # ---- changing (each under the lock, on the state reread from disk)
    @contextlib.contextmanager
    def _change(self):
        """Yield the state as on disk now; write it when the block ends without an error."""
        self._current()  # refuses a deleted set
        with _locked(self.path):
            if not (self.path / ANNOTATIONS).exists():
                raise ConfigError(f"The photo set {self._state.name!r} is gone from "
                                  f"{self.path}.")
            state = _read_state(self.path)
            yield state
            _write_state(self.path, state)
            self._state, self._seen = state, _stamp(self.path)

    def add_image(self, data, filename: str = "photo.png", *,
                  max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = MAX_SIDE,
                  ) -> ImageEntry:
        """Store a photo (bytes; or a path, file object, PIL image, array) -> its entry.

        Checked like every upload by ``ssd_core.images.load_image`` (InvalidImageError naming
        ``filename``), EXIF orientation applied, scaled down to ``max_side``, re-encoded."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = io.BytesIO(bytes(data))
            data.name = filename
        img = load_image(data, max_pixels=max_pixels)
        img, fmt, _ = _prepare(img, max_side)
        entry = None
        try:
            with self._change() as state:
                entry = _store(self.path, state.next_id, img, fmt)
                state.next_id += 1
                state.images.append(entry)
        except BaseException:  # the annotations were not written: the photo goes too
            if entry is not None:
                with contextlib.suppress(OSError):
                    (self.path / IMAGES_DIR / entry.file).unlink()
            raise
        return entry

    def remove_image(self, image_id: int) -> None:
        """Forget photo ``image_id`` and delete its file."""
        with self._change() as state:
            entry = next((im for im in state.images if im.id == image_id), None)
            if entry is None:
                raise ConfigError(f"The set {state.name!r} has no photo {image_id}.",
                                  field="image_id")
            state.images = [im for im in state.images if im.id != image_id]
        with contextlib.suppress(OSError):  # the reference went first, now the file
            (self.path / IMAGES_DIR / entry.file).unlink()

    def set_boxes(self, image_id: int, boxes) -> None:
        """Replace photo ``image_id``'s boxes (Box, or (label, x1, y1, x2, y2)). Boxes are
        clipped to the image; one outside it, narrower than MIN_BOX_SIDE or with an empty label
        is refused (ConfigError naming it) and nothing changes. New labels become classes."""
        with self._change() as state:
            k = next((k for k, im in enumerate(state.images) if im.id == image_id), None)
            if k is None:
                raise ConfigError(f"The set {state.name!r} has no photo {image_id}.",
                                  field="image_id")
            im = state.images[k]
            checked = [_check_box(_as_box(b, f"Box {j + 1} of photo {image_id}"), im.width,
                                  im.height, f"Box {j + 1} of photo {image_id}")
                       for j, b in enumerate(list(boxes))]
            for b in checked:
                if b.label not in state.class_names:
                    state.class_names.append(b.label)
            state.images[k] = ImageEntry(im.id, im.file, im.width, im.height, checked)

    def add_class(self, label: str) -> str:
        """Declare a class before drawing it (no-op when it exists) -> the cleaned name."""
        label = _clean_label(label, "The new class")
        with self._change() as state:
            if label not in state.class_names:
                state.class_names.append(label)
        return label

    def remove_class(self, label: str) -> None:
        """Forget class ``label`` and every box of it."""
        with self._change() as state:
            if label not in state.class_names:
                raise ConfigError(f"The set {state.name!r} has no class {label!r}.",
                                  field="label")
            state.class_names.remove(label)
            state.images = [ImageEntry(i.id, i.file, i.width, i.height,
                                       [b for b in i.boxes if b.label != label])
                            for i in state.images]

    def rename(self, name: str) -> None:
        """Give the set a new display name (its folder keeps its slug: runs point at it)."""
        name = _clean_name(name)
        _slug_for(name)
        root = self.path.parent.parent
        with _locked(self.path.parent):
            _check_new_name(root, name, but=self.path)
            with self._change() as state:
                state.name = name

    def delete(self) -> None:
        """Delete the set: its folder and every photo. The object is unusable afterwards."""
        with _locked(self.path):
            trash = self.path.parent / f".deleted-{self.path.name}-{uuid.uuid4().hex[:8]}"
            os.rename(self.path, trash)  # gone from listings at once, whatever rmtree meets
        shutil.rmtree(trash, ignore_errors=True)
        self._deleted = True

    # ---- what the set is ready for
    def counts(self) -> dict[str, int]:
        """Boxes per class, every class (0 for one with none), in class order."""
        state = self._current()
        out = dict.fromkeys(state.class_names, 0)
        for im in state.images:
            for b in im.boxes:
                out[b.label] += 1
        return out

    def needs(self) -> dict[str, int]:
        """How many more boxes each class needs for a first model (TARGET_BOXES_PER_CLASS)."""
        return {c: max(0, TARGET_BOXES_PER_CLASS - n) for c, n in self.counts().items()}

    def problems(self) -> list[str]:
        """What stops training now, in plain words ([] when it can train)."""
        state = self._current()
        if not state.images:
            return ["The set has no photos yet: take or upload some."]
        counts = self.counts()
        if not any(counts.values()):
            return ["No boxes yet: draw a box around each object on your photos."]
        return [f"The class {c!r} has no boxes: draw at least one, or remove the class."
                for c, n in counts.items() if n == 0]

    # ---- out
    def _load(self, image_size: int = 256, augment=None):
        from ssd_core.data import load_dataset

        with _locked(self.path):
            state = self._current()
            if not state.images or not state.class_names:
                raise ConfigError(f"The set {state.name!r} is empty: "
                                  + ("it has no photos." if not state.images
                                     else "it has no classes (no boxes drawn)."))
            return load_dataset(self.path, fmt="coco", image_size=image_size, augment=augment,
                                name=state.name)

    def to_dataset(self, image_size: int = 256, augment=None):
        """The set as a DetectionDataset (an AnnotatedDetection on annotations.json) for
        training; ConfigError listing ``problems()`` when it cannot train yet. It reads the
        photos from the folder as it goes: a photo removed meanwhile fails its sample."""
        problems = self.problems()
        if problems:
            raise ConfigError(f"The set {self.name!r} cannot train yet: " + " ".join(problems))
        return self._load(image_size, augment)

    def snapshot(self, dest) -> Path:
        """Copy the set as it is now (annotations.json + its photos, hard links where the disk
        allows) into the new folder ``dest`` -> ``dest``, a COCO folder ``load_dataset`` reads:
        for a training run that must not see the photos change under it. Nothing is left at
        ``dest`` when it fails."""
        dest = Path(dest)
        if dest.exists():
            raise ConfigError(f"{str(dest)!r} already exists; give a new folder.", path=dest)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with _locked(self.path):
                (tmp / IMAGES_DIR).mkdir(parents=True)
                for name in [ANNOTATIONS] + [f"{IMAGES_DIR}/{im.file}" for im in
                                             self._current().images]:
                    try:
                        os.link(self.path / name, tmp / name)
                    except OSError:  # another file system, or no links there
                        shutil.copy2(self.path / name, tmp / name)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    def export_zip(self, fmt: str) -> bytes:
        """The set as a zip in "coco" | "voc" | "yolo" | "csv" (ssd_core.data.export_dataset),
        inside a folder named after the slug. ConfigError for an empty set or unknown format."""
        from ssd_core.data import FORMATS, export_dataset

        if str(fmt).lower() not in FORMATS:
            raise ConfigError(f"Unknown export format {fmt!r}; choose from {list(FORMATS)}.",
                              field="fmt")
        with _locked(self.path), tempfile.TemporaryDirectory(prefix="ssd_export_") as tmp:
            # under the lock: a photo removed meanwhile would fail the export half way
            out = export_dataset(self._load(), Path(tmp) / self.slug, fmt)
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for p in sorted(out.rglob("*")):
                    if p.is_file():
                        zf.write(p, p.relative_to(tmp).as_posix())
        return buf.getvalue()


def list_datasets(root: Path) -> list[UserDataset]:
    """The photo sets of a runs folder, newest first; a folder that is not a readable set
    (a torn or foreign annotations.json, a half-made or half-deleted set) is skipped."""
    sets = _datasets_dir(root)
    if not sets.is_dir():
        return []
    out = []
    for folder in sets.iterdir():
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            out.append(UserDataset.open(folder))
        except Exception:  # one bad folder never hides the others
            continue
    return sorted(out, key=lambda d: d._state.created_ns, reverse=True)


def import_dataset(root: Path, source, name: str | None = None, *,
                   max_side: int | None = MAX_SIDE) -> UserDataset:
    """A new set holding copies of the photos and boxes of ``source``: a zip (path, bytes or
    file object) or a folder in COCO, VOC, YOLO or CSV, read by ``ssd_core.data.load_dataset``
    with its checks and its zip limits (AnnotationError). Every class of the source is kept, in
    its order. ``name``: the set's name (ConfigError when taken); by default the zip's or
    folder's name, numbered when taken. Nothing is left behind when it fails."""
    from ssd_core.data import load_dataset

    root = Path(root)
    is_path = isinstance(source, (str, os.PathLike))
    given = str(source) if is_path else getattr(source, "name", None)  # an UploadedFile's
    label = Path(given).name if given else "the upload"
    if name is not None:
        name = _clean_name(name)
        _slug_for(name)
        _check_new_name(root, name)
    ds = load_dataset(source, name=label)
    if name is None:
        base = (Path(given).stem if given else "") or "Imported set"
        base = _clean_name(base[:MAX_NAME - 5]) if slugify(base) else "Imported set"
        taken = {n.casefold() for n in _taken_names(root)}
        name = next(n for n in (base if k == 1 else f"{base} ({k})" for k in range(1, 10**6))
                    if n.casefold() not in taken)
    names = [_clean_label(n, f"Class {k + 1} of {label}") for k, n in enumerate(ds.class_names)]
    if len(set(names)) != len(names):
        raise ConfigError(f"{label}: class names repeat once spaces are tidied ({names}).",
                          field="label")

    def build(folder: Path) -> None:
        (folder / IMAGES_DIR).mkdir()
        state = _State(name, time.time_ns(), 1, list(names), [])
        for i in range(len(ds)):
            img, boxes, labels = ds.sample(i)
            img, fmt, s = _prepare(img, max_side)
            entry = _store(folder, state.next_id, img, fmt)
            where = f"{label}, {ds.records[i].file}, box"
            checked = [_check_box(Box(names[k], *(v * s for v in b)), entry.width, entry.height,
                                  f"{where} {j + 1}")
                       for j, (b, k) in enumerate(zip(boxes.tolist(), labels.tolist()))]
            state.images.append(ImageEntry(entry.id, entry.file, entry.width, entry.height,
                                           checked))
            state.next_id += 1
        _write_state(folder, state)

    return UserDataset.open(_place(root, build, name))
