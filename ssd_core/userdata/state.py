"""A set's one record, ``annotations.json``, in memory and on disk, and the lock that serialises
its writers.

``annotations.json`` is plain COCO that ``ssd_core.data.load_dataset(folder)`` reads: category
ids 1..K in class order (first use), bbox ``[x, y, width, height]`` in pixels of the stored
image. The set's display name, creation time and next image id live in its ``info`` object
(``info["ssd_explorer"]``), not in a ``meta.json`` beside it: the COCO reader wants exactly one
``.json`` in the folder, and one file means a rename and a box edit can never disagree.

Concurrency: one lock per set (a ``threading.RLock`` per folder in this process, plus
``flock`` on ``.lock`` across processes where the OS has it).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ssd_core.errors import AnnotationError, ConfigError
from ssd_core.fileio import read_json, write_json_atomic
from ssd_core.userdata.boxes import Box, ImageEntry, _round

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
