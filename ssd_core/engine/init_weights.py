"""Start a run from another checkpoint's weights (``--init``), also one trained on other
classes: every tensor whose name and shape match is copied (backbone blocks, BatchNorm
statistics, box predictors); the class predictors are re-made for the new classes.

A re-made class predictor keeps the fresh weights the run's own generator drew for it
(``ssd_core.checkpoint.build_model``: stream INIT of the run's seed; the focal prior bias where
the loss is focal), then takes from the checkpoint the rows of every class it shares by name,
background included: output channel ``a*(C+1) + j`` is class ``j`` of anchor ``a`` (the book's
layout), so the background logit the checkpoint learned (row 0) is carried.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ssd_core.checkpoint import Checkpoint, load_checkpoint, unwrap
from ssd_core.errors import CheckpointError

CLASS_LAYERS = "cls_predictors."


def load_init_weights(model: nn.Module, init, class_names, carry_classes: bool = True) -> str:
    """Copy ``init``'s weights (a Checkpoint or a path) into ``model`` -> a one-sentence report
    of what was kept and re-made. Same classes: every tensor, shapes must all match. Other
    classes: the class predictors (``cls_predictors.*``) are re-made for ``class_names``
    (with ``carry_classes``, the rows of background and of same-named classes are copied);
    every other tensor must match. A different network shape raises CheckpointError."""
    ckpt = init if isinstance(init, Checkpoint) else load_checkpoint(init)
    mine, theirs = model.state_dict(), unwrap(ckpt.model).state_dict()
    same_classes = list(ckpt.class_names) == list(class_names)
    fixed = [k for k in mine if same_classes or not k.startswith(CLASS_LAYERS)]
    bad = [k for k in fixed if k not in theirs or theirs[k].shape != mine[k].shape]
    extra = sorted(set(theirs) - set(mine))
    if bad or extra:
        raise CheckpointError(
            f"{ckpt.path!r} has a different network shape (first mismatch: "
            f"{(bad or extra)[0]}); keep its base_channels, channels and number of anchors "
            "per pixel.", path=ckpt.path)
    if same_classes:
        model.load_state_dict(theirs)
        return (f"kept all {len(theirs)} tensors of {_name(ckpt)} (same classes: "
                f"{', '.join(class_names)})")
    remade = [k for k in mine if k.startswith(CLASS_LAYERS)]
    carried = _carried_rows(list(ckpt.class_names), list(class_names)) if carry_classes else []
    with torch.no_grad():
        for k in fixed:
            mine[k].copy_(theirs[k])
        for k in remade:
            _copy_rows(mine[k], theirs[k], carried, len(class_names), len(ckpt.class_names))
    shared = [class_names[j - 1] for _, j in carried if j > 0]
    kept_rows = ("; carried the background row" + (f" and the rows of {', '.join(shared)}"
                                                   if shared else "")) if carried else ""
    return (f"kept {len(fixed)} tensors of {_name(ckpt)} (backbone, BatchNorm statistics, box "
            f"layers); re-made {len(remade)} class layers for {len(class_names)} classes "
            f"({', '.join(class_names)}; the checkpoint had {', '.join(ckpt.class_names)})"
            f"{kept_rows}")


def _name(ckpt: Checkpoint) -> str:
    return Path(ckpt.path).name if getattr(ckpt, "path", None) else "the checkpoint"


def _carried_rows(old: list[str], new: list[str]) -> list[tuple[int, int]]:
    """(old row, new row) pairs per anchor: background (0, 0) and each shared class name."""
    return [(0, 0)] + [(old.index(n) + 1, j + 1) for j, n in enumerate(new) if n in old]


def _copy_rows(dst: torch.Tensor, src: torch.Tensor, pairs, c_new: int, c_old: int) -> None:
    """A class predictor's weight (A*(C+1), in, k, k) or bias (A*(C+1),): rows of ``pairs``
    copied anchor by anchor from ``src`` (C_old classes) to ``dst`` (C_new classes)."""
    if not pairs:
        return
    anchors = dst.shape[0] // (c_new + 1)
    d = dst.view(anchors, c_new + 1, *dst.shape[1:])
    s = src.view(anchors, c_old + 1, *src.shape[1:])
    old, new = zip(*pairs)
    d[:, list(new)] = s[:, list(old)].to(d.dtype)
