"""Training TinySSD: TrainConfig, checkpoints and the Trainer (a generator of metrics records).

The loop is the book's (forward -> multibox_target -> loss -> SGD step), batched and honest about
speed: ``images_per_s`` is measured over whole steps, data loading and target assignment included.

Records yielded by :meth:`Trainer.fit` (also appended to ``run_dir/metrics.jsonl``), all floats or
ints unless noted: ``kind`` ("step" every ``log_every`` steps, "epoch" at each epoch end), ``step``
(optimizer steps done), ``epoch`` (1-based epoch the record belongs to), ``epochs``,
``steps_per_epoch``, ``total_steps``, ``loss``, ``cls_loss``, ``box_loss``, ``class_error`` and
``box_mae`` (the book's metrics), ``positives_per_image``, ``images`` (images in the window, summed
over processes), ``images_per_s``, ``lr``, ``elapsed`` (s of training so far), ``eta_s``,
``world_size``; epoch records add ``epoch_time`` and, with validation data, ``val_ap50``,
``val_map`` (left out when the validation images hold no objects) and ``val_per_class``
({class name: AP50, None for a class without objects}). No record ever holds NaN.

Run folder: ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` (latest, resumable),
``best.pt`` (best validation AP50), ``status.json`` ({"state", "message", ...}).

Several processes: under ``torchrun`` (``WORLD_SIZE`` > 1) the Trainer joins a process group
(gloo on CPU, nccl on CUDA), wraps the model in DistributedDataParallel, splits every epoch with a
DistributedSampler, all-reduces the metrics and lets rank 0 alone write files and validate.
BatchNorm statistics stay per process (``sync_bn=False``): each process sees ``batch_size``
images, enough for stable statistics, and SyncBatchNorm would add a collective per BN layer
(10 per step) - slow over gloo. Set ``sync_bn=True`` for small per-process batches on GPUs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pickle
import random
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssd_core.errors import CheckpointError, ConfigError, TrainingDiverged

CHECKPOINT_FORMAT = "ssd-explorer-checkpoint"
CHECKPOINT_VERSION = 1

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("none", "cosine", "step")


# ---------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Every training setting; the defaults are the book's (SGD, lr 0.2, wd 5e-4, batch 32,
    20 epochs, 256x256 inputs, L1 box loss, cross-entropy). Saved as JSON with each checkpoint.
    """

    # optimisation
    optimizer: str = "sgd"
    lr: float = 0.2
    momentum: float = 0.0
    weight_decay: float = 5e-4
    batch_size: int = 32
    epochs: int = 20
    schedule: str = "none"
    warmup_steps: int = 0
    step_epochs: int = 10
    step_gamma: float = 0.1
    min_lr_ratio: float = 0.0
    # model and data
    input_size: int = 256
    num_classes: int | None = None
    class_names: list[str] | None = None
    base_channels: tuple[int, ...] = (16, 32, 64)
    channels: int = 128
    # anchors: one list of sizes and one of ratios per TinySSD scale (None: the book's)
    anchor_sizes: list[list[float]] | None = None
    anchor_ratios: list[list[float]] | None = None
    iou_threshold: float = 0.5
    # loss (the LossConfig fields)
    cls_loss: str = "ce"
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    box_loss: str = "l1"
    smooth_l1_sigma: float = 1.0
    cls_weight: float = 1.0
    box_weight: float = 1.0
    normalize: str = "mean"
    hard_negative_mining: bool = False
    neg_ratio: float = 3.0
    # process
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    channels_last: bool = True
    num_workers: int = -1
    sync_bn: bool = False
    log_every: int = 10
    # validation
    val_every: int = 1
    val_nms_threshold: float = 0.5
    val_pos_threshold: float = 0.009

    def __post_init__(self):
        self.base_channels = tuple(self.base_channels)
        if self.class_names is not None:
            self.class_names = [str(n) for n in self.class_names]
        for name in ("anchor_sizes", "anchor_ratios"):
            v = getattr(self, name)
            if isinstance(v, (list, tuple)) and all(isinstance(r, (list, tuple)) for r in v):
                setattr(self, name, [list(r) for r in v])
        self.validate()

    # ---- validation
    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad field and what would be valid."""

        def bad(name, rule):
            raise ConfigError(f"TrainConfig.{name} {rule}, got {getattr(self, name)!r}.")

        def number(name, *, integer=False):
            v = getattr(self, name)
            kinds = (int,) if integer else (int, float)
            if isinstance(v, bool) or not isinstance(v, kinds) or not math.isfinite(v):
                bad(name, "must be an integer" if integer else "must be a finite number")
            return v

        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            if getattr(self, name) not in allowed:
                bad(name, f"must be one of {allowed}")
        if number("lr") <= 0:
            bad("lr", "must be > 0 (the book uses 0.2 with SGD; try 1e-3 with Adam)")
        if not 0 <= number("momentum") < 1:
            bad("momentum", "must be in [0, 1)")
        if number("weight_decay") < 0:
            bad("weight_decay", "must be >= 0")
        if number("batch_size", integer=True) < 1:
            bad("batch_size", "must be at least 1")
        if number("epochs", integer=True) < 1:
            bad("epochs", "must be at least 1")
        if number("warmup_steps", integer=True) < 0:
            bad("warmup_steps", "must be >= 0")
        if number("step_epochs", integer=True) < 1:
            bad("step_epochs", "must be at least 1")
        if not 0 < number("step_gamma") <= 1:
            bad("step_gamma", "must be in (0, 1]")
        if not 0 <= number("min_lr_ratio") <= 1:
            bad("min_lr_ratio", "must be in [0, 1]")
        size = number("input_size", integer=True)
        if size < 64 or size % 32:
            bad("input_size", "must be a multiple of 32 and at least 64 (the book uses 256)")
        if self.num_classes is not None and number("num_classes", integer=True) < 1:
            bad("num_classes", "must be at least 1 (or None: taken from the data)")
        if self.class_names is not None:
            if not self.class_names or len(set(self.class_names)) != len(self.class_names):
                bad("class_names", "must be a non-empty list of distinct names")
            if self.num_classes is not None and len(self.class_names) != self.num_classes:
                bad("class_names", f"must have num_classes={self.num_classes} entries")
        if not self.base_channels or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in self.base_channels
        ):
            bad("base_channels", "must be a non-empty list of positive integers")
        if number("channels", integer=True) < 1:
            bad("channels", "must be a positive integer")
        for name in ("anchor_sizes", "anchor_ratios"):
            v = getattr(self, name)
            if v is None:
                continue
            if not isinstance(v, list) or len(v) != 5 or not all(
                isinstance(r, list) and r and all(
                    not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)
                    and x > 0 for x in r) for r in v):
                bad(name, "must be None (the book's) or 5 non-empty lists of positive numbers, "
                          "one per TinySSD scale")
        for name in ("iou_threshold", "val_nms_threshold"):
            if not 0 < number(name) <= 1:
                bad(name, "must be in (0, 1]")
        if not 0 <= number("val_pos_threshold") < 1:
            bad("val_pos_threshold", "must be in [0, 1)")
        number("seed", integer=True)
        if number("num_workers", integer=True) < -1:
            bad("num_workers", "must be >= 0, or -1 for automatic")
        if number("log_every", integer=True) < 1:
            bad("log_every", "must be at least 1")
        if number("val_every", integer=True) < 1:
            bad("val_every", "must be at least 1 (epochs between validations)")
        for name in ("amp", "channels_last", "sync_bn", "hard_negative_mining"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "must be true or false")
        dev = self.device
        if not isinstance(dev, str):
            bad("device", "must be a string such as 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'")
        if dev != "auto":
            try:
                torch.device(dev)
            except (RuntimeError, ValueError):
                bad("device", "must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        self.loss_config()  # LossConfig checks its own fields
        return self

    def loss_config(self):
        """The LossConfig made of this config's loss fields."""
        from ssd_core.losses import LossConfig

        names = {f.name for f in dataclasses.fields(LossConfig)}
        return LossConfig(**{k: v for k, v in self.to_dict().items() if k in names})

    # ---- (de)serialisation: plain JSON, never pickle
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["base_channels"] = list(self.base_channels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Build from a dict; unknown keys are a ConfigError, missing keys take the defaults."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"A training config must be a JSON object, got {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"Unknown training setting(s) {unknown}; valid settings are {sorted(known)}."
            )
        try:
            return cls(**data)
        except TypeError as e:  # e.g. a list where a number belongs
            raise ConfigError(f"Invalid training config: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"Training config is not valid JSON: {e}") from None
        return cls.from_dict(data)

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (validated)."""
        return type(self).from_dict({**self.to_dict(), **changes})


# ---------------------------------------------------------------- small file helpers


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import (os.umask can only be read by setting it, which is not thread-safe).
_FILE_MODE = 0o666 & ~_read_umask()


def _atomic_write_bytes(path: Path, write) -> None:
    """Call write(file) on a temp file next to ``path``, fsync, then os.replace: readers see the
    old file or the new one, never half of one. The file gets the mode any new file would (the
    temp file's own 0600 would lock out the other users of a shared runs folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # not on Windows, where modes do not apply
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path, data) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    blob = json.dumps(data, indent=2, default=_json_default).encode()
    _atomic_write_bytes(Path(path), lambda f: f.write(blob))


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


# ---------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``model`` (TinySSD, eval mode, on map_location), its ``config``,
    ``class_names``, ``metrics`` (the record it was saved with) and, for resuming,
    ``train_state`` (optimizer/scheduler/progress/RNG state, or None)."""

    model: nn.Module
    config: TrainConfig
    class_names: list[str]
    metrics: dict = field(default_factory=dict)
    train_state: dict | None = None
    path: str | None = None


def build_model(config: TrainConfig, num_classes: int | None = None) -> nn.Module:
    """A fresh TinySSD for ``config`` (num_classes from the argument or the config)."""
    from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES
    from ssd_core.model import TinySSD

    n = num_classes if num_classes is not None else config.num_classes
    if n is None:
        raise ConfigError("num_classes is unknown: set it in the config or give class names.")
    return TinySSD(n, base_channels=config.base_channels, channels=config.channels,
                   sizes=config.anchor_sizes or TINYSSD_SIZES,
                   ratios=config.anchor_ratios or TINYSSD_RATIOS)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path, model, config: TrainConfig, class_names, metrics=None,
                    train_state=None) -> Path:
    """Save model weights + config (JSON) + class names + metrics atomically to ``path``.

    Everything stored is tensors or plain Python values, so :func:`load_checkpoint` can use
    ``torch.load(weights_only=True)``. ``train_state`` (optimizer etc.) makes it resumable.
    """
    model = _unwrap(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": config.to_json(),
        "class_names": [str(n) for n in class_names],
        "metrics": json.dumps(metrics or {}, default=_json_default),
        "model": state,
    }
    if train_state is not None:
        payload["train_state"] = train_state
    path = Path(path)
    _atomic_write_bytes(path, lambda f: torch.save(payload, f))
    return path


def _read_checkpoint_payload(path: Path, map_location) -> dict:
    if not path.exists():
        raise CheckpointError(f"No checkpoint file at {str(path)!r}; check the path.")
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a folder, not a checkpoint file (.pt).")
    corrupt = (f"{str(path)!r} is not a readable PyTorch checkpoint (corrupt or truncated "
               "file?)")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; anything else is not ours
        raise CheckpointError(f"{corrupt}: not a zip-format torch.save file.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # a damaged pickle stream rather than a foreign class
            raise CheckpointError(f"{corrupt}: {str(e).splitlines()[0][:200]}") from None
        raise CheckpointError(
            f"Refused to load {str(path)!r}: it contains pickled Python objects other than "
            "tensors and plain values, which could run code when loaded. Only load checkpoints "
            f"saved by SSD Explorer. ({_global_line(e)})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError,
            TypeError, KeyError, IndexError, UnicodeDecodeError) as e:
        detail = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise CheckpointError(f"{corrupt}: {detail}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is a PyTorch file but not an SSD Explorer checkpoint (no "
            f"'format': {CHECKPOINT_FORMAT!r}); save models with ssd_core.train.save_checkpoint."
        )
    version = payload.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint version {version!r}; this SSD Explorer reads up to "
            f"version {CHECKPOINT_VERSION}. Upgrade SSD Explorer."
        )
    for key, kind in (("config", str), ("class_names", list), ("metrics", str), ("model", dict)):
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(
                f"{str(path)!r} is missing its {key!r} entry; the file is damaged.")
    return payload


def _global_line(e: Exception) -> str:
    """The line of torch's refusal that names the blocked class, e.g. 'GLOBAL posix.system'."""
    lines = [x.strip() for x in str(e).splitlines() if "global" in x.lower()]
    return (lines[-1] if lines else str(e).splitlines()[0])[:200]


def load_checkpoint(path, map_location="cpu") -> Checkpoint:
    """Load a checkpoint saved by :func:`save_checkpoint` -> :class:`Checkpoint` (model in eval
    mode on ``map_location``). Raises CheckpointError for a missing, corrupt or unsafe file or
    weights that do not fit the model the config describes."""
    path = Path(path)
    payload = _read_checkpoint_payload(path, map_location)
    try:
        config = TrainConfig.from_json(payload["config"])
    except ConfigError as e:
        raise CheckpointError(f"{str(path)!r} holds an invalid training config: {e}") from None
    class_names = [str(n) for n in payload["class_names"]]
    num_classes = config.num_classes or len(class_names)
    if len(class_names) != num_classes:
        raise CheckpointError(
            f"{str(path)!r} lists {len(class_names)} class names for {num_classes} classes."
        )
    try:
        metrics = json.loads(payload["metrics"])
    except ValueError:
        metrics = {}
    try:
        model = build_model(config, num_classes)
        model.load_state_dict(payload["model"], strict=True)
    except (RuntimeError, ConfigError) as e:
        msg = " ".join(str(e).split())[:300]
        raise CheckpointError(
            f"The weights in {str(path)!r} do not fit the TinySSD its config describes "
            f"({num_classes} classes, channels {config.base_channels}/{config.channels}): {msg}"
        ) from None
    model.to(map_location).eval()
    train_state = payload.get("train_state")
    return Checkpoint(model, config, class_names, metrics,
                      train_state if isinstance(train_state, dict) else None, str(path))


# ---------------------------------------------------------------- distributed helpers


def _dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1, 0
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


class _SkipSampler(torch.utils.data.Sampler):
    """The base sampler's indices minus the first ``skip`` (resuming mid-epoch)."""

    def __init__(self, base, skip: int):
        self.base, self.skip = base, skip

    def __iter__(self):
        return iter(list(self.base)[self.skip:])

    def __len__(self):
        return max(0, len(self.base) - self.skip)


def _lr_factor(config: TrainConfig, steps_per_epoch: int):
    """Multiplier of the base lr at optimizer step s (0-based): warmup, then the schedule."""
    total = config.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.schedule == "cosine":
            span = max(1, total - config.warmup_steps)
            t = min(1.0, (step - config.warmup_steps) / span)
            lo = config.min_lr_ratio
            return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t))
        if config.schedule == "step":
            return config.step_gamma ** ((step // steps_per_epoch) // config.step_epochs)
        return 1.0

    return factor


# ---------------------------------------------------------------- the trainer

# Sums kept per window/epoch; all-reduced across processes as one tensor.
_SUMS = ("loss", "cls_loss", "box_loss", "correct", "anchors", "abs_err", "offsets",
         "positives", "images", "batches")


class Trainer:
    """Train TinySSD on a detection dataset (items ``(image (3,S,S), target (M,5))``).

    ``fit()`` is a generator of metrics records (see the module docstring); ``stop()`` (any
    thread) ends it after the current step with a checkpoint; ``resume=path`` continues a run
    exactly where its checkpoint left off. ``init=path`` starts a new run (fresh optimizer and
    schedule) from another checkpoint's weights, e.g. to fine-tune the shipped model; its
    classes and layer shapes must match. With ``run_dir`` None nothing is written to disk.
    """

    def __init__(self, config: TrainConfig, train_data, val_data=None, run_dir=None,
                 resume=None, init=None):
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}.")
        config.validate()
        if train_data is None or len(train_data) == 0:
            raise ConfigError("The training dataset is empty; give at least one image.")
        self.train_data, self.val_data = train_data, val_data
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.class_names = self._class_names(config, train_data)
        self.config = config.replace(num_classes=len(self.class_names),
                                     class_names=self.class_names)
        if resume is not None and init is not None:
            raise ConfigError("Give either resume (continue a run) or init (start a new run "
                              "from a checkpoint's weights), not both.")
        self._resume, self._init = resume, init
        self._stop = threading.Event()
        self.state = "idle"
        self.message = ""
        self.step = 0
        self.epoch = 0
        self.model: nn.Module | None = None
        self.history: list[dict] = []
        self.best_ap50: float | None = None
        self.rank, self.world_size, self.local_rank = _dist_env()

    @staticmethod
    def _class_names(config: TrainConfig, data) -> list[str]:
        names = getattr(data, "class_names", None) or config.class_names
        if names is None:
            n = config.num_classes or 1
            names = [f"class{i}" for i in range(n)]
        names = [str(n) for n in names]
        if config.num_classes is not None and len(names) != config.num_classes:
            raise ConfigError(
                f"The data has {len(names)} classes ({names}) but the config says "
                f"num_classes={config.num_classes}; drop num_classes or fix the data."
            )
        return names

    # ---- public control
    def stop(self) -> None:
        """Ask fit() to finish the current step, save a checkpoint and return. Thread-safe."""
        self._stop.set()

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / "checkpoint.pt" if self.run_dir is not None else None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---- setup
    def _setup(self):
        from ssd_core import device as devmod
        from ssd_core.data import detection_collate
        from ssd_core.losses import init_focal_bias

        cfg = self.config
        self._dist = None
        if self.world_size > 1:
            import torch.distributed as dist

            self._dist = dist
            self._own_group = not dist.is_initialized()
            if self._own_group:
                backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
                dist.init_process_group(backend)
        if self._dist is not None and torch.cuda.is_available() and cfg.device in ("auto", "cuda"):
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        else:
            try:
                self.device = devmod.resolve_device(cfg.device)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if self.device.type == "cpu":
            devmod.tune_cpu_allocator()
            devmod.configure_cpu_threads()

        self._seed_everything(cfg.seed)
        model = build_model(cfg, len(self.class_names))
        if cfg.cls_loss == "focal":
            init_focal_bias(model)
        if self._init is not None:
            self._load_init(model, self._init)
        if self._dist is not None and cfg.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.loss_config = cfg.loss_config()
        self.optimizer = self._make_optimizer(model)

        nw = cfg.num_workers
        if nw < 0:  # on CPU the workers compete with the convolutions for the same cores
            nw = 0 if self.device.type == "cpu" else min(4, os.cpu_count() or 1)
        self._num_workers = nw
        self._collate = detection_collate
        self._sampler = torch.utils.data.DistributedSampler(
            self.train_data, num_replicas=self.world_size, rank=self.rank, shuffle=True,
            seed=cfg.seed, drop_last=False)
        self.steps_per_epoch = math.ceil(len(self._sampler) / cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_factor(cfg, self.steps_per_epoch))
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

        self.start_epoch, self.skip_batches, self.elapsed_before = 0, 0, 0.0
        self._epoch_sums_before = None
        if self._resume is not None:
            self._load_resume(self._resume)
        self.net = model
        if self._dist is not None:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def _apply_config_lr(self) -> None:
        """After loading optimizer/scheduler state, let this run's config (which may override
        the checkpoint's, e.g. a lower lr after a divergence) decide lr and regularisation."""
        cfg = self.config
        self.scheduler.base_lrs = [cfg.lr] * len(self.optimizer.param_groups)
        self.scheduler.lr_lambdas = [_lr_factor(cfg, self.steps_per_epoch)] * len(
            self.optimizer.param_groups)
        lr = cfg.lr * self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        for g in self.optimizer.param_groups:
            g["initial_lr"], g["lr"], g["weight_decay"] = cfg.lr, lr, cfg.weight_decay
            if "momentum" in g:
                g["momentum"] = cfg.momentum
        self.scheduler._last_lr = [lr] * len(self.optimizer.param_groups)

    def _make_optimizer(self, model):
        cfg = self.config
        if cfg.optimizer == "adam":
            return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _loader(self, epoch: int, skip_batches: int):
        self._sampler.set_epoch(epoch)
        sampler = self._sampler
        if skip_batches:
            sampler = _SkipSampler(sampler, skip_batches * self.config.batch_size)
        return torch.utils.data.DataLoader(
            self.train_data, batch_size=self.config.batch_size, sampler=sampler,
            collate_fn=self._collate, num_workers=self._num_workers,
            pin_memory=self.device.type == "cuda", drop_last=False)

    # ---- state for resuming
    def _train_state(self, epoch: int, batch_in_epoch: int, epoch_sums) -> dict:
        np_state = np.random.get_state()
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.use_amp else {},
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "step": self.step,
            "elapsed": self._elapsed(),
            "best_ap50": self.best_ap50,
            "epoch_sums": [float(v) for v in epoch_sums.tolist()],
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                          int(np_state[2]), int(np_state[3]), float(np_state[4])],
            },
        }

    def _load_init(self, model: nn.Module, init) -> None:
        ckpt = init if isinstance(init, Checkpoint) else load_checkpoint(init)
        if ckpt.class_names != self.class_names:
            raise CheckpointError(
                f"{ckpt.path!r} was trained on classes {ckpt.class_names}, the data has "
                f"{self.class_names}; start from a checkpoint with the same classes.")
        mine, theirs = model.state_dict(), _unwrap(ckpt.model).state_dict()
        bad = [k for k in mine if k not in theirs or theirs[k].shape != mine[k].shape]
        if bad or set(theirs) - set(mine):
            raise CheckpointError(
                f"{ckpt.path!r} has a different network shape (first mismatch: "
                f"{(bad or sorted(set(theirs) - set(mine)))[0]}); keep its base_channels, "
                "channels and number of anchors per pixel.")
        model.load_state_dict(theirs)

    def _load_resume(self, resume) -> None:
        ckpt = resume if isinstance(resume, Checkpoint) else load_checkpoint(resume)
        ts = ckpt.train_state
        if ts is None:
            raise CheckpointError(
                f"{ckpt.path!r} holds weights only (no optimizer state); it cannot be resumed. "
                "Use the run's checkpoint.pt.")
        if ckpt.class_names != self.class_names:
            raise CheckpointError(
                f"The checkpoint was trained on classes {ckpt.class_names}, the data has "
                f"{self.class_names}; resume with the same dataset.")
        try:
            self.model.load_state_dict(_unwrap(ckpt.model).state_dict())
            if ckpt.config.optimizer == self.config.optimizer:
                self.optimizer.load_state_dict(ts["optimizer"])
            # else: a different optimizer was asked for; it starts with fresh state.
            self.scheduler.load_state_dict(ts["scheduler"])
            self._apply_config_lr()
            if self.use_amp and ts.get("scaler"):
                self.scaler.load_state_dict(ts["scaler"])
            self.step = int(ts["step"])
            self.start_epoch = int(ts["epoch"])
            self.skip_batches = int(ts["batch_in_epoch"])
            self.elapsed_before = float(ts.get("elapsed", 0.0))
            self.best_ap50 = ts.get("best_ap50")
            if ts.get("epoch_sums") and self.skip_batches:
                self._epoch_sums_before = torch.tensor(ts["epoch_sums"], dtype=torch.float64)
            rng = ts["rng"]
            torch.set_rng_state(rng["torch"])
            random.setstate(_as_tuple(rng["python"]))
            kind, keys, pos, has_gauss, cached = rng["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise CheckpointError(
                f"{ckpt.path!r} has an incomplete or mismatched training state ({e}); "
                "start a fresh run or resume from the run's own checkpoint.pt.") from None
        if self.skip_batches >= self.steps_per_epoch:
            self.start_epoch, self.skip_batches = self.start_epoch + 1, 0

    # ---- files (rank 0 only)
    def _write_status(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        if self.run_dir is not None and self.is_main:
            write_json_atomic(self.run_dir / "status.json", {
                "state": state, "message": message, "step": self.step, "epoch": self.epoch,
                "total_steps": getattr(self, "total_steps", None), "time": time.time()})

    def _log(self, record: dict) -> None:
        self.history.append(record)
        if self.run_dir is not None and self.is_main:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record, default=_json_default) + "\n")
                f.flush()

    def _save(self, name: str, epoch: int, batch_in_epoch: int, epoch_sums, metrics,
              with_state=True) -> None:
        if self.run_dir is None or not self.is_main:
            return
        self._check_weights()  # never let a NaN model overwrite the last good checkpoint
        state = self._train_state(epoch, batch_in_epoch, epoch_sums) if with_state else None
        save_checkpoint(self.run_dir / name, self.model, self.config, self.class_names,
                        metrics, state)

    def _check_weights(self) -> None:
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise TrainingDiverged(self._diverged_message("the weights"))

    def _diverged_message(self, what: str) -> str:
        cfg = self.config
        hint = (f"the learning rate {cfg.lr:g} is probably too high for {cfg.optimizer.upper()}"
                f" - try {cfg.lr / 10:g}")
        if cfg.warmup_steps == 0:
            hint += " or add warmup_steps"
        if cfg.amp:
            hint += "; or turn off amp"
        where = (f"; the last good checkpoint is {self.checkpoint_path}"
                 if self.checkpoint_path is not None and self.checkpoint_path.exists() else "")
        return (f"Training diverged at step {self.step} (epoch {self.epoch}): {what} became "
                f"NaN/inf; {hint}{where}.")

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._t_start)

    # ---- the loop
    def fit(self) -> Iterator[dict]:
        """Train; yields a record every ``log_every`` steps and at every epoch end."""
        self.state = "running"
        try:
            self._setup()
            if self.run_dir is not None and self.is_main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                write_json_atomic(self.run_dir / "config.json", self.config.to_dict())
            self._write_status("running", "training")
            yield from self._fit()
        except TrainingDiverged as e:
            self._write_status("failed", str(e))
            raise
        except GeneratorExit:  # the consumer closed us (e.g. the app went away)
            self._write_status("stopped", "training was interrupted")
            raise
        except BaseException as e:
            self._write_status("failed", f"{type(e).__name__}: {e}")
            raise
        finally:
            if getattr(self, "_dist", None) is not None and self._own_group:
                self._dist.destroy_process_group()

    def _fit(self) -> Iterator[dict]:
        cfg = self.config
        self._t_start = time.perf_counter()
        run_t0, run_step0 = time.perf_counter(), self.step
        win = torch.zeros(len(_SUMS), dtype=torch.float64)
        win_t0 = time.perf_counter()
        for epoch in range(self.start_epoch, cfg.epochs):
            self.epoch = epoch + 1
            skip = self.skip_batches if epoch == self.start_epoch else 0
            ep = torch.zeros(len(_SUMS), dtype=torch.float64)
            if skip and self._epoch_sums_before is not None:
                ep += self._epoch_sums_before
            ep_t0 = time.perf_counter()
            self.net.train()
            batch_in_epoch = skip
            stopped = False
            for X, Y in self._loader(epoch, skip):
                sums, stop_all = self._train_step(X, Y)
                batch_in_epoch += 1
                win += sums
                ep += sums
                if self.step % cfg.log_every == 0:
                    yield self._record("step", win, time.perf_counter() - win_t0, run_t0,
                                       run_step0)
                    win.zero_()
                    win_t0 = time.perf_counter()
                if stop_all and batch_in_epoch < self.steps_per_epoch:
                    stopped = True
                    break
            if stopped:
                if win[_SUMS.index("batches")] > 0:
                    yield self._record("step", win, time.perf_counter() - win_t0, run_t0,
                                       run_step0)
                rec = self.history[-1] if self.history else {}
                self._save("checkpoint.pt", epoch, batch_in_epoch, ep, rec)
                self._write_status("stopped", f"stopped at step {self.step}; resume with the "
                                              "checkpoint")
                return
            rec = self._record("epoch", ep, time.perf_counter() - ep_t0, run_t0, run_step0)
            rec["epoch_time"] = time.perf_counter() - ep_t0
            # The loss check saw the weights before the epoch's last update, not after it.
            self._check_weights()
            if self.val_data is not None and self.is_main and (
                    (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                rec.update(self.validate())
            self._log_only(rec)
            self._save("checkpoint.pt", epoch + 1, 0, torch.zeros(len(_SUMS)), rec)
            ap = rec.get("val_ap50")
            if ap is not None and (self.best_ap50 is None or ap > self.best_ap50):
                self.best_ap50 = ap
                self._save("best.pt", epoch + 1, 0, None, rec, with_state=False)
            yield rec
            if self._stop_requested():
                self._write_status("stopped", f"stopped after epoch {epoch + 1}")
                return
            self._write_status("running", f"epoch {epoch + 1}/{cfg.epochs} done")
        self._write_status("finished", f"trained {cfg.epochs} epochs, {self.step} steps")

    def _stop_requested(self) -> bool:
        """Whether any process was asked to stop (a collective: every rank must call it)."""
        if self._dist is None:
            return self._stop.is_set()
        flag = torch.tensor([1.0 if self._stop.is_set() else 0.0])
        self._dist.all_reduce(flag)
        return bool(flag.item() > 0)

    def _train_step(self, X, Y) -> tuple[torch.Tensor, bool]:
        """One optimizer step on a batch X (B,3,S,S), Y (B,M,5) -> (sums (len(_SUMS),), stop)."""
        from ssd_core.losses import ssd_loss
        from ssd_core.matching import multibox_target

        cfg = self.config
        X = X.to(self.device, non_blocking=True)
        Y = Y.to(self.device, non_blocking=True)
        if X.shape[-1] != cfg.input_size or X.shape[-2] != cfg.input_size:
            # Boxes are normalized, so resizing the images leaves the targets valid.
            X = F.interpolate(X, size=(cfg.input_size, cfg.input_size), mode="bilinear",
                              align_corners=False)
        if cfg.channels_last:
            X = X.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, enabled=self.use_amp):
            anchors, cls_preds, bbox_preds = self.net(X)
        cls_preds, bbox_preds = cls_preds.float(), bbox_preds.float()
        with torch.no_grad():
            bbox_labels, bbox_masks, cls_labels = multibox_target(
                anchors.float(), Y, cfg.iou_threshold)
        losses = ssd_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks,
                          self.loss_config)
        with torch.no_grad():  # the book's cls_eval / bbox_eval, kept on device (no sync)
            sums = torch.stack([
                losses["total"].detach(), losses["cls"].detach(), losses["box"].detach(),
                (cls_preds.argmax(dim=-1) == cls_labels).sum().float(),
                torch.tensor(float(cls_labels.numel()), device=self.device),
                ((bbox_labels - bbox_preds) * bbox_masks).abs().sum(),
                torch.tensor(float(bbox_labels.numel()), device=self.device),
                (cls_labels > 0).sum().float(),
                torch.tensor(float(X.shape[0]), device=self.device),
                torch.tensor(1.0, device=self.device),
                torch.tensor(1.0 if self._stop.is_set() else 0.0, device=self.device),
                (~torch.isfinite(losses["total"].detach())).float(),
            ]).double()
            if self._dist is not None:  # one collective per step: metrics, stop, NaN flags
                self._dist.all_reduce(sums)
            sums = sums.cpu()
        stop_all, nonfinite = sums[-2].item() > 0, sums[-1].item() > 0
        if nonfinite:
            raise TrainingDiverged(self._diverged_message("the loss"))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        # The losses are per-process batch means summed over processes; _record divides them
        # by "batches" (process-steps), the rest are plain counts.
        return sums[: len(_SUMS)], stop_all

    def _record(self, kind, s, seconds, run_t0, run_step0) -> dict:
        """Turn summed statistics into a metrics record (and log it for step records)."""
        idx = {k: i for i, k in enumerate(_SUMS)}
        batches = max(1.0, s[idx["batches"]].item())
        images = s[idx["images"]].item()
        done = self.step - run_step0
        per_step = (time.perf_counter() - run_t0) / max(1, done)
        rec = {
            "kind": kind,
            "step": self.step,
            "epoch": self.epoch,
            "epochs": self.config.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "loss": s[idx["loss"]].item() / batches,
            "cls_loss": s[idx["cls_loss"]].item() / batches,
            "box_loss": s[idx["box_loss"]].item() / batches,
            "class_error": 1.0 - s[idx["correct"]].item() / max(1.0, s[idx["anchors"]].item()),
            "box_mae": s[idx["abs_err"]].item() / max(1.0, s[idx["offsets"]].item()),
            "positives_per_image": s[idx["positives"]].item() / max(1.0, images),
            "images": int(images),
            "images_per_s": images / seconds if seconds > 0 else 0.0,
            "lr": self.optimizer.param_groups[0]["lr"],
            "elapsed": self._elapsed(),
            "eta_s": per_step * (self.total_steps - self.step),
            "world_size": self.world_size,
        }
        if kind == "step":
            self._log(rec)
        return rec

    def _log_only(self, rec: dict) -> None:
        self._log(rec)

    # ---- validation
    @torch.no_grad()
    def validate(self, data=None) -> dict:
        """AP of the current model on ``data`` (default: val_data) -> {"val_ap50", "val_map",
        "val_per_class"}. Detections from multibox_detection, boxes in normalized corners.
        AP is undefined without ground truths: then val_ap50/val_map are left out and a class
        without any has None, so no NaN reaches the records."""
        data = self.val_data if data is None else data
        try:
            result = evaluate_model(
                _unwrap(self.model), data, self.class_names, batch_size=self.config.batch_size,
                input_size=self.config.input_size, device=self.device,
                nms_threshold=self.config.val_nms_threshold,
                pos_threshold=self.config.val_pos_threshold,
                channels_last=self.config.channels_last)
        except TrainingDiverged:  # finite but huge weights whose outputs overflow
            raise TrainingDiverged(self._diverged_message("the network's outputs")) from None
        out = {"val_per_class": {k: v["ap50"] if math.isfinite(v["ap50"]) else None
                                 for k, v in result.per_class.items()}}
        if math.isfinite(result.ap50):
            out.update(val_ap50=result.ap50, val_map=result.map)
        return out


