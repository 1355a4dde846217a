"""Resume state: everything besides the weights that a run needs to continue exactly where its
checkpoint left off (optimizer, scheduler, progress), as plain values and tensors so checkpoints
load with ``weights_only=True``. No random-generator state is stored: every draw of a run is
derived from its seed and the step it belongs to (ssd_core.seeding), so a resumed run recomputes
them. Checkpoints of older versions carry an "rng" entry, which is ignored."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssd_core.checkpoint import Checkpoint, load_checkpoint, unwrap
from ssd_core.engine.schedule import apply_config_lr
from ssd_core.errors import CheckpointError


@dataclass
class Progress:
    """Where a run stands: optimizer steps done, the epoch to start (0-based), batches of it
    already done, seconds trained, best validation AP50 and the epoch's sums so far."""

    step: int = 0
    start_epoch: int = 0
    skip_batches: int = 0
    elapsed: float = 0.0
    best_ap50: float | None = None
    epoch_sums: torch.Tensor | None = None


def capture(optimizer, scheduler, scaler, progress: Progress) -> dict:
    """The train_state dict stored in a resumable checkpoint."""
    sums = progress.epoch_sums
    return {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "epoch": progress.start_epoch,
        "batch_in_epoch": progress.skip_batches,
        "step": progress.step,
        "elapsed": progress.elapsed,
        "best_ap50": progress.best_ap50,
        "epoch_sums": [] if sums is None else [float(v) for v in sums.tolist()],
    }


def restore(resume, model, optimizer, scheduler, scaler, config, class_names) -> Progress:
    """Load a resumable checkpoint (path or Checkpoint) into the run's objects ->
    its Progress. The optimizer state is kept only when the optimizer kind is unchanged."""
    ckpt = resume if isinstance(resume, Checkpoint) else load_checkpoint(resume)
    ts = ckpt.train_state
    if ts is None:
        raise CheckpointError(
            f"{ckpt.path!r} holds weights only (no optimizer state); it cannot be resumed. "
            "Use the run's checkpoint.pt.", path=ckpt.path)
    if ckpt.class_names != list(class_names):
        raise CheckpointError(
            f"The checkpoint was trained on classes {ckpt.class_names}, the data has "
            f"{list(class_names)}; resume with the same dataset.", path=ckpt.path)
    try:
        model.load_state_dict(unwrap(ckpt.model).state_dict())
        if ckpt.config.optimizer == config.optimizer:
            optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        if scaler.is_enabled() and ts.get("scaler"):
            scaler.load_state_dict(ts["scaler"])
        progress = Progress(int(ts["step"]), int(ts["epoch"]), int(ts["batch_in_epoch"]),
                            float(ts.get("elapsed", 0.0)), ts.get("best_ap50"))
        if ts.get("epoch_sums") and progress.skip_batches:
            progress.epoch_sums = torch.tensor(ts["epoch_sums"], dtype=torch.float64)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(
            f"{ckpt.path!r} has an incomplete or mismatched training state ({e}); "
            "start a fresh run or resume from the run's own checkpoint.pt.",
            path=ckpt.path) from None
    return progress


def resume_progress(resume, model, optimizer, scheduler, scaler, config, class_names,
                    steps_per_epoch: int) -> Progress:
    """:func:`restore`, then the config's learning rate over the restored schedule; a run
    stopped after its epoch's last batch starts at the next epoch."""
    p = restore(resume, model, optimizer, scheduler, scaler, config, class_names)
    apply_config_lr(optimizer, scheduler, config, steps_per_epoch)
    if p.skip_batches >= steps_per_epoch:
        p.start_epoch, p.skip_batches = p.start_epoch + 1, 0
    return p
