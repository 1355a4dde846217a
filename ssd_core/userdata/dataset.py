"""UserDataset: one photo set's only reader and writer (the package docstring says how it
writes and locks). Its changes are ``edits``, its checks ``readiness``, its ways out ``export``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from ssd_core.errors import AnnotationError, ConfigError
from ssd_core.images import DEFAULT_MAX_PIXELS
from ssd_core.userdata import edits, export, readiness
from ssd_core.userdata.boxes import ImageEntry
from ssd_core.userdata.folders import _new_name, _place, _remove_set
from ssd_core.userdata.photos import MAX_SIDE, _load_photo, _prepare, _store
from ssd_core.userdata.state import (
    ANNOTATIONS,
    IMAGES_DIR,
    _locked,
    _read_state,
    _stamp,
    _State,
    _write_state,
)


class UserDataset:
    """A photo set in ``<runs>/datasets/<slug>/``: photos, their boxes, the class names.

    Every method that changes the set writes it to disk before returning; reopening the folder
    gives the same set. See the package docstring for the layout and the locking.
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
        name = _new_name(Path(root), name)
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
        state = self._current()
        im = state.images[edits.find_image(state, image_id)]
        return ImageEntry(im.id, im.file, im.width, im.height, list(im.boxes))

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
        img, fmt, _ = _prepare(_load_photo(data, filename, max_pixels), max_side)
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
            entry = edits.remove_image(state, image_id)
        with contextlib.suppress(OSError):  # the reference went first, now the file
            (self.path / IMAGES_DIR / entry.file).unlink()

    def set_boxes(self, image_id: int, boxes) -> None:
        """Replace photo ``image_id``'s boxes (Box, or (label, x1, y1, x2, y2)). Boxes are
        clipped to the image; one outside it, narrower than MIN_BOX_SIDE or with an empty label
        is refused (ConfigError naming it) and nothing changes. New labels become classes."""
        with self._change() as state:
            edits.set_boxes(state, image_id, boxes)

    def add_class(self, label: str) -> str:
        """Declare a class before drawing it (no-op when it exists) -> the cleaned name."""
        with self._change() as state:
            return edits.add_class(state, label)

    def remove_class(self, label: str) -> None:
        """Forget class ``label`` and every box of it."""
        with self._change() as state:
            edits.remove_class(state, label)

    def rename(self, name: str) -> None:
        """Give the set a new display name (its folder keeps its slug: runs point at it)."""
        with _locked(self.path.parent):
            name = _new_name(self.path.parent.parent, name, but=self.path)
            with self._change() as state:
                state.name = name

    def delete(self) -> None:
        """Delete the set: its folder and every photo. The object is unusable afterwards."""
        _remove_set(self.path)
        self._deleted = True

    # ---- what the set is ready for (ssd_core.userdata.readiness)
    def counts(self) -> dict[str, int]:
        """Boxes per class, every class (0 for one with none), in class order."""
        return readiness.counts(self._current())

    def needs(self) -> dict[str, int]:
        """How many more boxes each class needs for a first model (TARGET_BOXES_PER_CLASS)."""
        return readiness.needs(self._current())

    def problems(self) -> list[str]:
        """What stops training now, in plain words ([] when it can train)."""
        return readiness.problems(self._current())

    # ---- out (ssd_core.userdata.export)
    def to_dataset(self, image_size: int = 256, augment=None):
        """The set as a DetectionDataset (an AnnotatedDetection on annotations.json) for
        training; ConfigError listing ``problems()`` when it cannot train yet. It reads the
        photos from the folder as it goes: a photo removed meanwhile fails its sample."""
        problems = self.problems()
        if problems:
            raise ConfigError(f"The set {self.name!r} cannot train yet: " + " ".join(problems))
        return export.load(self, image_size, augment)

    def snapshot(self, dest) -> Path:
        """Copy the set as it is now (annotations.json + its photos, hard links where the disk
        allows) into the new folder ``dest`` -> ``dest``, a COCO folder ``load_dataset`` reads:
        for a training run that must not see the photos change under it. Nothing is left at
        ``dest`` when it fails."""
        return export.snapshot(self, dest)

    def export_zip(self, fmt: str) -> bytes:
        """The set as a zip in "coco" | "voc" | "yolo" | "csv" (ssd_core.data.export_dataset),
        inside a folder named after the slug. ConfigError for an empty set or unknown format."""
        return export.export_zip(self, fmt)
