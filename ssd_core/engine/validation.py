"""Validation during training: AP50 and COCO mAP of the current model on held-out images."""

from __future__ import annotations

import math

from ssd_core.checkpoint import unwrap
from ssd_core.config import TrainConfig
from ssd_core.errors import TrainingDiverged
from ssd_core.evaluate import evaluate_model


def validation_due(config: TrainConfig, epoch: int) -> bool:
    """Whether the end of ``epoch`` (0-based) validates: every ``val_every`` epochs and last."""
    return (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs


def validate(model, data, config: TrainConfig, class_names, device, diverged=None) -> dict:
    """-> {"val_ap50", "val_map", "val_per_class"}. AP is undefined without ground truths:
    then val_ap50/val_map are left out and a class without any has None, so no NaN reaches
    the records. Raises TrainingDiverged if the network's outputs are not finite (finite but
    huge weights whose outputs overflow): ``diverged(what)``'s when given."""
    try:
        result = evaluate_model(
            unwrap(model), data, class_names, batch_size=config.batch_size,
            input_size=config.input_size, device=device, nms_threshold=config.val_nms_threshold,
            pos_threshold=config.val_pos_threshold, channels_last=config.channels_last)
    except TrainingDiverged:
        if diverged is None:
            raise
        raise diverged("the network's outputs") from None
    out = {"val_per_class": {k: v["ap50"] if math.isfinite(v["ap50"]) else None
                             for k, v in result.per_class.items()}}
    if math.isfinite(result.ap50):
        out.update(val_ap50=result.ap50, val_map=result.map)
    return out
