"""What a run says when it diverges: where (step, epoch, what became NaN/inf), a hint at the
likely cause and the last good checkpoint; and the weights check behind it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ssd_core.config import TrainConfig
from ssd_core.errors import TrainingDiverged


def weights_finite(model: nn.Module) -> bool:
    """Whether every parameter of ``model`` is finite."""
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def diverged(config: TrainConfig, what: str, step: int, epoch: int, autocast: bool,
             checkpoint: Path | None) -> TrainingDiverged:
    """The error for ``what`` ("the loss", "the weights", ...) turning NaN/inf at ``step`` of
    ``epoch``; ``autocast``: the network ran in bf16/fp16; ``checkpoint``: the run's own."""
    hint = (f"the learning rate {config.lr:g} is probably too high for "
            f"{config.optimizer.upper()} - try {config.lr / 10:g}")
    if config.warmup_steps == 0:
        hint += " or add warmup_steps"
    if autocast:
        hint += f"; or train in fp32 (precision='fp32' instead of {config.precision!r})"
    where = (f"; the last good checkpoint is {checkpoint}"
             if checkpoint is not None and checkpoint.exists() else "")
    return TrainingDiverged(f"Training diverged at step {step} (epoch {epoch}): {what} became "
                            f"NaN/inf; {hint}{where}.")
