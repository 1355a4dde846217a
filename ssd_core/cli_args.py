"""The argument parser of ``python -m ssd_core``: one subcommand per job and one --option per
training setting, with help, choices and defaults read from ssd_core.config.FIELDS."""

from __future__ import annotations

import argparse

from ssd_core import runfolder as rf
from ssd_core.config import FIELDS
from ssd_core.recipes import ALL_RECIPES


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows "(default: X)" except where the default is None (config overrides say theirs)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class _OneLineParser(argparse.ArgumentParser):
    """A parser whose mistakes (a missing or unknown argument, a bad value) print
    one line ``error: ...`` naming the command's --help, and exit with status 2, as every
    other user error of the CLI does."""

    def error(self, message):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _parse_list(kind):
    def parse(text: str):
        try:
            return [kind(t.strip()) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated values, got {text!r}") from None
    parse.__name__ = f"list of {kind.__name__}"
    return parse


def _parse_scales(text: str):
    """'0.1,0.17;0.29,0.37;...' -> one list of numbers per scale."""
    try:
        scales = [[float(t) for t in part.split(",") if t.strip()] for part in text.split(";")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers, commas within a scale and ';' between scales, got {text!r}"
        ) from None
    return scales


_parse_scales.__name__ = "per-scale lists"


# How a setting of each kind is read from the command line (default: a float).
_PARSERS = {"int": int, "base_channels": _parse_list(int), "class_names": _parse_list(str),
            "anchor_sizes": _parse_scales, "anchor_ratios": _parse_scales, "num_classes": int,
            "device": str}


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """One --option per setting (ssd_core.config.FIELDS: its help, choices and default); unset
    options (None) keep the base config's value."""
    g = p.add_argument_group("training settings (TrainConfig and LossConfig fields)")
    for spec in FIELDS.values():
        flag = "--" + spec.name.replace("_", "-")
        default = spec.default
        text = spec.help
        if default is not None:
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            text += f" [default: {shown}]"
        if spec.kind == "bool":
            g.add_argument(flag, dest=spec.name, action=argparse.BooleanOptionalAction,
                           default=None, help=text)
        elif spec.choices is not None:
            g.add_argument(flag, dest=spec.name, choices=spec.choices, default=None, help=text)
        else:
            kind = _PARSERS.get(spec.name, _PARSERS.get(spec.kind, float))
            g.add_argument(flag, dest=spec.name, type=kind, default=None, help=text)
    g.add_argument("--amp", dest="amp", action=argparse.BooleanOptionalAction, default=None,
                   help="the old spelling of --precision fp16 (--no-amp: not fp16)")


def _add_data_options(p: argparse.ArgumentParser, val: bool) -> None:
    g = p.add_argument_group("data")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="PATH",
                     help="dataset folder or .zip (COCO, VOC, YOLO or CSV, detected "
                          "automatically), or the name of a photo set in the runs folder "
                          "(`set list`; trained on a frozen copy)")
    src.add_argument("--synthetic", type=int, metavar="N",
                     help="use N generated synthetic images instead of a dataset")
    g.add_argument("--format", dest="fmt", choices=["coco", "voc", "yolo", "csv"],
                   help="dataset format of --data (default: detect)")
    g.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic images")
    g.add_argument("--preset", default="default", choices=["default", "book"],
                   help="synthetic preset ('book': one class, like the chapter's Pikachu set)")
    g.add_argument("--runs", metavar="DIR",
                   help="the runs folder whose photo sets --data may name (default: "
                        "$SSD_RUNS_DIR, else runs/ of this checkout, else ./runs)")
    if val:
        g.add_argument("--val-data", metavar="PATH",
                       help="validation dataset folder or .zip, or a photo set's name")
        g.add_argument("--val-synthetic", type=int, metavar="N", default=None,
                       help="validate on N synthetic images (another seed than training)")
        g.add_argument("--augment", action="store_true",
                       help="box-aware augmentation (flip, zoom out, crop, colour) in training")


