"""``python -m ssd_core train|eval|detect|synth|set``: the command line around ssd_core
(``set``, the Teach page's photo sets: ssd_core.cli_sets).

Errors a user can cause (missing file, bad checkpoint, bad setting, diverged training) print one
line ``error: ...`` to stderr and exit with status 2; no traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from ssd_core import data
from ssd_core.checkpoint import load_checkpoint
from ssd_core.cli_args import build_parser
from ssd_core.cli_sets import cmd_set, resolve_data
from ssd_core.config import FIELDS, TrainConfig
from ssd_core.data import split_holdout
from ssd_core.detection import Detector
from ssd_core.device import resolve_device
from ssd_core.drawing import draw_detections
from ssd_core.engine import Trainer
from ssd_core.errors import SSDError
from ssd_core.evaluate import evaluate_model
from ssd_core.images import load_image
from ssd_core.recipes import get_recipe
from ssd_core.resources import shipped_checkpoint
from ssd_core.runfolder import CHECKPOINT

# ---------------------------------------------------------------- helpers


class UsageError(SSDError, ValueError):
    """A command-line mistake (missing file, conflicting options)."""


def _dataset(args, image_size: int, path=None, synthetic=None, seed=None):
    path = args.data if path is None and synthetic is None else path
    if path is not None:
        if not Path(path).exists():
            raise UsageError(f"No dataset at {path!r}; give a folder, a .zip file or the name "
                             "of a photo set (`python -m ssd_core set list`).")
        return data.load_dataset(path, fmt=getattr(args, "fmt", None), image_size=image_size)
    n = args.synthetic if synthetic is None else synthetic
    if n < 1:
        raise UsageError(f"--synthetic needs at least 1 image, got {n}.")
    return data.SyntheticDetection(n, seed=args.data_seed if seed is None else seed,
                                   image_size=image_size, preset=args.preset)


def _fmt_time(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _epoch_line(r: dict) -> str:
    line = (f"epoch {r['epoch']:>3d}/{r['epochs']}: loss {r['loss']:.4f} (cls {r['cls_loss']:.4f}"
            f", box {r['box_loss']:.4f}), class err {r['class_error']:.2e}, "
            f"bbox mae {r['box_mae']:.2e}")
    if "val_ap50" in r:
        line += f", val AP50 {r['val_ap50']:.3f}, mAP {r['val_map']:.3f}"
    return line + f", {r['images_per_s']:.1f} img/s, {r.get('epoch_time', 0):.1f} s"


def _step_text(r: dict) -> str:
    spe = r["steps_per_epoch"]
    in_epoch = r["step"] - (r["epoch"] - 1) * spe
    return (f"epoch {r['epoch']}/{r['epochs']} step {in_epoch}/{spe} loss {r['loss']:.4f} "
            f"lr {r['lr']:.3g} {r['images_per_s']:.1f} img/s eta {_fmt_time(r['eta_s'])}")


class _Progress:
    """A \\r bar on a terminal, plain lines otherwise."""

    def __init__(self, quiet: bool):
        self.tty = sys.stderr.isatty()
        self.quiet = quiet
        self.open = False

    def step(self, r: dict) -> None:
        if self.quiet:
            return
        if self.tty:
            total, done = r["total_steps"], r["step"]
            n = int(30 * done / max(1, total))
            sys.stderr.write(f"\r[{'#' * n}{'.' * (30 - n)}] {_step_text(r)}\x1b[K")
            sys.stderr.flush()
            self.open = True
        else:
            print(_step_text(r), flush=True)

    def line(self, text: str) -> None:
        if self.open:
            sys.stderr.write("\r\x1b[K")
            self.open = False
        print(text, flush=True)


# ---------------------------------------------------------------- commands


def _train_setup(args):
    """-> (config, run folder, resume checkpoint path or None, init Checkpoint or None): the
    base settings (an --init or --resume checkpoint's, a --config file's, or the defaults)
    with the command line's options over them."""
    overrides = {name: getattr(args, name) for name in (*FIELDS, "amp")  # amp: an old flag
                 if getattr(args, name, None) is not None}
    if "base_channels" in overrides:
        overrides["base_channels"] = tuple(overrides["base_channels"])
    resume = init = None
    out = Path(args.out) if args.out else None
    if args.resume is not None and args.init:
        raise UsageError("Give --resume (continue a run) or --init (a new run from a "
                         "checkpoint's weights), not both.")
    recipe = get_recipe(args.recipe) if getattr(args, "recipe", None) else None
    if recipe is not None and (args.init or args.resume is not None or args.config):
        raise UsageError("--recipe starts a new run with the recipe's settings (and its "
                         "weights: random, or the shipped model's for 'teach'); give it "
                         "without --resume, --init or --config.")
    if recipe is not None and recipe.init is not None:
        init = load_checkpoint(recipe.init_path())
    if args.init:
        init = load_checkpoint(args.init)
        base = init.config.flat()
    elif args.resume is not None:
        if args.resume:
            resume = Path(args.resume)
        elif out is not None:
            resume = out / CHECKPOINT
        else:
            raise UsageError("--resume without a path needs --out (the run folder to resume).")
        out = out or resume.parent
        base = load_checkpoint(resume).config.flat()
    elif args.config:
        if not Path(args.config).exists():
            raise UsageError(f"No config file at {args.config!r}.")
        base = TrainConfig.from_json(Path(args.config).read_text()).flat()
    elif getattr(args, "recipe", None):
        base = get_recipe(args.recipe).config().flat()
    else:
        base = TrainConfig().flat()
    config = TrainConfig.from_dict({**base, **overrides})
    return config, out or Path("runs") / time.strftime("%Y%m%d-%H%M%S"), resume, init


