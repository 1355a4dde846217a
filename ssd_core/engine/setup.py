"""Everything a run needs before its first step: the device, the model (its weights drawn from
the run's own generator: build_model; an init checkpoint's: engine.init_weights), the
optimizer, the autocast dtype, DataLoader workers and the training set rendered onto the
device."""

from __future__ import annotations

import os

import torch
from torch import nn

from ssd_core import device as devmod
from ssd_core.checkpoint import build_model
from ssd_core.config import TrainConfig
from ssd_core.data.device_data import DeviceData, device_augment, renderable
from ssd_core.engine.init_weights import load_init_weights
from ssd_core.engine.schedule import lr_factor
from ssd_core.errors import ConfigError
from ssd_core.losses import init_focal_bias


def training_device(config: TrainConfig, distributed: bool, local_rank: int) -> torch.device:
    """The device this process trains on (one GPU per process under torchrun); on CPU the
    allocator and thread settings are tuned."""
    if distributed and torch.cuda.is_available() and config.device in ("auto", "cuda"):
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        return device
    try:
        device = devmod.resolve_device(config.device)
    except ValueError as e:
        raise ConfigError(str(e), field="device") from None
    if device.type == "cpu":
        devmod.tune_cpu_allocator()
        devmod.configure_cpu_threads()
    return device


def make_model(config: TrainConfig, class_names, device, init=None, sync_bn=False) -> nn.Module:
    """A fresh TinySSD (focal prior bias if asked), optionally with ``init``'s weights, on
    ``device`` in the config's memory format."""
    return _make_model(config, class_names, device, init, sync_bn)[0]


def _make_model(config: TrainConfig, class_names, device, init=None,
                sync_bn=False) -> tuple[nn.Module, str | None]:
    """make_model -> (model, what init kept and re-made (load_init_weights) or None)."""
    model = build_model(config, len(class_names))
    if config.loss.cls_loss == "focal":
        init_focal_bias(model)
    report = None
    if init is not None:
        report = load_init_weights(model, init, class_names)
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, report


def make_training(config: TrainConfig, class_names, device, init, distributed: bool,
                  steps_per_epoch: int):
    """-> (model (make_model), its optimizer, the learning-rate schedule of the run, what init
    kept and re-made or None)."""
    model, report = _make_model(config, class_names, device, init,
                                sync_bn=distributed and config.sync_bn)
    optimizer = make_optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, steps_per_epoch))
    return model, optimizer, schedule, report


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr,
                                weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def loader_workers(config: TrainConfig, device: torch.device) -> int:
    """-1 means automatic: on CPU the workers compete with the convolutions for the cores."""
    if config.num_workers >= 0:
        return config.num_workers
    return 0 if device.type == "cpu" else min(4, os.cpu_count() or 1)


# Largest image tensor kept on the device by device_data="auto" (uint8 bytes).
DEVICE_DATA_LIMIT = {"cuda": 8 * 2**30, "cpu": 2**29}


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The network's autocast dtype for ``config.precision`` on ``device``, None for plain
    fp32: "fp16" is fp16 on CUDA (with a GradScaler); "auto" is bf16 on CUDA; "fast" is bf16
    wherever the device runs it natively (:func:`ssd_core.device.native_bf16`); "bf16" is
    bf16 everywhere; anything else is fp32."""
    p, cuda = config.precision, device.type == "cuda"
    if p == "fp16":
        return torch.float16 if cuda else None
    if p == "bf16" or (p == "auto" and cuda) or (p == "fast" and devmod.native_bf16(device)):
        return torch.bfloat16
    return None


def device_data(config: TrainConfig, data, device: torch.device,
                progress=None) -> DeviceData | None:
    """The training set rendered once onto ``device`` (ssd_core.data.device_data), or None for
    the DataLoader path. "auto": on CUDA whenever the data can be rendered (plain
    DetectionDataset items, ssd_core's Augment or none) and fits DEVICE_DATA_LIMIT; on CPU only
    without augmentation (the same pixels, just not drawn again every epoch)."""
    if config.device_data == "off":
        return None
    if config.device_data == "on":
        if not renderable(data):
            raise ConfigError("device_data='on' needs a DetectionDataset whose items are its "
                              "samples (no custom __getitem__); set device_data='off'.",
                              field="device_data")
        return DeviceData.from_dataset(data, device, progress=progress)
    if not renderable(data):
        return None
    try:
        aug = device_augment(data)
    except ConfigError:
        return None
    nbytes = len(data) * 3 * int(data.image_size) ** 2
    limit = DEVICE_DATA_LIMIT.get(device.type, 0)
    if nbytes > limit or (device.type != "cuda" and aug is not None):
        return None
    # At the dataset's own size, as ds[i]: the step resizes to input_size as on the host path.
    return DeviceData.from_dataset(data, device, progress=progress)