CHECKPOINT_HELP = "checkpoint file (.pt) saved by SSD Explorer, or 'shipped' for the pretrained " \
                  "model in assets/"


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="python -m ssd_core",
        description="SSD Explorer command line: train TinySSD, evaluate and run checkpoints, "
                    "generate synthetic datasets, keep photo sets of your own objects.",
        formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_OneLineParser)
    for add in (_add_train, _add_eval, _add_detect, _add_synth, _add_set):
        add(sub)
    return parser


def _add_train(sub) -> None:
    t = sub.add_parser(
        "train", help="train TinySSD (runs unchanged under torchrun for several processes)",
        formatter_class=_Formatter,
        description=f"Train TinySSD with the book's loop. Writes OUT/{rf.CONFIG}, "
                    f"OUT/{rf.METRICS}, OUT/{rf.CHECKPOINT} (latest, resumable), OUT/{rf.BEST} "
                    f"(best validation AP50) and OUT/{rf.STATUS}. Ctrl-C stops after the "
                    "current step and saves a checkpoint; --resume continues from it.")
    _add_data_options(t, val=True)
    t.add_argument("--out", metavar="DIR", help="run folder (default: runs/<date-time>)")
    t.add_argument("--resume", nargs="?", const="", metavar="CHECKPOINT",
                   help=f"continue a run: from CHECKPOINT, or OUT/{rf.CHECKPOINT} when no "
                        "path is given; its settings are kept unless overridden here")
    t.add_argument("--init", metavar="CHECKPOINT",
                   help="start a new run from CHECKPOINT's weights (fresh optimizer and "
                        "schedule), e.g. assets/tinyssd_synthetic.pt to fine-tune the shipped "
                        "model; its settings are the starting point unless overridden here. "
                        "With other classes than the data's, its class layers are re-made "
                        "(backbone and box layers kept) and the run says what it kept")
    t.add_argument("--config", metavar="JSON",
                   help=f"read settings from a {rf.CONFIG} first")
    t.add_argument("--recipe", choices=sorted(ALL_RECIPES), default=None,
                   help="start from a setting recipe instead of the book's defaults: "
                        + " ".join(f"'{k}' ({r.label}): {r.why}".replace("%", "%%")
                                   for k, r in ALL_RECIPES.items())
                        + " With --synthetic data, --val-synthetic and --augment default to "
                          "the recipe's; 'teach' starts from the shipped model's weights "
                          "(class layers re-made for the data's classes), augments strongly "
                          "and, without --val-data, holds out a share of --data for "
                          "validation; every option given here overrides the recipe")
    t.add_argument("--quiet", action="store_true", help="print only the per-epoch lines")
    t.add_argument("--stop-after-epoch", type=int, metavar="N",
                   help="stop (with a resumable checkpoint) once epoch N is done, without "
                        "changing the planned schedule; --resume continues from there")
    _add_config_options(t)


def _add_eval(sub) -> None:
    e = sub.add_parser("eval", help="AP table of a checkpoint on a dataset",
                       formatter_class=_Formatter,
                       description="Evaluate a checkpoint: AP at IoU 0.5 and COCO mAP "
                                   "(0.50:0.95), per class and overall.")
    e.add_argument("checkpoint", help=CHECKPOINT_HELP)
    _add_data_options(e, val=False)
    e.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    e.add_argument("--nms", type=float, default=0.5, help="NMS IoU threshold")
    e.add_argument("--pos-threshold", type=float, default=0.009,
                   help="minimum class probability for a detection")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    e.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def _add_detect(sub) -> None:
    d = sub.add_parser("detect", help="detect objects in images with a checkpoint",
                       formatter_class=_Formatter,
                       description="Run a checkpoint on images. Prints JSON (one entry per "
                                   "image, boxes in pixels of the original image) unless "
                                   "--json is given.")
    d.add_argument("checkpoint", help=CHECKPOINT_HELP)
    d.add_argument("images", nargs="+", metavar="IMAGE", help="image file(s)")
    d.add_argument("--conf", type=float, default=0.5, help="minimum score of a kept box")
    d.add_argument("--nms", type=float, default=0.5, help="NMS IoU threshold")
    d.add_argument("--per-class", action="store_true", help="NMS within each class only")
    d.add_argument("--json", metavar="FILE", help="write the JSON here instead of stdout")
    d.add_argument("--draw", metavar="OUT.png",
                   help="save the image with its boxes drawn (several images: OUT-<name>.png)")
    d.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def _add_synth(sub) -> None:
    s = sub.add_parser("synth", help="write a synthetic dataset in a standard format",
                       formatter_class=_Formatter,
                       description="Generate synthetic detection images and write them as a "
                                   "COCO, VOC, YOLO or CSV dataset.")
    s.add_argument("--format", dest="fmt", required=True, choices=["coco", "voc", "yolo", "csv"],
                   help="annotation format")
    s.add_argument("--n", type=int, default=500, help="number of images")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder")
    s.add_argument("--seed", type=int, default=0, help="random seed")
    s.add_argument("--preset", default="default", choices=["default", "book"],
                   help="synthetic preset")
    s.add_argument("--image-size", type=int, default=256, help="image side in pixels")


