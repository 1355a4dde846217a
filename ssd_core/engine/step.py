"""One optimizer step of the book's loop: the batch on the device at the input size, forward
under the run's autocast, ``multibox_target``, ``ssd_loss``, the step's sums, backward (loss
scaled for fp16) and the optimizer and learning-rate steps."""

from __future__ import annotations

import threading

import torch

from ssd_core.config import TrainConfig
from ssd_core.engine.records import entry, read_flags, step_sums, sums_of
from ssd_core.engine.setup import autocast_dtype
from ssd_core.evaluate import resize_batch
from ssd_core.losses import ssd_loss
from ssd_core.matching import multibox_target


class TrainStep:
    """Calling it runs one step of ``net`` (the model, or its DistributedDataParallel wrapper)
    on a batch. ``processes``: engine.distributed.Processes (the sums are summed over them);
    ``stop``: the run's stop request; ``phase(name)`` is called as each phase of the step ends;
    ``diverged(what)`` makes the error raised for a non-finite loss."""

    def __init__(self, net, optimizer, scheduler, config: TrainConfig, device: torch.device,
                 processes, stop: threading.Event, phase, diverged):
        self.net, self.optimizer, self.scheduler = net, optimizer, scheduler
        self.config, self.device, self.processes = config, device, processes
        self.stop, self.phase, self.diverged = stop, phase, diverged
        self.amp_dtype = autocast_dtype(config, device)  # None: plain fp32
        # bf16 has fp32's range: only fp16 (precision 'fp16' on CUDA) needs loss scaling.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self._nonfinite = torch.zeros((), device=device)  # deferred non-finite-loss flags

    def __call__(self, X, Y, read_now: bool = True) -> tuple[torch.Tensor, bool]:
        """One optimizer step on X (B,3,S,S), Y (B,M,5) -> (the step's SUMS (len(SUMS),),
        whether some process asked to stop). ``read_now``: read the step's flags before the
        backward pass, so a NaN loss never reaches the weights; else the non-finite flag waits
        for :meth:`check_finite` (no host read per step)."""
        X, Y = self.prepare(X, Y)
        self.phase("data")
        with torch.autocast(self.device.type, dtype=self.amp_dtype,
                            enabled=self.amp_dtype is not None):
            anchors, cls_preds, bbox_preds = self.net(X)
        cls_preds, bbox_preds = cls_preds.float(), bbox_preds.float()
        self.phase("forward")
        with torch.no_grad():
            bbox_labels, bbox_masks, cls_labels = multibox_target(
                anchors.float(), Y, self.config.iou_threshold)
        self.phase("target")
        losses = ssd_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks,
                          self.config.loss)
        self.phase("loss")
        step = step_sums(losses, cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks,
                         X.shape[0], self.stop.is_set())
        self.processes.sum(step)  # one collective per step: metrics, stop, NaN flags
        stop_all = self._flags(step, read_now)
        self.phase("metrics")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total"]).backward()
        self.phase("backward")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.phase("optimizer")
        return sums_of(step), stop_all

    def _flags(self, step: torch.Tensor, read_now: bool) -> bool:
        """Whether some process asked to stop; raises for a non-finite loss read now."""
        if read_now:
            flags = read_flags(step)
            if flags["nonfinite"]:
                raise self.diverged("the loss")
            return flags["stop"]
        self._nonfinite += entry(step, "nonfinite")
        return self.stop.is_set()

    def check_finite(self) -> None:
        """Raise if a step since the last check had a non-finite loss (one host read)."""
        if self._nonfinite.item() > 0:
            raise self.diverged("the loss")

    def prepare(self, X, Y):
        """The batch on the device, at the input size, in the configured memory format."""
        cfg = self.config
        X = resize_batch(X.to(self.device, non_blocking=True), cfg.input_size)
        Y = Y.to(self.device, non_blocking=True)
        if cfg.channels_last:
            X = X.contiguous(memory_format=torch.channels_last)
        return X, Y
