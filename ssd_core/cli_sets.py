"""``python -m ssd_core set ...``: the Teach page's photo sets (ssd_core.userdata) from the
command line, in the runs folder the app uses (runfolder.default_runs_dir, or ``--runs``): list,
new, add photos, import a dataset, draw a box, show, export, rename, delete. Every bad input is
a ConfigError whose message says what was wrong and what to do (the CLI prints it on one line
and exits with status 2)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from ssd_core.errors import ConfigError
from ssd_core.fileio import atomic_write_bytes
from ssd_core.images import load_image
from ssd_core.runfolder import UPLOADS_DIR, default_runs_dir
from ssd_core.userdata import (
    TARGET_BOXES_PER_CLASS,
    Box,
    UserDataset,
    import_dataset,
    list_datasets,
)

# The app's upload limit (server.maxUploadSize in .streamlit/config.toml and app/launch.py):
# a photo the app would refuse is refused here too. Pixels, formats and the rest are
# load_image's checks, as for every upload.
UPLOAD_MAX_MB = 50
FORMATS = ("coco", "voc", "yolo", "csv")
CLI = "python -m ssd_core"


def runs_root(args) -> Path:
    return Path(args.runs) if getattr(args, "runs", None) else default_runs_dir()


def find_set(root: Path, name: str) -> UserDataset:
    """The set called ``name`` (exactly, else in any case, else by its folder name)."""
    sets = list_datasets(root)
    for match in (lambda d: d.name == name, lambda d: d.name.casefold() == name.casefold(),
                  lambda d: d.slug == name):
        found = next((d for d in sets if match(d)), None)
        if found is not None:
            return found
    known = ", ".join(repr(d.name) for d in sets) or "none yet"
    raise ConfigError(f"No photo set named {name!r} in {root} (sets: {known}); make it with "
                      f"`{CLI} set new {_quote(name)}` or see `{CLI} set list`.", field="name")


def _quote(text: str) -> str:
    return repr(text) if any(c.isspace() for c in text) or not text else text


def _counts_text(ds: UserDataset) -> str:
    counts = ds.counts()
    return ", ".join(f"{c} {n}" for c, n in counts.items()) if counts else "no boxes"


def set_list(args) -> int:
    root = runs_root(args)
    sets = list_datasets(root)
    if not sets:
        print(f"no photo sets in {root} (make one: {CLI} set new NAME)")
        return 0
    print(f"photo sets in {root}:")
    for ds in sets:
        state = "ready to train" if not ds.problems() else "not ready: " + " ".join(ds.problems())
        print(f"  {ds.name}: {len(ds)} photos; boxes: {_counts_text(ds)}; {state}")
    return 0


def set_new(args) -> int:
    ds = UserDataset.create(runs_root(args), args.name)
    print(f"made the photo set {ds.name!r} in {ds.path}; add photos with "
          f"`{CLI} set add {_quote(ds.name)} PHOTO...`")
    return 0


def _check_photo(path: str) -> None:
    """The checks of an upload, before anything is stored: a readable file within the app's
    size limit that load_image accepts (InvalidImageError naming it otherwise)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"No photo at {path!r}; give the path of an image file.", path=path)
    if not p.is_file():
        raise ConfigError(f"{path!r} is not a file; give image files (a folder or zip of a "
                          f"labelled dataset: `{CLI} set import`).", path=path)
    size = p.stat().st_size
    if size > UPLOAD_MAX_MB * 1024 * 1024:
        raise ConfigError(f"{path!r} is {size / 2**20:.0f} MB, over the {UPLOAD_MAX_MB} MB "
                          "limit of an upload; scale it down or save it as JPEG.", path=path)
    load_image(p)


def set_add(args) -> int:
    ds = find_set(runs_root(args), args.name)
    for path in args.photos:  # every photo checked first: a bad one adds none of them
        _check_photo(path)
    for path in args.photos:
        entry = ds.add_image(Path(path).read_bytes(), Path(path).name)
        print(f"added photo {entry.id} ({Path(path).name}, stored {entry.width}x{entry.height}"
              f" px as {entry.file})")
    print(f"{ds.name!r} has {len(ds)} photos; box them with "
          f"`{CLI} set box {_quote(ds.name)} PHOTO_ID CLASS X1 Y1 X2 Y2`")
    return 0


def set_import(args) -> int:
    root = runs_root(args)
    if not Path(args.source).exists():
        raise ConfigError(f"No dataset at {args.source!r}; give a folder or a .zip in COCO, "
                          "VOC, YOLO or CSV.", path=args.source)
    ds = import_dataset(root, args.source, args.name)
    print(f"imported {len(ds)} photos ({_counts_text(ds)}) from {args.source} as the set "
          f"{ds.name!r} in {ds.path}")
    return 0


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{what} must be a number of pixels, got {text!r}.",
                          field="box") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{what} must be a finite number of pixels, got {text!r}.",
                          field="box")
    return value