RUNS_HELP = ("the runs folder holding the photo sets (default: $SSD_RUNS_DIR, else runs/ of "
             "this checkout, else ./runs: the folder the app uses)")


def _add_set(sub) -> None:
    s = sub.add_parser(
        "set", help="photo sets of your own objects (the Teach page's), in the runs folder",
        formatter_class=_Formatter,
        description="Make and edit the photo sets the Teach page keeps (photos + COCO JSON in "
                    "<runs>/datasets/), the same steps from the command line. Train on one "
                    "with `train --recipe teach --data NAME`.")
    s.add_argument("--runs", metavar="DIR", help=RUNS_HELP)
    ss = s.add_subparsers(dest="set_command", required=True, metavar="SET_COMMAND",
                          parser_class=_OneLineParser)

    def add(name, text, **kw):
        p = ss.add_parser(name, help=text, description=text, formatter_class=_Formatter, **kw)
        p.add_argument("--runs", metavar="DIR", default=argparse.SUPPRESS, help=RUNS_HELP)
        return p

    add("list", "list the photo sets: photos, boxes per class, ready to train or not")
    add("new", "make an empty photo set").add_argument("name", help="the set's name")
    p = add("add", "add photos to a set (checked as every upload: size, pixels, format; "
                   "a bad photo adds none)")
    p.add_argument("name", help="the set's name")
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="image file(s)")
    p = add("import", "import a labelled dataset (folder or .zip in COCO, VOC, YOLO or CSV) "
                      "as a new set")
    p.add_argument("name", help="the new set's name")
    p.add_argument("source", metavar="DIR_OR_ZIP", help="the dataset folder or .zip")
    p = add("box", "add a box to a photo (CLASS X1 Y1 X2 Y2 in pixels of the stored photo, "
                   "see `set show`), or --clear its boxes")
    p.add_argument("name", help="the set's name")
    p.add_argument("image_id", type=int, metavar="PHOTO_ID", help="the photo's id (set show)")
    p.add_argument("box", nargs="*", default=[], metavar="CLASS X1 Y1 X2 Y2",
                   help="the class name and the corners in pixels")
    p.add_argument("--clear", action="store_true", help="remove every box of the photo")
    add("show", "the set's photos and boxes, boxes per class, what is still needed, "
                "problems").add_argument("name", help="the set's name")
    p = add("export", "write the set as a .zip in one of the four formats")
    p.add_argument("name", help="the set's name")
    p.add_argument("--format", dest="fmt", required=True, choices=["coco", "voc", "yolo", "csv"],
                   help="annotation format")
    p.add_argument("--out", required=True, metavar="FILE.zip", help="the zip to write")
    p = add("rename", "give a set a new name")
    p.add_argument("name", help="the set's name")
    p.add_argument("new_name", metavar="NEW_NAME", help="its new name")
    p = add("delete", "delete a set and its photos (asks nothing: needs --yes)")
    p.add_argument("name", help="the set's name")
    p.add_argument("--yes", action="store_true", help="yes, delete it and its photos")