def _as_tuple(x):
    """random.setstate wants tuples; weights_only loading may hand back lists."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


@torch.no_grad()
def predict_batch(model, X, nms_threshold=0.5, pos_threshold=0.009):
    """Model + the book's multibox_detection: X (B,3,S,S) -> (B, N, 6) rows
    [class_id, score, x1, y1, x2, y2] (normalized corners, class -1 = background/suppressed)."""
    from ssd_core.detection import multibox_detection

    anchors, cls_preds, bbox_preds = model(X)
    if not bool(torch.isfinite(cls_preds).all() & torch.isfinite(bbox_preds).all()):
        raise TrainingDiverged("The network's outputs are NaN/inf: its weights diverged in "
                               "training. Use an earlier checkpoint or train again with a "
                               "lower learning rate.")
    cls_probs = F.softmax(cls_preds.float(), dim=2).permute(0, 2, 1)
    # exact_order=False: the detections (class >= 0) and their order are the book's; only the
    # order of the background rows differs, and NMS skips the thousands of background anchors.
    return multibox_detection(cls_probs, bbox_preds.float(), anchors.float(),
                              nms_threshold=nms_threshold, pos_threshold=pos_threshold,
                              exact_order=False)


@torch.no_grad()
def evaluate_model(model, data, class_names, batch_size=32, input_size=None, device=None,
                   nms_threshold=0.5, pos_threshold=0.009, channels_last=False):
    """Run ``model`` over a dataset and score it -> ssd_core.evaluate.EvalResult (normalized
    boxes on both sides). The model is put in eval mode and left there."""
    from ssd_core.data import detection_collate
    from ssd_core.evaluate import evaluate_detections

    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False,
                                         collate_fn=detection_collate)
    dets, gts = [], []
    for X, Y in loader:
        X = X.to(device)
        if input_size and X.shape[-1] != input_size:
            X = F.interpolate(X, size=(input_size, input_size), mode="bilinear",
                              align_corners=False)
        if channels_last:
            X = X.contiguous(memory_format=torch.channels_last)
        out = predict_batch(model, X, nms_threshold, pos_threshold).cpu()
        for rows, target in zip(out, Y):
            keep = rows[:, 0] >= 0
            dets.append((rows[keep, 2:6], rows[keep, 1], rows[keep, 0].long()))
            real = target[:, 0] >= 0
            gts.append((target[real, 1:5], target[real, 0].long()))
    if was_training:
        model.train()
    return evaluate_detections(dets, gts, len(class_names), class_names)
