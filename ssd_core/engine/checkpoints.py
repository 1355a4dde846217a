"""A run's checkpoints: checkpoint.pt (the weights and everything a resume needs) and best.pt
(the weights of the best validation AP50 so far), written by rank 0 only, never from weights
that are not finite (the last good file stays)."""

from __future__ import annotations

from ssd_core.config import TrainConfig
from ssd_core.engine.divergence import weights_finite
from ssd_core.engine.resume import Progress, capture
from ssd_core.runfolder import BEST, CHECKPOINT


class Checkpoints:
    """The checkpoints of the run in ``folder`` (a RunFolder; written where it is enabled) and
    ``best_ap50``, the best validation AP50 so far; ``diverged(what)`` makes the error raised
    for non-finite weights. :meth:`attach` gives it the run's model, optimizer, scheduler and
    loss scaler once they exist."""

    def __init__(self, folder, config: TrainConfig, class_names, diverged):
        self.folder, self.config, self.class_names = folder, config, class_names
        self.diverged = diverged
        self.model = self.optimizer = self.scheduler = self.scaler = None
        self.best_ap50: float | None = None

    def attach(self, model, optimizer, scheduler, scaler) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.scaler = scaler

    def check_weights(self) -> None:
        """Raise the divergence error if a weight is NaN/inf."""
        if not weights_finite(self.model):
            raise self.diverged("the weights")

    def save(self, metrics: dict, progress: Progress) -> None:
        """checkpoint.pt, resumable where ``progress`` stands."""
        self._write(CHECKPOINT, metrics, progress)

    def end_epoch(self, record: dict, progress: Progress) -> None:
        """checkpoint.pt after an epoch; best.pt (weights and metrics only) too when the
        epoch's ``val_ap50`` beats ``best_ap50``."""
        self.save(record, progress)
        ap = record.get("val_ap50")
        if ap is not None and (self.best_ap50 is None or ap > self.best_ap50):
            self.best_ap50 = ap
            self._write(BEST, record, None)

    def _write(self, name: str, metrics: dict, progress: Progress | None) -> None:
        if not self.folder.enabled:
            return
        self.check_weights()  # never let a NaN model overwrite the last good checkpoint
        state = None
        if progress is not None:
            state = capture(self.optimizer, self.scheduler, self.scaler, progress)
        self.folder.save(name, self.model, self.config, self.class_names, metrics, state)
