"""Every training setting in one place: ``TrainConfig`` with the loss settings as one nested
``LossConfig``, one set of defaults (the book's), and each field's help text, choices and valid
range as dataclass field metadata, read by the CLI and any settings form alike.

Settings have one flat name each (``lr``, ``box_loss``, ...): ``FIELDS`` maps it to its spec,
``TrainConfig.flat()`` gives the flat dict and ``TrainConfig.from_dict`` reads flat or nested
dicts (config.json files written before the loss settings were nested load unchanged, and an
old ``amp`` setting is read as the ``precision`` it meant).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from ssd_core.errors import ConfigError

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("none", "cosine", "step")
CLS_LOSSES = ("ce", "focal")
BOX_LOSSES = ("l1", "smooth_l1")
NORMALIZATIONS = ("mean", "positives")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "fast")
DEVICE_DATA = ("auto", "on", "off")


def _number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _integer(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, int)


def _per_scale(v) -> bool:
    return v is None or (isinstance(v, list) and len(v) == 5 and all(
        isinstance(r, list) and r and all(_number(x) and x > 0 for x in r) for r in v))


def _device(v) -> bool:
    if not isinstance(v, str):
        return False
    if v == "auto":
        return True
    try:
        torch.device(v)
    except (RuntimeError, ValueError):
        return False
    return True


# kind -> (type check, what the kind must be)
_KINDS = {
    "float": (_number, "must be a finite number"),
    "int": (_integer, "must be an integer"),
    "bool": (lambda v: isinstance(v, bool), "must be true or false"),
    "choice": (lambda v: True, ""),
    "other": (lambda v: True, ""),
}


def setting(default=None, *, help: str, kind: str = "float", choices=None, check=None,
            rule: str = "", factory=None):
    """A dataclass field with its help, kind ('float', 'int', 'bool', 'choice', 'other'),
    choices and range check (``check(value) -> bool``, ``rule`` says what is valid)."""
    meta = {"help": help, "kind": kind, "choices": choices, "check": check, "rule": rule}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _validate_fields(obj) -> None:
    """Raise ConfigError for the first field of a settings dataclass that breaks its rules."""
    for f in dataclasses.fields(obj):
        meta, value = f.metadata, getattr(obj, f.name)
        if not meta:
            continue
        owner = type(obj).__name__
        type_ok, type_rule = _KINDS[meta["kind"]]
        choices = meta["choices"]
        if choices is not None and value not in choices:
            problem = f"must be one of {choices}"
        elif not type_ok(value):
            problem = type_rule
        elif meta["check"] is not None and not meta["check"](value):
            problem = meta["rule"]
        else:
            continue
        raise ConfigError(f"{owner}.{f.name} {problem}, got {value!r}.", field=f.name)


@dataclass
class LossConfig:
    """Options of ``ssd_loss``; the defaults are the book's loss (L1, cross-entropy, mean).

    normalize="mean" is exactly the book (class loss averaged over anchors, box loss over all
    N*4 offset entries, per image, then over the batch); "positives" divides both sums by the
    number of positive anchors in the batch, as the SSD paper does.
    """

    cls_loss: str = setting("ce", kind="choice", choices=CLS_LOSSES,
                            help="class loss: ce (cross-entropy, the book) or focal")
    focal_gamma: float = setting(2.0, help="focal loss gamma", check=lambda v: v >= 0,
                                 rule="must be >= 0")
    focal_alpha: float = setting(0.25, help="focal loss alpha (weight of object classes)",
                                 check=lambda v: 0 <= v <= 1, rule="must be between 0 and 1")
    box_loss: str = setting("l1", kind="choice", choices=BOX_LOSSES,
                            help="offset loss: l1 (the book) or smooth_l1")
    smooth_l1_sigma: float = setting(1.0, help="smooth-L1 sigma", check=lambda v: v > 0,
                                     rule="must be > 0")
    cls_weight: float = setting(1.0, help="weight of the class loss in the total",
                                check=lambda v: v >= 0, rule="must be >= 0")
    box_weight: float = setting(1.0, help="weight of the offset loss in the total",
                                check=lambda v: v >= 0, rule="must be >= 0")
    normalize: str = setting("mean", kind="choice", choices=NORMALIZATIONS,
                             help="loss normalisation: mean (the book) or positives (SSD paper)")
    hard_negative_mining: bool = setting(
        False, kind="bool", help="keep only the hardest negatives (neg_ratio per positive)")
    neg_ratio: float = setting(3.0, help="negatives kept per positive with hard negative mining",
                               check=lambda v: v > 0, rule="must be > 0")

    def __post_init__(self):
        _validate_fields(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig:
    """Every training setting; the defaults are the book's (SGD, lr 0.2, wd 5e-4, batch 32,
    20 epochs, 256x256 inputs, L1 box loss, cross-entropy). Saved as JSON with each checkpoint.
    """

    # optimisation
    optimizer: str = setting("sgd", kind="choice", choices=OPTIMIZERS,
                             help="optimizer: sgd (the book) or adam")
    lr: float = setting(0.2, help="learning rate (book: 0.2 with SGD)", check=lambda v: v > 0,
                        rule="must be > 0 (the book uses 0.2 with SGD; try 1e-3 with Adam)")
    momentum: float = setting(0.0, help="SGD momentum (book: 0)", check=lambda v: 0 <= v < 1,
                              rule="must be in [0, 1)")
    weight_decay: float = setting(5e-4, help="L2 weight decay (book: 5e-4)",
                                  check=lambda v: v >= 0, rule="must be >= 0")
    batch_size: int = setting(32, kind="int", help="images per step (per process under torchrun)",
                              check=lambda v: v >= 1, rule="must be at least 1")
    epochs: int = setting(20, kind="int", help="passes over the training data",
                          check=lambda v: v >= 1, rule="must be at least 1")
    min_steps: int = setting(
        0, kind="int", help="train at least this many steps: on a small set the run gets more "
        "epochs than 'epochs' (0: off; the teach recipe's 30)",
        check=lambda v: v >= 0, rule="must be >= 0 (0 turns it off)")
    schedule: str = setting("none", kind="choice", choices=SCHEDULES,
                            help="learning-rate schedule after warmup: none, cosine or step")
    warmup_steps: int = setting(
        0, kind="int", help="linear warmup from lr/warmup_steps to lr over this many steps",
        check=lambda v: v >= 0, rule="must be >= 0")
    step_epochs: int = setting(
        10, kind="int", help="step schedule: multiply lr by step_gamma every this many epochs",
        check=lambda v: v >= 1, rule="must be at least 1")
    step_gamma: float = setting(0.1, help="step schedule: the factor",
                                check=lambda v: 0 < v <= 1, rule="must be in (0, 1]")
    min_lr_ratio: float = setting(0.0, help="cosine schedule: final lr as a fraction of lr",
                                  check=lambda v: 0 <= v <= 1, rule="must be in [0, 1]")
    # model and data
    input_size: int = setting(
        256, kind="int", help="square input side in pixels, a multiple of 32 and >= 64 "
        "(book: 256)", check=lambda v: v >= 64 and v % 32 == 0,
        rule="must be a multiple of 32 and at least 64 (the book uses 256)")
    num_classes: int | None = setting(
        None, kind="other", help="object classes (default: from the data)",
        check=lambda v: v is None or (_integer(v) and v >= 1),
        rule="must be at least 1 (or None: taken from the data)")
    class_names: list[str] | None = setting(
        None, kind="other", help="comma-separated class names (default: from the data)",
        check=lambda v: v is None or (isinstance(v, list) and v and len(set(v)) == len(v)),
        rule="must be a non-empty list of distinct names")
    base_channels: tuple[int, ...] = setting(
        (16, 32, 64), kind="other", help="comma-separated channels of the base network blocks",
        check=lambda v: bool(v) and all(_integer(c) and c >= 1 for c in v),
        rule="must be a non-empty list of positive integers")
    channels: int = setting(128, kind="int", help="channels of the multiscale blocks",
                            check=lambda v: v >= 1, rule="must be a positive integer")
    anchor_sizes: list[list[float]] | None = setting(
        None, kind="other", check=_per_scale,
        help="anchor sizes per scale, ';' between the 5 scales, e.g. "
             "'0.1,0.17;0.29,0.37;0.48,0.57;0.67,0.76;0.86,0.95' (default: the book's "
             "0.2,0.272;0.37,0.447;...)",
        rule="must be None (the book's) or 5 non-empty lists of positive numbers, one per "
             "TinySSD scale")
    anchor_ratios: list[list[float]] | None = setting(
        None, kind="other", check=_per_scale,
        help="anchor aspect ratios per scale, same form (default: the book's 1,2,0.5)",
        rule="must be None (the book's) or 5 non-empty lists of positive numbers, one per "
             "TinySSD scale")
    iou_threshold: float = setting(0.5, help="IoU at which an anchor is assigned to an object",
                                   check=lambda v: 0 < v <= 1, rule="must be in (0, 1]")
    # loss
    loss: LossConfig = field(default_factory=LossConfig)
    # process
    seed: int = setting(0, kind="int", help="random seed (same seed -> same run on CPU)")
    device: str = setting("auto", kind="other", check=_device,
                          help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps",
                          rule="must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    precision: str = setting(
        "auto", kind="choice", choices=PRECISIONS,
        help="autocast precision of the network: auto = bf16 on CUDA, fp32 elsewhere; fp16 = "
             "fp16 with loss scaling on CUDA (the old amp), fp32 elsewhere; fast = bf16 "
             "wherever the hardware runs it natively (CUDA, or a CPU with AVX512-BF16 or AMX: "
             "about 2x on such a CPU), fp32 elsewhere; bf16 always (emulated, slow, on other "
             "CPUs). bf16 and fp16 change results slightly")
    device_data: str = setting(
        "auto", kind="choice", choices=DEVICE_DATA,
        help="keep the training images on the training device, rendered once, augmented there "
             "in batches: auto = on for CUDA, and on CPU for data without augmentation")
    channels_last: bool = setting(
        True, kind="bool", help="channels-last memory format (faster convolutions on CPU and GPU)")
    num_workers: int = setting(
        -1, kind="int", help="DataLoader worker processes; -1 = automatic (0 on CPU)",
        check=lambda v: v >= -1, rule="must be >= 0, or -1 for automatic")
    sync_bn: bool = setting(False, kind="bool", help="SyncBatchNorm across processes under "
                                                     "torchrun")
    log_every: int = setting(10, kind="int", help="report metrics every this many steps",
                             check=lambda v: v >= 1, rule="must be at least 1")
    # validation
    val_every: int = setting(1, kind="int", help="validate every this many epochs",
                             check=lambda v: v >= 1,
                             rule="must be at least 1 (epochs between validations)")
    val_nms_threshold: float = setting(0.5, help="validation: NMS IoU threshold",
                                       check=lambda v: 0 < v <= 1, rule="must be in (0, 1]")
    val_pos_threshold: float = setting(0.009, help="validation: minimum class probability kept",
                                       check=lambda v: 0 <= v < 1, rule="must be in [0, 1)")

    def __post_init__(self):
        if isinstance(self.base_channels, list):
            self.base_channels = tuple(self.base_channels)
        if isinstance(self.class_names, (list, tuple)):
            self.class_names = [str(n) for n in self.class_names]
        for name in ("anchor_sizes", "anchor_ratios"):
            v = getattr(self, name)
            if isinstance(v, (list, tuple)) and all(isinstance(r, (list, tuple)) for r in v):
                setattr(self, name, [list(r) for r in v])
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)
        self.validate()

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad field and what would be valid."""
        if not isinstance(self.loss, LossConfig):
            raise ConfigError(f"TrainConfig.loss must be a LossConfig, got {self.loss!r}.",
                              field="loss")
        _validate_fields(self)
        _validate_fields(self.loss)
        if (self.class_names is not None and self.num_classes is not None
                and len(self.class_names) != self.num_classes):
            raise ConfigError(
                f"TrainConfig.class_names must have num_classes={self.num_classes} entries, "
                f"got {self.class_names!r}.", field="class_names")
        return self

    # ---- (de)serialisation: plain JSON, never pickle
    def to_dict(self) -> dict:
        """Nested dict: the loss settings under "loss"."""
        d = dataclasses.asdict(self)
        d["base_channels"] = list(self.base_channels)
        return d

    def flat(self) -> dict:
        """Flat dict: every setting under its one name (the CLI's and the form's view)."""
        return flat_settings(self.to_dict())

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Build from a nested or flat dict (loss settings under "loss" or at the top level);
        unknown keys are a ConfigError, missing keys take the defaults."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"A training config must be a JSON object, got {type(data).__name__}.")
        data = _precision_from_amp(data)
        unknown = sorted(set(data) - set(FIELDS) - {"loss"})
        if unknown:
            raise ConfigError(
                f"Unknown training setting(s) {unknown}; valid settings are {sorted(FIELDS)}.",
                field=unknown[0])
        top = {k: v for k, v in data.items() if k in FIELDS and FIELDS[k].owner is cls}
        loss = data.get("loss", {})
        if not isinstance(loss, dict):
            raise ConfigError(f"TrainConfig.loss must be an object, got {loss!r}.", field="loss")
        loss = {**loss, **{k: v for k, v in data.items() if FIELDS.get(k, _NO).owner is LossConfig}}
        try:
            return cls(**top, loss=LossConfig(**loss))
        except TypeError as e:  # e.g. a list where a number belongs
            raise ConfigError(f"Invalid training config: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"Training config is not valid JSON: {e}") from None
        return cls.from_dict(data)

    def epochs_for(self, steps_per_epoch: int) -> int:
        """The epochs a run of ``steps_per_epoch`` steps an epoch trains: ``epochs``, or more
        on a small set, so that it trains at least ``min_steps`` steps."""
        return max(self.epochs, -(-self.min_steps // max(1, steps_per_epoch)))

    def replace(self, **changes) -> TrainConfig:
        """A copy with some settings (flat names) changed, validated."""
        return type(self).from_dict({**self.flat(), **changes})


def flat_settings(data: dict) -> dict:
    """A config dict, nested (the loss settings under "loss", as config.json holds them) or
    flat (older runs), as one flat dict: every setting under its one name; a setting given both
    ways keeps its top-level value."""
    loss = data.get("loss")
    rest = {k: v for k, v in data.items() if k != "loss"}
    return {**loss, **rest} if isinstance(loss, dict) else rest


def _precision_from_amp(data: dict) -> dict:
    """Settings written when ``amp`` was a setting of its own (config.json files, checkpoints,
    saved recipes, ``--amp``) in today's terms: amp on is precision "fp16" where precision is
    absent or the default "auto" (as before: fp16 on CUDA, fp32 elsewhere); a precision chosen
    explicitly ("bf16", "fast", "fp32") wins over the legacy flag (amp on overrode it on CUDA
    only, so mapping it to fp16 would have turned an old bf16 CPU run into fp32). amp off
    leaves precision alone (and turns "fp16" back to "auto", the default, when an old --no-amp
    meets a newer config)."""
    if "amp" not in data:
        return data
    data = dict(data)
    amp = data.pop("amp")
    if not isinstance(amp, bool):
        raise ConfigError(f"TrainConfig.amp (today precision='fp16') must be true or false, "
                          f"got {amp!r}.", field="precision")
    if amp:
        if data.get("precision", "auto") == "auto":
            data["precision"] = "fp16"
    elif data.get("precision") == "fp16":
        data["precision"] = "auto"
    return data


class FieldSpec(NamedTuple):
    """One setting: its flat ``name``, the dataclass that holds it (``owner``), default, help,
    kind and choices (None for free values)."""

    name: str
    owner: type
    default: object
    help: str
    kind: str
    choices: tuple | None


def _specs(cls) -> dict[str, FieldSpec]:
    out = {}
    for f in dataclasses.fields(cls):
        if not f.metadata:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = FieldSpec(f.name, cls, default, f.metadata["help"], f.metadata["kind"],
                                f.metadata["choices"])
    return out


# Every setting by its flat name, TrainConfig's then LossConfig's (no name is in both).
FIELDS: dict[str, FieldSpec] = {**_specs(TrainConfig), **_specs(LossConfig)}
_NO = FieldSpec("", object, None, "", "other", None)


def help_text(name: str) -> str:
    """The one-line help of a setting (flat name)."""
    return FIELDS[name].help


def choices(name: str) -> tuple | None:
    """The allowed values of a choice setting, None for the others."""
    return FIELDS[name].choices
