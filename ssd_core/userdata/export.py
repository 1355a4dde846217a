"""A photo set on its way out: a DetectionDataset for training, a frozen copy for a run, a zip
in any of the four formats. Each takes a ``UserDataset`` and reads it under its lock."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path

from ssd_core.errors import ConfigError
from ssd_core.userdata.state import ANNOTATIONS, IMAGES_DIR, _locked


def load(ds, image_size: int = 256, augment=None):
    """``ds`` as an AnnotatedDetection on its annotations.json; ConfigError when empty."""
    from ssd_core.data import load_dataset

    with _locked(ds.path):
        state = ds._current()
        if not state.images or not state.class_names:
            raise ConfigError(f"The set {state.name!r} is empty: "
                              + ("it has no photos." if not state.images
                                 else "it has no classes (no boxes drawn)."))
        return load_dataset(ds.path, fmt="coco", image_size=image_size, augment=augment,
                            name=state.name)


def snapshot(ds, dest) -> Path:
    """Copy ``ds`` as it is now into the new folder ``dest`` (hard links where the disk allows)
    -> ``dest``; nothing is left at ``dest`` when it fails."""
    dest = Path(dest)
    if dest.exists():
        raise ConfigError(f"{str(dest)!r} already exists; give a new folder.", path=dest)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with _locked(ds.path):
            (tmp / IMAGES_DIR).mkdir(parents=True)
            for name in [ANNOTATIONS] + [f"{IMAGES_DIR}/{im.file}" for im in
                                         ds._current().images]:
                try:
                    os.link(ds.path / name, tmp / name)
                except OSError:  # another file system, or no links there
                    shutil.copy2(ds.path / name, tmp / name)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def export_zip(ds, fmt: str) -> bytes:
    """``ds`` as zip bytes in ``fmt`` ("coco" | "voc" | "yolo" | "csv"), inside a folder named
    after its slug. ConfigError for an empty set or an unknown format."""
    from ssd_core.data import FORMATS, export_dataset

    if str(fmt).lower() not in FORMATS:
        raise ConfigError(f"Unknown export format {fmt!r}; choose from {list(FORMATS)}.",
                          field="fmt")
    with _locked(ds.path), tempfile.TemporaryDirectory(prefix="ssd_export_") as tmp:
        # under the lock: a photo removed meanwhile would fail the export half way
        out = export_dataset(load(ds), Path(tmp) / ds.slug, fmt)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(out.rglob("*")):
                if p.is_file():
                    zf.write(p, p.relative_to(tmp).as_posix())
    return buf.getvalue()