def set_box(args) -> int:
    ds = find_set(runs_root(args), args.name)
    try:
        entry = ds.image(args.image_id)
    except ConfigError:
        ids = ", ".join(str(im.id) for im in ds.images) or "none yet"
        raise ConfigError(f"The set {ds.name!r} has no photo {args.image_id} (photos: {ids}); "
                          f"see `{CLI} set show {_quote(ds.name)}`.", field="image_id") from None
    if args.clear:
        if args.box:
            raise ConfigError("Give either --clear (remove the photo's boxes) or CLASS X1 Y1 "
                              "X2 Y2 (add a box), not both.", field="box")
        ds.set_boxes(entry.id, [])
        print(f"removed every box of photo {entry.id} of {ds.name!r}")
        return 0
    if len(args.box) != 5:
        raise ConfigError(f"A box is CLASS X1 Y1 X2 Y2 (five values, pixels of the stored "
                          f"{entry.width}x{entry.height} photo), got {len(args.box)}: "
                          f"{' '.join(args.box) or 'nothing'}; or --clear to remove the "
                          "photo's boxes.", field="box")
    label, *corners = args.box
    x1, y1, x2, y2 = (_number(v, n) for v, n in zip(corners, ("X1", "Y1", "X2", "Y2")))
    ds.set_boxes(entry.id, [*entry.boxes, Box(label, x1, y1, x2, y2)])
    boxes = ds.image(entry.id).boxes
    print(f"photo {entry.id} of {ds.name!r} has {len(boxes)} box(es): "
          + "; ".join(f"{b.label} ({b.x1:g}, {b.y1:g}, {b.x2:g}, {b.y2:g})" for b in boxes))
    return 0


def set_show(args) -> int:
    ds = find_set(runs_root(args), args.name)
    print(f"set {ds.name!r} in {ds.path}: {len(ds)} photos, classes: "
          f"{', '.join(ds.class_names) or 'none yet'}")
    for im in ds.images:
        boxes = "; ".join(f"{b.label} ({b.x1:g}, {b.y1:g}, {b.x2:g}, {b.y2:g})"
                          for b in im.boxes) or "no boxes"
        print(f"  photo {im.id}: {im.file} {im.width}x{im.height} px: {boxes}")
    print(f"boxes per class: {_counts_text(ds)}")
    needs = {c: n for c, n in ds.needs().items() if n}
    if not ds.class_names:
        print(f"still needed for a first model: {TARGET_BOXES_PER_CLASS} boxes of each class "
              f"(`{CLI} set box {_quote(ds.name)} PHOTO_ID CLASS X1 Y1 X2 Y2`)")
    elif needs:
        print("still needed for a first model: "
              + ", ".join(f"{n} more {c}" for c, n in needs.items()))
    else:
        print("still needed for a first model: nothing, every class has enough boxes")
    problems = ds.problems()
    if problems:
        print("problems: " + " ".join(problems))
    else:
        print(f"problems: none; train it with `{CLI} train --recipe teach --data "
              f"{_quote(ds.name)}`")
    return 0


def set_export(args) -> int:
    ds = find_set(runs_root(args), args.name)
    out = Path(args.out)
    if out.suffix.lower() != ".zip":
        raise ConfigError(f"--out must name a .zip file, got {args.out!r}.", field="out")
    if not out.parent.is_dir():
        raise ConfigError(f"No folder {str(out.parent)!r} to write {out.name} into; make it "
                          "first or give another --out.", field="out")
    data = ds.export_zip(args.fmt)
    atomic_write_bytes(out, lambda f: f.write(data))
    print(f"wrote {ds.name!r} ({len(ds)} photos, {_counts_text(ds)}) as {args.fmt} to {out}")
    return 0


def set_rename(args) -> int:
    ds = find_set(runs_root(args), args.name)
    old = ds.name
    ds.rename(args.new_name)
    print(f"renamed {old!r} to {ds.name!r} (its folder stays {ds.path})")
    return 0


def set_delete(args) -> int:
    ds = find_set(runs_root(args), args.name)
    if not args.yes:
        raise ConfigError(f"Deleting {ds.name!r} removes its {len(ds)} photos for good; add "
                          "--yes to confirm.", field="yes")
    name, n = ds.name, len(ds)
    ds.delete()
    print(f"deleted the set {name!r} and its {n} photos")
    return 0


SET_COMMANDS = {"list": set_list, "new": set_new, "add": set_add, "import": set_import,
                "box": set_box, "show": set_show, "export": set_export, "rename": set_rename,
                "delete": set_delete}


def cmd_set(args) -> int:
    return SET_COMMANDS[args.set_command](args)


def resolve_data(text: str, root: Path | None = None, freeze: bool = True) -> str:
    """``--data`` / ``--val-data``: a folder or zip that exists is itself; otherwise the name
    of a photo set in the runs folder ``root``: with ``freeze``, a frozen copy as the app
    trains on (a snapshot in ``<runs>/_uploads/``, so an edit meanwhile never reaches the run),
    else the set's own folder. ConfigError naming the set's problems when it cannot train yet;
    the text as given when nothing matches (the caller says there is no dataset there)."""
    if Path(text).exists():
        return text
    root = default_runs_dir() if root is None else Path(root)
    try:
        ds = find_set(root, text)
    except ConfigError:
        return text
    problems = ds.problems()
    if problems:
        raise ConfigError(f"The photo set {ds.name!r} cannot be used yet: {' '.join(problems)} "
                          f"(see `{CLI} set show {_quote(ds.name)}`).", field="data")
    if not freeze:
        return str(ds.path)
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    return str(ds.snapshot(root / UPLOADS_DIR / f"teach-{ds.slug}-{stamp}"))
