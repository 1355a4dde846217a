"""The learning-rate schedule: linear warmup, then none, cosine or step decay."""

from __future__ import annotations

import math

from ssd_core.config import TrainConfig


def lr_factor(config: TrainConfig, steps_per_epoch: int):
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


def apply_config_lr(optimizer, scheduler, config: TrainConfig, steps_per_epoch: int) -> None:
    """After loading optimizer/scheduler state, let this run's config (which may override the
    checkpoint's, e.g. a lower lr after a divergence) decide lr and regularisation."""
    groups = optimizer.param_groups
    scheduler.base_lrs = [config.lr] * len(groups)
    scheduler.lr_lambdas = [lr_factor(config, steps_per_epoch)] * len(groups)
    lr = config.lr * scheduler.lr_lambdas[0](scheduler.last_epoch)
    for g in groups:
        g["initial_lr"], g["lr"], g["weight_decay"] = config.lr, lr, config.weight_decay
        if "momentum" in g:
            g["momentum"] = config.momentum
    scheduler._last_lr = [lr] * len(groups)
