"""Teach, step 1 (Collect): camera snapshots (each click adds one), several uploaded files at
once, and the set's thumbnails with their boxes, counts per class and delete."""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from app import figures_teach, sample_images
from app.views._teach_store import bump, counter, photo_path, set_image_index
from ssd_core.errors import ConfigError, InvalidImageError, SSDError
from ssd_core.images import ACCEPTED_TEXT

UPLOAD_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "ppm", "pgm"]
THUMBS_PER_ROW = 5


def add_photo(ds, data: bytes, name: str) -> bool:
    """Add one photo to the set -> True; a file that is not a usable image gets a clear
    st.error (the same checks as every upload: size, pixels, formats) and the page goes on."""
    try:
        ds.add_image(data, name)
        return True
    except InvalidImageError as e:
        sample_images.image_error(name, e)
    except (ConfigError, SSDError, ValueError) as e:
        st.error(f"`{name}` could not be added: {e}")
    return False


def camera(ds) -> None:
    """A camera snapshot: each click adds one photo (the widget is then made fresh for the
    next)."""
    key = f"teach.camera.{counter('teach.camera_n')}"
    shot = st.camera_input("Take a snapshot", key=key,
                           help="Each click adds one photo to the set. The browser asks for "
                                "the camera (HTTPS or localhost only).")
    if shot is not None:
        if add_photo(ds, shot.getvalue(), f"snapshot-{counter('teach.camera_n') + 1}.jpg"):
            st.session_state["teach.added"] = "snapshot added"
        bump("teach.camera_n")
        st.rerun()


def uploads(ds) -> None:
    """Several image files at once; each new file is added once."""
    key = f"teach.upload.{counter('teach.upload_n')}"
    files = st.file_uploader(f"Upload photos ({ACCEPTED_TEXT})", type=UPLOAD_TYPES,
                             accept_multiple_files=True, key=key)
    if not files:
        sample_images.upload_hint("Choose one or more photos of the objects you want to teach.")
        return
    added = sum(add_photo(ds, f.getvalue(), f.name) for f in files)
    if added:
        st.session_state["teach.added"] = f"{added} photo(s) added"
    # A fresh uploader: the files are in the set now (errors above stay until the next run).
    bump("teach.upload_n")
    if added == len(files):
        st.rerun()


def counts(ds) -> None:
    """Photos, boxes per class, and how many more boxes each class needs for a first model."""
    per_class, needs = ds.counts(), ds.needs()
    cols = st.columns(1 + max(1, len(per_class)))
    cols[0].metric("Photos", len(ds.images))
    for col, (name, n) in zip(cols[1:], sorted(per_class.items())):
        more = needs.get(name, 0)
        col.metric(f"{name} boxes", n, delta=f"{more} more needed" if more else "enough",
                   delta_color="off" if more else "normal")
    if not per_class:
        cols[1].caption("No boxes yet: label the photos in step 2.")


@st.cache_data(show_spinner=False, max_entries=512)
def _thumb_png(path: str, digest: str, boxes: tuple, labels: tuple, names: tuple) -> bytes:
    image = sample_images.open_png(sample_images.decode_image(Path(path).read_bytes()))
    return sample_images.png_bytes(figures_teach.thumbnail(image, boxes, labels, list(names)))


def thumbnail_png(ds, entry) -> bytes:
    """A small PNG of one photo with its boxes (cached per photo and boxes)."""
    path = photo_path(ds, entry)
    boxes = tuple((b.x1, b.y1, b.x2, b.y2) for b in entry.boxes)
    labels = tuple(b.label for b in entry.boxes)
    digest = hashlib.sha1(f"{path}:{path.stat().st_mtime_ns}".encode()).hexdigest()
    return _thumb_png(str(path), digest, boxes, labels, tuple(ds.class_names))


def open_in_label(i: int) -> None:
    """Button callback (before the step control is drawn): photo ``i`` in step 2."""
    set_image_index(i)
    st.session_state["teach.step"] = "Label"


def grid(ds) -> None:
    """Thumbnails of every photo with its boxes; "Label" opens it in step 2, "Delete" removes
    it (file and boxes)."""
    if not ds.images:
        st.info("No photos yet: take snapshots or upload photos above.")
        return
    for start in range(0, len(ds.images), THUMBS_PER_ROW):
        cols = st.columns(THUMBS_PER_ROW)
        for col, (i, entry) in zip(cols, enumerate(ds.images[start:start + THUMBS_PER_ROW],
                                                   start)):
            with col:
                try:
                    st.image(thumbnail_png(ds, entry), width="stretch",
                             caption=f"#{i + 1} · {len(entry.boxes)} box(es)")
                except (OSError, InvalidImageError) as e:
                    st.warning(f"Photo #{i + 1} could not be read ({e}).")
                st.button("Label", key=f"teach.open.{entry.id}", icon=":material/edit:",
                          on_click=open_in_label, args=(i,), width="stretch")
                if st.button("Delete", key=f"teach.del.{entry.id}", icon=":material/delete:",
                             width="stretch"):
                    ds.remove_image(entry.id)
                    st.rerun()


def collect(ds) -> None:
    """Step 1: add photos, see them with their boxes and counts."""
    done = st.session_state.pop("teach.added", None)
    if done:
        st.toast(done)
    left, right = st.columns(2)
    with left:
        camera(ds)
    with right:
        uploads(ds)
    counts(ds)
    grid(ds)
