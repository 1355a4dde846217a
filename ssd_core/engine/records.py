"""Metrics records: the per-step sums a window or an epoch accumulates, and the record made of
them (see ssd_core.engine for the record's fields)."""

from __future__ import annotations

import torch

from ssd_core.losses import metric_sums

# Sums kept per window/epoch; all-reduced across processes as one tensor. A step's tensor has
# two more entries after these: the stop request and the non-finite-loss flag.
SUMS = ("loss", "cls_loss", "box_loss", "correct", "anchors", "abs_err", "offsets",
        "positives", "correct_positives", "images", "batches")
_IDX = {k: i for i, k in enumerate(SUMS)}


def step_sums(losses: dict, cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks,
              images: int, stop: bool) -> torch.Tensor:
    """One step's sums (float64, on the device) + [stop, loss not finite]: the losses, the
    book's metric sums (ssd_core.losses.metric_sums), images and batches. Built without a
    host-to-device copy (``new_full`` fills on the device), so a step never waits for a GPU
    unless the loop asks for the values."""
    total = losses["total"].detach()
    with torch.no_grad():
        return torch.cat([
            torch.stack([total, losses["cls"].detach(), losses["box"].detach()]).float(),
            metric_sums(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks),
            torch.stack([total.new_full((), float(images)), total.new_full((), 1.0),
                         total.new_full((), 1.0 if stop else 0.0),
                         (~torch.isfinite(total)).float()]).float(),
        ]).double()


def make_record(kind: str, s: torch.Tensor, seconds: float, **fields) -> dict:
    """A record from summed statistics ``s`` (len(SUMS),) over ``seconds``; ``fields`` adds
    the progress entries (step, epoch, epochs, steps_per_epoch, total_steps, lr, elapsed,
    eta_s, world_size). Losses are per-process batch means summed over processes, so they
    are divided by "batches" (process-steps); the rest are plain counts."""
    v = s.tolist()
    batches = max(1.0, v[_IDX["batches"]])
    images = v[_IDX["images"]]
    return {
        "kind": kind,
        **{k: fields[k] for k in ("step", "epoch", "epochs", "steps_per_epoch", "total_steps")},
        "loss": v[_IDX["loss"]] / batches,
        "cls_loss": v[_IDX["cls_loss"]] / batches,
        "box_loss": v[_IDX["box_loss"]] / batches,
        "class_error": 1.0 - v[_IDX["correct"]] / max(1.0, v[_IDX["anchors"]]),
        "box_mae": v[_IDX["abs_err"]] / max(1.0, v[_IDX["offsets"]]),
        "positives_per_image": v[_IDX["positives"]] / max(1.0, images),
        # the book's class error over positive anchors only: no record holds NaN, so 0 objects
        # give 0.0 here
        "object_accuracy": v[_IDX["correct_positives"]] / max(1.0, v[_IDX["positives"]]),
        "images": int(images),
        "images_per_s": images / seconds if seconds > 0 else 0.0,
        **{k: fields[k] for k in ("lr", "elapsed", "eta_s", "world_size")},
    }


def has_batches(s: torch.Tensor) -> bool:
    return s[_IDX["batches"]].item() > 0
