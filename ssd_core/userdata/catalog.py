"""The photo sets of a runs folder: listed, and a new one imported from a zip or a folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ssd_core.errors import ConfigError
from ssd_core.userdata.boxes import Box, ImageEntry, _check_box
from ssd_core.userdata.dataset import UserDataset
from ssd_core.userdata.folders import _new_name, _place, _set_folders, _taken_names
from ssd_core.userdata.names import MAX_NAME, _clean_label, _clean_name, slugify
from ssd_core.userdata.photos import MAX_SIDE, _prepare, _store
from ssd_core.userdata.state import IMAGES_DIR, _State, _write_state


def list_datasets(root: Path) -> list[UserDataset]:
    """The photo sets of a runs folder, newest first; a folder that is not a readable set
    (a torn or foreign annotations.json, a half-made or half-deleted set) is skipped."""
    out = []
    for folder in _set_folders(root):
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
        name = _new_name(root, name)
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
