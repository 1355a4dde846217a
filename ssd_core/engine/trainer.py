"""The Trainer: the book's loop (forward -> multibox_target -> loss -> optimizer step) as a
generator of metrics records, with stop, resume, validation and the run folder."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ssd_core.config import TrainConfig
from ssd_core.data import ItemSeeds, detection_collate, takes_item_seeds
from ssd_core.engine.records import SUMS, has_batches, make_record, step_sums
from ssd_core.engine.resume import Progress, capture, restore
from ssd_core.engine.schedule import apply_config_lr, lr_factor
from ssd_core.engine.setup import (
    SkipSampler,
    autocast_dtype,
    device_data,
    dist_env,
    join_process_group,
    loader_workers,
    make_model,
    make_optimizer,
    training_device,
)
from ssd_core.engine.validation import validate
from ssd_core.errors import ConfigError, TrainingDiverged
from ssd_core.losses import ssd_loss
from ssd_core.matching import multibox_target
from ssd_core.runfolder import BEST, CHECKPOINT, RunFolder
from ssd_core.seeding import LOADER, derive_seed, torch_generator


class Trainer:
    """Train TinySSD on a detection dataset (items ``(image (3,S,S), target (M,5))``).

    ``fit()`` is a generator of metrics records (see ssd_core.engine); ``stop()`` (any thread)
    ends it after the current step with a checkpoint; ``resume=path`` continues a run exactly
    where its checkpoint left off. ``init=path`` starts a new run (fresh optimizer and
    schedule) from another checkpoint's weights, e.g. to fine-tune the shipped model; its
    classes and layer shapes must match. With ``run_dir`` None nothing is written to disk.
    """

    def __init__(self, config: TrainConfig, train_data, val_data=None, run_dir=None,
                 resume=None, init=None):
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}.")
        config.validate()
        if train_data is None or len(train_data) == 0:
            raise ConfigError("The training dataset is empty; give at least one image.")
        if resume is not None and init is not None:
            raise ConfigError("Give either resume (continue a run) or init (start a new run "
                              "from a checkpoint's weights), not both.")
        self.train_data, self.val_data = train_data, val_data
        self.class_names = _class_names(config, train_data)
        self.config = config.replace(num_classes=len(self.class_names),
                                     class_names=self.class_names)
        self.loss_config = self.config.loss
        self._resume, self._init = resume, init
        self._stop = threading.Event()
        self.rank, self.world_size, self.local_rank = dist_env()
        self.folder = RunFolder(run_dir, enabled=self.rank == 0)
        self.run_dir: Path | None = self.folder.path
        self.state, self.message = "idle", ""
        self.step, self.epoch = 0, 0
        self.best_ap50: float | None = None
        self.history: list[dict] = []
        # Set up by fit() before the first step.
        self.device: torch.device | None = None
        self.model: nn.Module | None = None
        self.net: nn.Module | None = None  # the model, or its DistributedDataParallel wrapper
        self.optimizer = self.scheduler = self.scaler = None
        self.use_amp = False
        self.amp_dtype: torch.dtype | None = None  # the network's autocast dtype (None: fp32)
        self.device_data = None  # the training set on the device (ssd_core.data.device_data)
        # Steps between host reads of the step sums: 1 on CPU and under torchrun (the stop
        # flag is shared), log_every on one GPU, where a read waits for the queued kernels.
        self._sync_every = 1
        self._nonfinite = None
        # Profiling hook: called with a phase name ("data", "forward", "target", "loss",
        # "metrics", "backward", "optimizer", "logging") as each phase of a step ends.
        self.on_phase = None
        self.on_status = None  # called with a line of text while setting up (rendering)
        self.steps_per_epoch = self.total_steps = 0
        self.progress = Progress()  # where this run started (a resumed run: mid-way)
        self._dist, self._own_group = None, False
        self._sampler, self._num_workers = None, 0
        self._item_seeds = takes_item_seeds(train_data)  # data[(i, seed)] works
        self._workers_loader = None  # with workers: one DataLoader kept for every whole epoch
        self._t_start = self._window_t0 = time.perf_counter()
        self._run_step0 = 0
        self._window = torch.zeros(len(SUMS), dtype=torch.float64)

    # ---- public control
    def stop(self) -> None:
        """Ask fit() to finish the current step, save a checkpoint and return. Thread-safe."""
        self._stop.set()

    @property
    def checkpoint_path(self) -> Path | None:
        return self.folder.checkpoint_path

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---- setup
    def _render_progress(self, done: int, total: int) -> None:
        if self.on_status is not None:
            self.on_status(f"rendering the {total} training images once: {done}/{total}")

    def _setup(self) -> None:
        cfg = self.config
        self._dist, self._own_group = join_process_group(cfg, self.world_size)
        self.device = training_device(cfg, self._dist is not None, self.local_rank)
        self.model = make_model(cfg, self.class_names, self.device, self._init,
                                sync_bn=self._dist is not None and cfg.sync_bn)
        self.optimizer = make_optimizer(self.model, cfg)
        self._num_workers = loader_workers(cfg, self.device)
        self._sampler = torch.utils.data.DistributedSampler(
            self.train_data, num_replicas=self.world_size, rank=self.rank, shuffle=True,
            seed=cfg.seed, drop_last=False)
        self.steps_per_epoch = math.ceil(len(self._sampler) / cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(cfg, self.steps_per_epoch))
        self.amp_dtype = autocast_dtype(cfg, self.device)
        self.use_amp = self.amp_dtype is not None
        # bf16 has fp32's range: only fp16 (precision 'fp16' on CUDA) needs loss scaling.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.device_data = device_data(cfg, self.train_data, self.device,
                                       progress=self._render_progress)
        if self.device.type == "cuda" and self._dist is None:
            self._sync_every = cfg.log_every
        self._window = torch.zeros(len(SUMS), dtype=torch.float64, device=self.device)
        self._nonfinite = torch.zeros((), device=self.device)
        if self._resume is not None:
            self._restore(self._resume)
        self.net = self.model
        if self._dist is not None:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _restore(self, resume) -> None:
        p = restore(resume, self.model, self.optimizer, self.scheduler, self.scaler,
                    self.config, self.class_names)
        apply_config_lr(self.optimizer, self.scheduler, self.config, self.steps_per_epoch)
        if p.skip_batches >= self.steps_per_epoch:
            p.start_epoch, p.skip_batches = p.start_epoch + 1, 0
        self.progress, self.step, self.best_ap50 = p, p.step, p.best_ap50

    def _loader(self, epoch: int, skip_batches: int):
        """The epoch's batches. Every draw comes from the run's seed and the batch's place in
        the run (the sampler's order from (seed, epoch); an item's augmentation from (seed,
        epoch, rank, position)), so a resumed run recomputes them and no other thread's use of
        a shared generator can change them."""
        cfg = self.config
        self._sampler.set_epoch(epoch)
        sampler = self._sampler
        if self.device_data is not None:  # batches indexed and augmented on the device
            order = list(sampler)[skip_batches * cfg.batch_size:]
            return self.device_data.batches(
                order, cfg.batch_size, seed=derive_seed(cfg.seed, epoch, self.rank),
                first_batch=skip_batches)
        if self._item_seeds:
            sampler = ItemSeeds(sampler, cfg.seed, keys=(self.rank,))  # epoch: the sampler's
        if skip_batches:
            sampler = SkipSampler(sampler, skip_batches * cfg.batch_size)
        if self._num_workers and not skip_batches:
            # Workers started once, not every epoch: the loader asks the sampler for the new
            # epoch's order each time it is iterated (ItemSeeds reads the sampler's epoch).
            if self._workers_loader is None:
                self._workers_loader = self._data_loader(sampler, persistent=True)
            return self._workers_loader
        return self._data_loader(sampler)

    def _data_loader(self, sampler, persistent=False):
        # Its own generator: DataLoader would otherwise draw worker seeds from torch's global one.
        return torch.utils.data.DataLoader(
            self.train_data, batch_size=self.config.batch_size, sampler=sampler,
            collate_fn=detection_collate, num_workers=self._num_workers,
            pin_memory=self.device.type == "cuda", drop_last=False,
            persistent_workers=persistent, generator=torch_generator(self.config.seed, LOADER))

    # ---- the loop
    def fit(self) -> Iterator[dict]:
        """Train; yields a record every ``log_every`` steps and at every epoch end."""
        self.state = "running"
        try:
            self._setup()
            self.folder.write_config(self.config)
            self._write_status("running", "training")
            yield from self._epochs()
        except TrainingDiverged as e:
            self._write_status("failed", str(e))
            raise
        except GeneratorExit:  # the consumer closed us (e.g. the app went away)
            self._write_status("stopped", "training was interrupted")
            raise
        except BaseException as e:
            self._write_status("failed", f"{type(e).__name__}: {e}")
            raise
        finally:
            self._workers_loader = None  # its worker processes end with it
            if self._dist is not None and self._own_group:
                self._dist.destroy_process_group()

    def _epochs(self) -> Iterator[dict]:
        self._t_start = self._window_t0 = time.perf_counter()
        self._run_step0 = self.step
        for epoch in range(self.progress.start_epoch, self.config.epochs):
            go_on = yield from self._epoch(epoch)
            if not go_on:
                return
        self._write_status("finished", f"trained {self.config.epochs} epochs, {self.step} steps")

    def _epoch(self, epoch: int):
        """One epoch's steps and its end; returns whether training goes on."""
        self.epoch = epoch + 1
        skip = self.progress.skip_batches if epoch == self.progress.start_epoch else 0
        sums = torch.zeros(len(SUMS), dtype=torch.float64, device=self.device)
        if skip and self.progress.epoch_sums is not None:
            sums += self.progress.epoch_sums.to(self.device)
        t0 = time.perf_counter()
        self.net.train()
        batch = skip
        for X, Y in self._loader(epoch, skip):
            step, stop_all = self._train_step(X, Y)
            batch += 1
            self._window += step
            sums += step
            if self.step % self._sync_every == 0:
                self._check_finite()
            if self.step % self.config.log_every == 0:
                yield self._window_record()
            self._phase("logging")
            if stop_all and batch < self.steps_per_epoch:
                self._check_finite()
                if has_batches(self._window):
                    yield self._window_record()
                self._save(CHECKPOINT, epoch, batch, sums,
                           self.history[-1] if self.history else {})
                self._write_status("stopped", f"stopped at step {self.step}; resume with the "
                                              "checkpoint")
                return False
        self._check_finite()
        yield self._end_epoch(epoch, sums, time.perf_counter() - t0)
        if self._stop_requested():
            self._write_status("stopped", f"stopped after epoch {epoch + 1}")
            return False
        self._write_status("running", f"epoch {epoch + 1}/{self.config.epochs} done")
        return True

    def _end_epoch(self, epoch: int, sums, seconds: float) -> dict:
        """The epoch record (validated when due), logged; checkpoint.pt and best.pt saved."""
        cfg = self.config
        rec = self._record("epoch", sums, seconds)
        rec["epoch_time"] = seconds
        # The loss check saw the weights before the epoch's last update, not after it.
        self._check_weights()
        if self.val_data is not None and self.is_main and (
                (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            rec.update(self.validate())
        self._log(rec)
        self._save(CHECKPOINT, epoch + 1, 0, torch.zeros(len(SUMS)), rec)
        ap = rec.get("val_ap50")
        if ap is not None and (self.best_ap50 is None or ap > self.best_ap50):
            self.best_ap50 = ap
            self._save(BEST, epoch + 1, 0, None, rec, with_state=False)
        return rec

    def _stop_requested(self) -> bool:
        """Whether any process was asked to stop (a collective: every rank must call it)."""
        if self._dist is None:
            return self._stop.is_set()
        flag = torch.tensor([1.0 if self._stop.is_set() else 0.0])
        self._dist.all_reduce(flag)
        return bool(flag.item() > 0)

    def _train_step(self, X, Y) -> tuple[torch.Tensor, bool]:
        """One optimizer step on a batch X (B,3,S,S), Y (B,M,5) -> (sums (len(SUMS),), stop)."""
        X, Y = self._prepare(X, Y)
        self._phase("data")
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            anchors, cls_preds, bbox_preds = self.net(X)
        cls_preds, bbox_preds = cls_preds.float(), bbox_preds.float()
        self._phase("forward")
        with torch.no_grad():
            bbox_labels, bbox_masks, cls_labels = multibox_target(
                anchors.float(), Y, self.config.iou_threshold)
        self._phase("target")
        losses = ssd_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks,
                          self.loss_config)
        self._phase("loss")
        sums = step_sums(losses, cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks,
                         X.shape[0], self._stop.is_set())
        if self._dist is not None:  # one collective per step: metrics, stop, NaN flags
            self._dist.all_reduce(sums)
        if self._sync_every == 1:  # read now: a NaN loss never reaches the weights
            flags = sums[-2:].cpu()
            stop_all, nonfinite = flags[0].item() > 0, flags[1].item() > 0
            if nonfinite:
                raise TrainingDiverged(self._diverged_message("the loss"))
        else:  # checked every _sync_every steps (_check_finite); checkpoints check the weights
            stop_all = self._stop.is_set()
            self._nonfinite += sums[-1]
        self._phase("metrics")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total"]).backward()
        self._phase("backward")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self._phase("optimizer")
        self.step += 1
        return sums[: len(SUMS)], stop_all

    def _phase(self, name: str) -> None:
        if self.on_phase is not None:
            self.on_phase(name)

    def _check_finite(self) -> None:
        """Raise TrainingDiverged if a step since the last check had a non-finite loss (the
        one host read of the deferred flag; a no-op when every step is read)."""
        if self._sync_every > 1 and self._nonfinite.item() > 0:
            raise TrainingDiverged(self._diverged_message("the loss"))

    def _prepare(self, X, Y):
        """The batch on the device, at the input size, in the configured memory format."""
        cfg = self.config
        X = X.to(self.device, non_blocking=True)
        Y = Y.to(self.device, non_blocking=True)
        if X.shape[-1] != cfg.input_size or X.shape[-2] != cfg.input_size:
            # Boxes are normalized, so resizing the images leaves the targets valid.
            X = F.interpolate(X, size=(cfg.input_size, cfg.input_size), mode="bilinear",
                              align_corners=False)
        if cfg.channels_last:
            X = X.contiguous(memory_format=torch.channels_last)
        return X, Y

    # ---- records
    def _window_record(self) -> dict:
        """The step record of the steps since the last one (logged), and a fresh window."""
        rec = self._record("step", self._window, time.perf_counter() - self._window_t0)
        self._log(rec)
        self._window.zero_()
        self._window_t0 = time.perf_counter()
        return rec

    def _record(self, kind: str, sums, seconds: float) -> dict:
        per_step = (time.perf_counter() - self._t_start) / max(1, self.step - self._run_step0)
        return make_record(
            kind, sums, seconds, step=self.step, epoch=self.epoch, epochs=self.config.epochs,
            steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps,
            lr=self.optimizer.param_groups[0]["lr"], elapsed=self._elapsed(),
            eta_s=per_step * (self.total_steps - self.step), world_size=self.world_size)

    def _elapsed(self) -> float:
        return self.progress.elapsed + (time.perf_counter() - self._t_start)

    # ---- validation
    @torch.no_grad()
    def validate(self, data=None) -> dict:
        """AP of the current model on ``data`` (default: val_data) -> {"val_ap50", "val_map",
        "val_per_class"} (see ssd_core.engine.validation.validate)."""
        try:
            return validate(self.model, self.val_data if data is None else data, self.config,
                            self.class_names, self.device)
        except TrainingDiverged:  # finite but huge weights whose outputs overflow
            raise TrainingDiverged(self._diverged_message("the network's outputs")) from None

    # ---- files (rank 0 only) and divergence
    def _log(self, record: dict) -> None:
        self.history.append(record)
        self.folder.append_metrics(record)

    def _write_status(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self.folder.write_status(state, message, self.step, self.epoch,
                                 self.total_steps or None)

    def _save(self, name: str, epoch: int, batch_in_epoch: int, epoch_sums, metrics,
              with_state=True) -> None:
        if not self.folder.enabled:
            return
        self._check_weights()  # never let a NaN model overwrite the last good checkpoint
        state = None
        if with_state:
            state = capture(self.optimizer, self.scheduler, self.scaler, Progress(
                self.step, epoch, batch_in_epoch, self._elapsed(), self.best_ap50, epoch_sums))
        self.folder.save(name, self.model, self.config, self.class_names, metrics, state)

    def _check_weights(self) -> None:
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise TrainingDiverged(self._diverged_message("the weights"))

    def _diverged_message(self, what: str) -> str:
        cfg = self.config
        hint = (f"the learning rate {cfg.lr:g} is probably too high for {cfg.optimizer.upper()}"
                f" - try {cfg.lr / 10:g}")
        if cfg.warmup_steps == 0:
            hint += " or add warmup_steps"
        if self.use_amp:
            hint += f"; or train in fp32 (precision='fp32' instead of {cfg.precision!r})"
        path = self.checkpoint_path
        where = (f"; the last good checkpoint is {path}"
                 if path is not None and path.exists() else "")
        return (f"Training diverged at step {self.step} (epoch {self.epoch}): {what} became "
                f"NaN/inf; {hint}{where}.")


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
