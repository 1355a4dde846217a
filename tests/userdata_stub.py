"""A stand-in for ``ssd_core.userdata`` (branch ``userdata``, not merged yet) with the API its
brief gives, so the Teach page's tests run before it lands: :func:`install` puts it in
``sys.modules`` only when the real module is missing. Images + ``annotations.json`` (COCO)."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ssd_core.errors import ConfigError
from ssd_core.images import load_image

MIN_BOXES = 10  # per class, for a first model (the real module measures its own)


@dataclass
class Box:
    label: str
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass
class ImageEntry:
    id: str
    file: str
    width: int
    height: int
    boxes: list = field(default_factory=list)


class UserDataset:
    def __init__(self, path: Path):
        self.path = Path(path)
        meta = json.loads((self.path / "annotations.json").read_text())
        self.name = meta["info"]["name"]
        cats = {c["id"]: c["name"] for c in meta["categories"]}
        self.images = [ImageEntry(i["id"], i["file_name"], i["width"], i["height"], [])
                       for i in meta["images"]]
        by_id = {e.id: e for e in self.images}
        for a in meta["annotations"]:
            x, y, w, h = a["bbox"]
            by_id[a["image_id"]].boxes.append(Box(cats[a["category_id"]], x, y, x + w, y + h))

    @classmethod
    def create(cls, root, name: str) -> UserDataset:
        name = (name or "").strip()
        if not name:
            raise ConfigError("give the photo set a name")
        path = Path(root) / "_userdata" / name
        if path.exists():
            raise ConfigError(f"a photo set named {name!r} exists already")
        (path / "images").mkdir(parents=True)
        ds = cls.__new__(cls)
        ds.path, ds.name, ds.images = path, name, []
        ds._save()
        return ds

    @classmethod
    def open(cls, path) -> UserDataset:
        return cls(path)

    @property
    def class_names(self) -> list[str]:
        return sorted({b.label for e in self.images for b in e.boxes})

    def _save(self) -> None:
        names = self.class_names
        cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
        anns = [{"id": k, "image_id": e.id, "category_id": names.index(b.label) + 1,
                 "bbox": [b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1]}
                for k, (e, b) in enumerate((e, b) for e in self.images for b in e.boxes)]
        meta = {"info": {"name": self.name}, "categories": cats, "annotations": anns,
                "images": [{"id": e.id, "file_name": e.file, "width": e.width,
                            "height": e.height} for e in self.images]}
        (self.path / "annotations.json").write_text(json.dumps(meta))

    def add_image(self, data: bytes, filename: str) -> ImageEntry:
        img = load_image(io.BytesIO(data))
        i = uuid.uuid4().hex[:8]
        file = f"images/{i}.png"
        img.save(self.path / file)
        entry = ImageEntry(i, file, img.width, img.height, [])
        self.images.append(entry)
        self._save()
        return entry

    def remove_image(self, image_id: str) -> None:
        entry = next(e for e in self.images if e.id == image_id)
        (self.path / entry.file).unlink(missing_ok=True)
        self.images.remove(entry)
        self._save()

    def set_boxes(self, image_id: str, boxes) -> None:
        next(e for e in self.images if e.id == image_id).boxes = [Box(*(
            (b.label, b.x1, b.y1, b.x2, b.y2))) for b in boxes]
        self._save()

    def rename(self, name: str) -> None:
        new = self.path.parent / name
        if new.exists():
            raise ConfigError(f"a photo set named {name!r} exists already")
        self.path.rename(new)
        self.path, self.name = new, name
        self._save()

    def delete(self) -> None:
        shutil.rmtree(self.path)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.images:
            for b in e.boxes:
                out[b.label] = out.get(b.label, 0) + 1
        return out

    def needs(self) -> dict[str, int]:
        return {n: max(0, MIN_BOXES - c) for n, c in self.counts().items()}

    def problems(self) -> list[str]:
        out = []
        if len(self.images) < 2:
            out.append("add at least 2 photos")
        if not self.counts():
            out.append("draw at least one box")
        return out

    def export_zip(self, fmt: str) -> bytes:
        buf = io.BytesIO()
        shutil.make_archive  # noqa: B018 (the stub zips by hand)
        import zipfile
        with zipfile.ZipFile(buf, "w") as z:
            for p in self.path.rglob("*"):
                if p.is_file():
                    z.write(p, p.relative_to(self.path))
        return buf.getvalue()


def list_datasets(root) -> list[UserDataset]:
    base = Path(root) / "_userdata"
    return [UserDataset(p) for p in sorted(base.iterdir())
            if (p / "annotations.json").is_file()] if base.is_dir() else []


def import_dataset(root, source, name: str) -> UserDataset:
    raise ConfigError("importing needs the real ssd_core.userdata")


def install() -> bool:
    """Make ``ssd_core.userdata`` this stub when the real module is missing -> True if so."""
    if importlib.util.find_spec("ssd_core.userdata") is not None:
        return False
    sys.modules["ssd_core.userdata"] = sys.modules[__name__]
    return True