def _train_data(args, config: TrainConfig, say=print):
    """-> (training set, validation set or None) as the data options say; a recipe with a
    held-out share (teach) holds it out of --data when no validation data is given, chosen by
    the run's seed, and ``say``s the split."""
    train_data = _dataset(args, config.input_size)
    recipe = get_recipe(args.recipe) if getattr(args, "recipe", None) else None
    if args.val_synthetic is None:  # a recipe validates synthetic training data by default
        args.val_synthetic = recipe.val_images if recipe and args.synthetic else 0
    augment = getattr(args, "augment", False)
    if recipe is not None and recipe.augment:
        augment = recipe.augment
    val_data = None
    if args.val_data:
        val_data = _dataset(args, config.input_size, path=args.val_data)
    elif args.val_synthetic:
        val_data = _dataset(args, config.input_size, synthetic=args.val_synthetic,
                            seed=args.data_seed + 1_000_003)
    elif recipe is not None and recipe.holdout and args.data:
        n = len(train_data)
        train_data, val_data = split_holdout(train_data, recipe.holdout, config.seed)
        say(f"held out {len(val_data)} of {n} images for validation (a {recipe.holdout:.0%} "
            f"share chosen by seed {config.seed}, every class where possible); training on "
            f"{len(train_data)}")
    if augment and hasattr(train_data, "set_augment"):
        train_data.set_augment(augment)
    return train_data, val_data


def _resolve_sets(args, freeze: bool, say=print) -> None:
    """--data / --val-data naming a photo set of the runs folder -> its (frozen) folder."""
    root = Path(args.runs) if getattr(args, "runs", None) else None
    for name in ("data", "val_data"):
        given = getattr(args, name, None)
        if given:
            setattr(args, name, resolve_data(given, root, freeze))
            if getattr(args, name) != given:
                say(f"--{name.replace('_', '-')} {given}: the photo set, "
                    + (f"a frozen copy in {getattr(args, name)}" if freeze
                       else f"in {getattr(args, name)}"))


def cmd_train(args) -> int:
    said = []
    _resolve_sets(args, freeze=True, say=said.append)
    config, out, resume, init = _train_setup(args)
    train_data, val_data = _train_data(args, config, say=said.append)
    trainer = Trainer(config, train_data, val_data, run_dir=out, resume=resume, init=init)
    progress = _Progress(args.quiet or not trainer.is_main)
    if trainer.is_main:
        for line in said:
            progress.line(line)
        progress.line(f"training TinySSD on {len(train_data)} images ({len(trainer.class_names)} "
                      f"classes) -> {out}" + (f", resuming {resume}" if resume else "")
                      + (f", starting from the weights of {init.path}" if init else ""))
    told_init = False
    with _stop_on_signals(trainer):
        for r in trainer.fit():
            if not trainer.is_main:
                continue
            if trainer.init_report and not told_init:  # known once fit() has set up
                progress.line(f"init: {trainer.init_report}")
                told_init = True
            if r["kind"] == "epoch":
                progress.line(_epoch_line(r))
                if args.stop_after_epoch is not None and r["epoch"] >= args.stop_after_epoch:
                    trainer.stop()
            else:
                progress.step(r)
    if trainer.is_main:
        progress.line(f"{trainer.state}: {trainer.message}; checkpoint {out / CHECKPOINT}")
    if trainer.world_size > 1:  # every process reports, so a launcher can see all of them ran
        images = sum(r["images"] for r in trainer.history if r["kind"] == "step")
        print(f"[rank {trainer.rank}/{trainer.world_size}] {trainer.state}: {trainer.step} steps,"
              f" {images} images (all ranks) on {trainer.device}", file=sys.stderr, flush=True)
    return 0


