"""Metrics records: the per-step sums a window or an epoch accumulates, read by name, and the
record made of them (see ssd_core.engine for the record's fields)."""

from __future__ import annotations

import time

import torch

from ssd_core.losses import metric_sums

# Sums kept per window/epoch; all-reduced across processes as one tensor.
SUMS = ("loss", "cls_loss", "box_loss", "correct", "anchors", "abs_err", "offsets",
        "positives", "correct_positives", "images", "batches")
# A step's tensor holds SUMS and then these flags (summed too: > 0 means some process set it).
FLAGS = ("stop", "nonfinite")
_IDX = {k: i for i, k in enumerate(SUMS + FLAGS)}


def step_sums(losses: dict, cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks,
              images: int, stop: bool) -> torch.Tensor:
    """One step's SUMS and FLAGS (float64, on the device): the losses, the book's metric sums
    (ssd_core.losses.metric_sums), images and batches, the stop request and whether the loss
    is not finite. Built without a host-to-device copy (``new_full`` fills on the device), so
    a step never waits for a GPU unless the loop asks for the values."""
    total = losses["total"].detach()
    with torch.no_grad():
        return torch.cat([
            torch.stack([total, losses["cls"].detach(), losses["box"].detach()]).float(),
            metric_sums(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks),
            torch.stack([total.new_full((), float(images)), total.new_full((), 1.0),
                         total.new_full((), 1.0 if stop else 0.0),
                         (~torch.isfinite(total)).float()]).float(),
        ]).double()


def sums_of(step: torch.Tensor) -> torch.Tensor:
    """The SUMS part of a step's tensor (a view)."""
    return step[: len(SUMS)]


def entry(t: torch.Tensor, name: str) -> torch.Tensor:
    """The entry called ``name`` (one of SUMS or FLAGS) of a sums or step tensor, on its device."""
    return t[_IDX[name]]


def read_flags(step: torch.Tensor) -> dict[str, bool]:
    """The FLAGS of a step's tensor, read in one host transfer -> {name: set}."""
    values = step[len(SUMS):].cpu().tolist()
    return {name: v > 0 for name, v in zip(FLAGS, values)}


def object_accuracy(correct_positives: float, positives: float) -> float:
    """The book's class accuracy over positive anchors only; 0.0 without any (records are
    plotted and averaged, so none holds None or NaN)."""
    return correct_positives / max(1.0, positives)


def make_record(kind: str, s: torch.Tensor, seconds: float, **fields) -> dict:
    """A record from summed statistics ``s`` (len(SUMS),) over ``seconds``; ``fields`` adds
    the progress entries (step, epoch, epochs, steps_per_epoch, total_steps, lr, elapsed,
    eta_s, world_size). Losses are per-process batch means summed over processes, so they
    are divided by "batches" (process-steps); the rest are plain counts."""
    v = dict(zip(SUMS, s.tolist()))
    batches = max(1.0, v["batches"])
    images = v["images"]
    return {
        "kind": kind,
        **{k: fields[k] for k in ("step", "epoch", "epochs", "steps_per_epoch", "total_steps")},
        "loss": v["loss"] / batches,
        "cls_loss": v["cls_loss"] / batches,
        "box_loss": v["box_loss"] / batches,
        "class_error": 1.0 - v["correct"] / max(1.0, v["anchors"]),
        "box_mae": v["abs_err"] / max(1.0, v["offsets"]),
        "positives_per_image": v["positives"] / max(1.0, images),
        "object_accuracy": object_accuracy(v["correct_positives"], v["positives"]),
        "images": int(images),
        "images_per_s": images / seconds if seconds > 0 else 0.0,
        **{k: fields[k] for k in ("lr", "elapsed", "eta_s", "world_size")},
    }


def has_batches(s: torch.Tensor) -> bool:
    return entry(s, "batches").item() > 0


class Recorder:
    """A run's records as its loop makes them: the ``window`` of sums since the last step
    record, the pace behind ``eta_s``, the seconds trained, and every record kept in
    ``history`` and appended to the run folder's metrics (``folder``: a RunFolder)."""

    def __init__(self, folder):
        self.folder = folder
        self.history: list[dict] = []
        self.window = torch.zeros(len(SUMS), dtype=torch.float64)
        self._t_start = self._window_t0 = time.perf_counter()
        self._step0, self._elapsed0 = 0, 0.0

    def start(self, step: int, elapsed: float, device) -> None:
        """The loop starts at ``step``, ``elapsed`` seconds trained before (a resumed run)."""
        self.window = torch.zeros(len(SUMS), dtype=torch.float64, device=device)
        self._t_start = self._window_t0 = time.perf_counter()
        self._step0, self._elapsed0 = step, elapsed

    def elapsed(self) -> float:
        return self._elapsed0 + (time.perf_counter() - self._t_start)

    def record(self, kind: str, sums: torch.Tensor, seconds: float, progress: dict) -> dict:
        """The record of ``sums`` over ``seconds`` (:func:`make_record`, not logged);
        ``progress``: step, epoch, epochs, steps_per_epoch, total_steps, lr, world_size."""
        step, total = progress["step"], progress["total_steps"]
        per_step = (time.perf_counter() - self._t_start) / max(1, step - self._step0)
        return make_record(kind, sums, seconds, elapsed=self.elapsed(),
                           eta_s=per_step * (total - step), **progress)

    def take_window(self, progress: dict) -> dict:
        """The step record of the window (logged), and a fresh window."""
        rec = self.record("step", self.window, time.perf_counter() - self._window_t0, progress)
        self.log(rec)
        self.window.zero_()
        self._window_t0 = time.perf_counter()
        return rec

    def log(self, record: dict) -> None:
        self.history.append(record)
        self.folder.append_metrics(record)
