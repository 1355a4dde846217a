"""The changes a photo set allows, on its state in memory (``state._State``): pure functions
that raise ConfigError naming what is wrong and leave the state as it was when they do.
``UserDataset`` runs each on the state reread under the set's lock, then writes it."""

from __future__ import annotations

from ssd_core.errors import ConfigError
from ssd_core.userdata.boxes import ImageEntry, _as_box, _check_box
from ssd_core.userdata.names import _clean_label
from ssd_core.userdata.state import _State


def find_image(state: _State, image_id: int) -> int:
    """The index of photo ``image_id`` in ``state.images``; ConfigError when there is none."""
    k = next((k for k, im in enumerate(state.images) if im.id == image_id), None)
    if k is None:
        raise ConfigError(f"The set {state.name!r} has no photo {image_id}.", field="image_id")
    return k


def remove_image(state: _State, image_id: int) -> ImageEntry:
    """Forget photo ``image_id`` -> its entry (its file is the caller's to delete)."""
    entry = state.images[find_image(state, image_id)]
    state.images = [im for im in state.images if im.id != image_id]
    return entry


def set_boxes(state: _State, image_id: int, boxes) -> None:
    """Replace photo ``image_id``'s boxes, each checked against the photo (every box or none);
    new labels become classes."""
    k = find_image(state, image_id)
    im = state.images[k]
    checked = [_check_box(_as_box(b, f"Box {j + 1} of photo {image_id}"), im.width,
                          im.height, f"Box {j + 1} of photo {image_id}")
               for j, b in enumerate(list(boxes))]
    for b in checked:
        if b.label not in state.class_names:
            state.class_names.append(b.label)
    state.images[k] = ImageEntry(im.id, im.file, im.width, im.height, checked)


def add_class(state: _State, label: str) -> str:
    """Declare class ``label`` (no-op when it exists) -> the cleaned name."""
    label = _clean_label(label, "The new class")
    if label not in state.class_names:
        state.class_names.append(label)
    return label


def remove_class(state: _State, label: str) -> None:
    """Forget class ``label`` and every box of it."""
    if label not in state.class_names:
        raise ConfigError(f"The set {state.name!r} has no class {label!r}.", field="label")
    state.class_names.remove(label)
    state.images = [ImageEntry(i.id, i.file, i.width, i.height,
                               [b for b in i.boxes if b.label != label])
                    for i in state.images]
