"""Checkpoints: save, load (``torch.load(weights_only=True)``) and build a TinySSD from one.

A checkpoint is a zip-format ``torch.save`` of plain values: ``format``/``version``, the
``config`` (TrainConfig JSON), ``class_names``, ``metrics`` (JSON), the ``model`` state dict and,
for a resumable checkpoint, ``train_state`` (optimizer, scheduler, progress, RNG states).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES
from ssd_core.config import TrainConfig
from ssd_core.errors import CheckpointError, ConfigError
from ssd_core.fileio import atomic_write_bytes, json_default
from ssd_core.model import seeded_tinyssd

CHECKPOINT_FORMAT = "ssd-explorer-checkpoint"
CHECKPOINT_VERSION = 1


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
    """A fresh TinySSD for ``config`` (num_classes from the argument or the config), with the
    random weights a run of ``config.seed`` starts from (:func:`ssd_core.model.seeded_tinyssd`:
    the run's own generator, never torch's process-wide one)."""
    n = num_classes if num_classes is not None else config.num_classes
    if n is None:
        raise ConfigError("num_classes is unknown: set it in the config or give class names.")
    return seeded_tinyssd(n, config.seed, base_channels=config.base_channels,
                          channels=config.channels, sizes=config.anchor_sizes or TINYSSD_SIZES,
                          ratios=config.anchor_ratios or TINYSSD_RATIOS)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path, model, config: TrainConfig, class_names, metrics=None,
                    train_state=None) -> Path:
    """Save model weights + config (JSON) + class names + metrics atomically to ``path``.

    Everything stored is tensors or plain Python values, so :func:`load_checkpoint` can use
    ``torch.load(weights_only=True)``. ``train_state`` (optimizer etc.) makes it resumable.
    """
    model = unwrap(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": config.to_json(),
        "class_names": [str(n) for n in class_names],
        "metrics": json.dumps(metrics or {}, default=json_default),
        "model": state,
    }
    if train_state is not None:
        payload["train_state"] = train_state
    path = Path(path)
    atomic_write_bytes(path, lambda f: torch.save(payload, f))
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
            f"'format': {CHECKPOINT_FORMAT!r}); save models with "
            "ssd_core.checkpoint.save_checkpoint."
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
    try:
        return _load(path, map_location)
    except CheckpointError as e:
        e.path = e.path or str(path)
        raise


def _load(path: Path, map_location) -> Checkpoint:
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