@contextlib.contextmanager
def _stop_on_signals(trainer):
    """Ctrl-C / SIGTERM ask the trainer to stop after the current step (a second Ctrl-C
    aborts at once)."""
    interrupted = []

    def on_signal(signum, frame):
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(signum)
        trainer.stop()
        sys.stderr.write("\nstopping after this step and saving a checkpoint "
                         "(Ctrl-C again to abort)\n")

    old = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        signal.signal(signal.SIGTERM, old_term)


def _checkpoint_path(name: str) -> str:
    """The checkpoint argument: a file, or 'shipped' for the pretrained model in assets/."""
    if name == "shipped":
        return str(shipped_checkpoint())
    return name


def _load(checkpoint: str, device: str):
    checkpoint = _checkpoint_path(checkpoint)
    try:
        dev = resolve_device(device)
    except ValueError as e:
        raise UsageError(str(e)) from None
    ckpt = load_checkpoint(checkpoint, map_location=dev)
    return ckpt, dev


def cmd_eval(args) -> int:
    _resolve_sets(args, freeze=False, say=lambda line: None)
    ckpt, dev = _load(args.checkpoint, args.device)
    data = _dataset(args, ckpt.config.input_size)
    result = evaluate_model(ckpt.model, data, ckpt.class_names, batch_size=args.batch_size,
                            input_size=ckpt.config.input_size, device=dev,
                            nms_threshold=args.nms, pos_threshold=args.pos_threshold)
    width = max([len("class"), len("all (mean)")] + [len(n) for n in ckpt.class_names])
    print(f"{'class':<{width}}  {'AP50':>6}  {'mAP':>6}  {'#gt':>6}")
    for name, row in result.per_class.items():
        print(f"{name:<{width}}  {row['ap50']:6.3f}  {row['map']:6.3f}  {row['num_gt']:6d}")
    total = sum(int(r["num_gt"]) for r in result.per_class.values())
    print(f"{'all (mean)':<{width}}  {result.ap50:6.3f}  {result.map:6.3f}  {total:6d}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "checkpoint": args.checkpoint, "images": len(data), "ap50": result.ap50,
            "map": result.map,
            "per_class": {k: {kk: float(vv) for kk, vv in v.items()}
                          for k, v in result.per_class.items()}}, indent=2))
    return 0


def cmd_detect(args) -> int:
    try:
        detector = Detector.from_checkpoint(_checkpoint_path(args.checkpoint), device=args.device)
    except ValueError as e:  # a device that is not available
        if isinstance(e, SSDError):
            raise
        raise UsageError(str(e)) from None
    results = []
    for path in args.images:
        if not Path(path).exists():
            raise UsageError(f"No image at {path!r}.")
        img = load_image(path)
        det = detector.predict(img, conf_threshold=args.conf, nms_threshold=args.nms,
                               per_class=args.per_class)
        records = det.to_records()
        results.append({"image": path, "width": img.width, "height": img.height,
                        "detections": records})
        if args.draw:
            target = Path(args.draw)
            if target.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
                raise UsageError(f"--draw needs an image file name such as out.png, got "
                                 f"{args.draw!r}.")
            if len(args.images) > 1:
                target = target.with_name(f"{target.stem}-{Path(path).stem}{target.suffix}")
            draw_detections(img, [r["box"] for r in records], [r["score"] for r in records],
                            [r["class_id"] for r in records], detector.class_names).save(target)
    text = json.dumps(results if len(results) > 1 else results[0], indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)
    return 0


def cmd_synth(args) -> int:
    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}.")
    ds = data.SyntheticDetection(args.n, seed=args.seed, image_size=args.image_size,
                                 preset=args.preset)
    data.export_dataset(ds, args.out, args.fmt)
    print(f"wrote {args.n} synthetic images ({len(ds.class_names)} classes: "
          f"{', '.join(ds.class_names)}) as {args.fmt} to {args.out}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "detect": cmd_detect, "synth": cmd_synth,
            "set": cmd_set}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (SSDError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `... detect | head`
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), sys.stdout.fileno())
        return 0
