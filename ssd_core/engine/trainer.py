"""The Trainer: the book's loop as a generator of metrics records: epochs of steps
(engine.step), records, stop and resume, validation and checkpoints at each epoch's end, the
run folder's status (ssd_core.runfolder)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from ssd_core import runfolder as rf
from ssd_core.config import TrainConfig
from ssd_core.engine.batches import EpochBatches
from ssd_core.engine.checkpoints import Checkpoints
from ssd_core.engine.distributed import Processes
from ssd_core.engine.divergence import diverged
from ssd_core.engine.records import SUMS, Recorder, has_batches
from ssd_core.engine.resume import Progress, resume_progress
from ssd_core.engine.setup import (
    device_data,
    loader_workers,
    make_training,
    training_device,
)
from ssd_core.engine.step import TrainStep
from ssd_core.engine.validation import validate, validation_due
from ssd_core.errors import ConfigError, TrainingDiverged
from ssd_core.runfolder import RunFolder


class Trainer:
    """Train TinySSD on a detection dataset (items ``(image (3,S,S), target (M,5))``).

    ``fit()`` is a generator of metrics records (see ssd_core.engine); ``stop()`` (any thread)
    ends it after the current step with a checkpoint; ``resume=path`` continues a run exactly
    where its checkpoint left off. ``init=path`` starts a new run (fresh optimizer and
    schedule) from another checkpoint's weights, e.g. to fine-tune the shipped model; its
    layer shapes must match, and with other classes its class layers are re-made
    (``init_report`` says what was kept). With ``run_dir`` None nothing is written to disk.
    ``on_phase(name)`` (profiling) is called as each phase of a step ends; ``on_status(text)``
    while setting up (rendering the data).
    """

    def __init__(self, config: TrainConfig, train_data, val_data=None, run_dir=None,
                 resume=None, init=None):
        _check_arguments(config, train_data, resume, init)
        self.train_data, self.val_data = train_data, val_data
        self.class_names = _class_names(config, train_data)
        self.config = config.replace(num_classes=len(self.class_names),
                                     class_names=self.class_names)
        self._resume, self._init = resume, init
        self._stop = threading.Event()
        self._procs = Processes()
        self.rank, self.world_size = self._procs.rank, self._procs.world_size
        self.folder = RunFolder(run_dir, enabled=self.rank == 0)
        self.run_dir: Path | None = self.folder.path
        self.checkpoint_path: Path | None = self.folder.checkpoint_path
        self.is_main = self.rank == 0
        self.state, self.message = "idle", ""
        self.step, self.epoch = 0, 0
        self._records = Recorder(self.folder)
        self._checkpoints = Checkpoints(self.folder, self.config, self.class_names, self._diverged)
        self.history = self._records.history
        self.on_phase = self.on_status = None
        # Set up by fit() before the first step.
        self.device = self.model = self.optimizer = self.scheduler = None
        # What init kept of its checkpoint and what it re-made (engine.init_weights), a
        # sentence; None without init. Set by fit()'s setup.
        self.init_report: str | None = None
        self.amp_dtype: torch.dtype | None = None  # the network's autocast dtype (None: fp32)
        self.scaler = None  # the loss scaler (enabled for fp16 only)
        self.steps_per_epoch = self.total_steps = 0
        self.progress = Progress()  # where this run started (a resumed run: mid-way)
        self._step: TrainStep | None = None
        self._batches: EpochBatches | None = None
        self._num_workers = 0
        # Steps between host reads of the step sums: 1 on CPU and under torchrun (the stop
        # flag is shared), log_every on one GPU, where a read waits for the queued kernels.
        self._sync_every = 1

    def stop(self) -> None:
        """Ask fit() to finish the current step, save a checkpoint and return. Thread-safe."""
        self._stop.set()

    # ---- setup
    def _setup(self) -> None:
        """Everything before the first step; a resumed run's state restored."""
        cfg, procs = self.config, self._procs
        procs.join(cfg)
        self.device = training_device(cfg, procs.dist is not None, procs.local_rank)
        self._batches = EpochBatches(self.train_data, cfg, self.rank, self.world_size,
                                     self.device)
        self.steps_per_epoch = self._batches.steps_per_epoch
        if cfg.epochs_for(self.steps_per_epoch) != cfg.epochs:  # a small set: more epochs
            cfg = self.config = cfg.replace(epochs=cfg.epochs_for(self.steps_per_epoch))
            self._checkpoints.config = cfg  # saved with the weights: the epochs it ran
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.model, self.optimizer, self.scheduler, self.init_report = make_training(
            cfg, self.class_names, self.device, self._init, procs.dist is not None,
            self.steps_per_epoch)
        self._num_workers = loader_workers(cfg, self.device)
        self._batches.on_device = device_data(cfg, self.train_data, self.device,
                                              progress=self._rendered)
        self._step = TrainStep(self.model, self.optimizer, self.scheduler, cfg, self.device,
                               procs, self._stop, self._phase, self._diverged)
        self.amp_dtype, self.scaler = self._step.amp_dtype, self._step.scaler
        if self.device.type == "cuda" and procs.dist is None:
            self._sync_every = cfg.log_every
        self._checkpoints.attach(self.model, self.optimizer, self.scheduler, self.scaler)
        if self._resume is not None:
            self.progress = resume_progress(self._resume, self.model, self.optimizer,
                                            self.scheduler, self.scaler, self.config,
                                            self.class_names, self.steps_per_epoch)
            self.step, self._checkpoints.best_ap50 = self.progress.step, self.progress.best_ap50
        self._step.net = procs.wrap(self.model, self.device)

    def _rendered(self, done: int, total: int) -> None:
        if self.on_status is not None:
            self.on_status(f"rendering the {total} training images once: {done}/{total}")

    # ---- the loop
    def fit(self) -> Iterator[dict]:
        """Train; yields a record every ``log_every`` steps and at every epoch end."""
        self.state = rf.RUNNING
        ended = False
        try:
            self._setup()
            self.folder.write_config(self.config)
            self._write_status(rf.RUNNING, "training")
            yield from self._epochs()
            ended = True
        except TrainingDiverged as e:
            self._write_status(rf.FAILED, str(e))
            raise
        except GeneratorExit:  # the consumer closed us (e.g. the app went away)
            self._write_status(rf.STOPPED, "training was interrupted")
            raise
        except BaseException as e:
            self._write_status(rf.FAILED, f"{type(e).__name__}: {e}")
            raise
        finally:
            if self._batches is not None:
                self._batches.close()  # its worker processes end with it
            if self._step is not None:
                self._step.net = self.model  # the DDP wrapper goes, and its hold on the group
            self._procs.leave(together=ended)

    def _epochs(self) -> Iterator[dict]:
        self._records.start(self.step, self.progress.elapsed, self.device)
        for epoch in range(self.progress.start_epoch, self.config.epochs):
            go_on = yield from self._epoch(epoch)
            if not go_on:
                return
        self._write_status(rf.FINISHED, f"trained {self.config.epochs} epochs, {self.step} steps")

    def _epoch(self, epoch: int):
        """One epoch's steps and its end; returns whether training goes on."""
        self.epoch = epoch + 1
        skip = self.progress.skip_batches if epoch == self.progress.start_epoch else 0
        sums = torch.zeros(len(SUMS), dtype=torch.float64, device=self.device)
        if skip and self.progress.epoch_sums is not None:
            sums += self.progress.epoch_sums.to(self.device)
        t0 = time.perf_counter()
        self._step.net.train()
        batch = skip
        for X, Y in self._batches.epoch(epoch, skip, self._num_workers):
            step, stop_all = self._train_step(X, Y)
            batch += 1
            self._records.window += step
            sums += step
            if self.step % self._sync_every == 0:
                self._check_finite()
            if self.step % self.config.log_every == 0:
                yield self._records.take_window(self._progress())
            self._phase("logging")
            if stop_all and batch < self.steps_per_epoch:
                yield from self._stop_mid_epoch(epoch, batch, sums)
                return False
        self._check_finite()
        yield self._end_epoch(epoch, sums, time.perf_counter() - t0)
        if self._procs.any(self._stop.is_set()):
            self._write_status(rf.STOPPED, f"stopped after epoch {epoch + 1}")
            return False
        self._write_status(rf.RUNNING, f"epoch {epoch + 1}/{self.config.epochs} done")
        return True

    def _stop_mid_epoch(self, epoch: int, batch: int, sums) -> Iterator[dict]:
        """The last window's record and a checkpoint to resume at ``batch`` of ``epoch``."""
        self._check_finite()
        if has_batches(self._records.window):
            yield self._records.take_window(self._progress())
        self._checkpoints.save(self.history[-1] if self.history else {},
                               self._progress_at(epoch, batch, sums))
        self._write_status(rf.STOPPED, f"stopped at step {self.step}; resume with the checkpoint")

    def _end_epoch(self, epoch: int, sums, seconds: float) -> dict:
        """The epoch record (validated when due), logged; checkpoint.pt and best.pt saved."""
        rec = self._records.record("epoch", sums, seconds, self._progress())
        rec["epoch_time"] = seconds
        # The loss check saw the weights before the epoch's last update, not after it.
        self._checkpoints.check_weights()
        if self.val_data is not None and self.is_main and validation_due(self.config, epoch):
            rec.update(self.validate())
        self._records.log(rec)
        self._checkpoints.end_epoch(rec, self._progress_at(epoch + 1, 0, torch.zeros(len(SUMS))))
        return rec

    def _train_step(self, X, Y) -> tuple[torch.Tensor, bool]:
        """One optimizer step (engine.step.TrainStep) -> (its SUMS, whether to stop)."""
        out = self._step(X, Y, read_now=self._sync_every == 1)
        self.step += 1
        return out

    def _phase(self, name: str) -> None:
        if self.on_phase is not None:
            self.on_phase(name)

    def _check_finite(self) -> None:
        """The deferred non-finite-loss check (a no-op when every step is read)."""
        if self._sync_every > 1:
            self._step.check_finite()

    def _progress_at(self, epoch: int, batch: int, sums) -> Progress:
        """Where a resume starts: ``batch`` of ``epoch`` (0-based), with the epoch's sums."""
        return Progress(self.step, epoch, batch, self._records.elapsed(),
                        self._checkpoints.best_ap50, sums)

    def _progress(self) -> dict:
        """Where the run stands, for its records."""
        return dict(step=self.step, epoch=self.epoch, epochs=self.config.epochs,
                    steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps,
                    lr=self.optimizer.param_groups[0]["lr"], world_size=self.world_size)

    # ---- validation, status and divergence
    @torch.no_grad()
    def validate(self, data=None) -> dict:
        """AP of the current model on ``data`` (default: val_data) -> {"val_ap50", "val_map",
        "val_per_class"} (see ssd_core.engine.validation.validate)."""
        return validate(self.model, self.val_data if data is None else data, self.config,
                        self.class_names, self.device, self._diverged)

    def _write_status(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self.folder.write_status(state, message, self.step, self.epoch,
                                 self.total_steps or None)

    def _diverged(self, what: str) -> TrainingDiverged:
        return diverged(self.config, what, self.step, self.epoch, self.amp_dtype is not None,
                        self.checkpoint_path)


def _check_arguments(config, train_data, resume, init) -> None:
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}.")
    config.validate()
    if train_data is None or len(train_data) == 0:
        raise ConfigError("The training dataset is empty; give at least one image.")
    if resume is not None and init is not None:
        raise ConfigError("Give either resume (continue a run) or init (start a new run "
                          "from a checkpoint's weights), not both.")


def _class_names(config: TrainConfig, data) -> list[str]:
    names = getattr(data, "class_names", None) or config.class_names
    if names is None:
        names = [f"class{i}" for i in range(config.num_classes or 1)]
    names = [str(n) for n in names]
    if config.num_classes is not None and len(names) != config.num_classes:
        raise ConfigError(
            f"The data has {len(names)} classes ({names}) but the config says "
            f"num_classes={config.num_classes}; drop num_classes or fix the data.",
            field="num_classes")
    return names
