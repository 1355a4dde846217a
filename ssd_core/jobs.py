"""Background training jobs in a runs folder: a queue, stop, resume, failures as fields.

A :class:`JobManager` owns one runs folder (its layout: ssd_core.runfolder). ``submit``
creates the run's folder at once (config, data, owner and a ``queued`` status) and queues the
job; at most ``max_running`` jobs train at the same time (1 by default: a CPU server trains one
model at a time), the others wait in FIFO order with their position reported. Each job trains in
its own thread through :class:`ssd_core.engine.Trainer`, which writes the metrics, checkpoints and
its progress into the status. The worker never touches a UI: readers take a :meth:`snapshot`
(a copy made under a lock) whenever they like, e.g. from ``st.fragment(run_every=...)``.

The manager knows the state of the jobs it runs from memory; it writes the status for other
readers (another replica, a restarted server) and reads it only for runs it does not hold.
Runs survive the process: :meth:`list_runs` reads every run folder from disk; a run whose status
says active but whose owning process is gone is reported as ``interrupted`` and can be resumed
from its last checkpoint with :meth:`resume`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import threading
import time
from pathlib import Path

from ssd_core import runfolder as rf
from ssd_core.config import TrainConfig
from ssd_core.data import plain_item
from ssd_core.detection import predict_batch
from ssd_core.engine import Trainer
from ssd_core.errors import ConfigError, SSDError
from ssd_core.images import ACCEPTED_MARK

# DataSpec, JobSnapshot and read_metrics are part of this module's interface too.
from ssd_core.runs import (  # noqa: F401
    DataSpec,
    JobSnapshot,
    append_preview,
    append_record,
    read_metrics,
    read_previews,
)


class _Job:
    def __init__(self, run_id: str, path: Path, config: TrainConfig, data: DataSpec,
                 resume: Path | None, created: float, init=None):
        self.run_id, self.path, self.config, self.data, self.resume = (
            run_id, path, config, data, resume)
        self.init = init  # the checkpoint a new run starts from (None: random weights)
        self.created = created  # as created_time(path) reads it, kept: snapshots are polled
        self.state, self.message = rf.QUEUED, "waiting for a free training slot"
        self.records: list[dict] = []
        self.preview: dict | None = None
        self.previews: list[dict] = []
        self.trainer: Trainer | None = None
        self.stop_requested = False
        self.error: dict | None = None  # failure(e) of the exception that ended it
        self.thread: threading.Thread | None = None


def failure(e: BaseException) -> dict:
    """What a failed job records of the exception that ended it: {"type", "message", "path",
    "bad_image"}. An error raised inside a DataLoader worker (GPU servers use them) arrives
    re-raised with the worker's traceback as its text, torch keeping only its type: the message
    is then the error line the traceback ends with. An image refusal loses the list of accepted
    inputs (ssd_core.images adds it for programmers) and says ``bad_image``."""
    kind, text = type(e).__name__, str(e)
    lines = text.splitlines()
    start = next((k for k, line in enumerate(lines)
                  if "Traceback (most recent call last)" in line), None)
    if start is not None:
        last = " ".join(line for line in lines[start + 1:] if line and not line[0].isspace())
        m = re.match(r"([\w.]+): (.*)", last, re.S)
        kind, text = (m.group(1).rsplit(".", 1)[-1], m.group(2)) if m else (kind, last)
    elif not isinstance(e, SSDError):
        text = f"{kind}: {text}"
    bad_image = ACCEPTED_MARK in text
    return {"type": kind, "message": text.split(ACCEPTED_MARK)[0] if bad_image else text,
            "path": getattr(e, "path", None), "bad_image": bad_image}


class JobManager:
    """Queue and run training jobs in background threads; see the module docstring."""

    def __init__(self, runs_dir: str | os.PathLike, max_running: int | None = None,
                 preview_score: float = 0.3, preview_boxes: int = 20):
        """``preview_score`` and ``preview_boxes``: each epoch's preview keeps at most that many
        detections of at least that score."""
        self.runs_dir = Path(runs_dir)
        self.preview_score, self.preview_boxes = preview_score, preview_boxes
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        if max_running is None:
            max_running = int(os.environ.get("SSD_MAX_TRAINING_JOBS", "1"))
        if max_running < 1:
            raise ConfigError(f"max_running must be at least 1, got {max_running}.")
        self.max_running = max_running
        self._lock = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._queue: list[str] = []
        self._last_created = 0
        self._running: set[str] = set()

    # ---- submitting and controlling
    def submit(self, config: TrainConfig, data: DataSpec, name: str | None = None,
               init=None) -> str:
        """Validate, create the run folder, queue the job -> run id. Raises ConfigError.
        ``init``: a checkpoint (path) whose weights the run starts from, also one with other
        classes (Trainer's init; ``ssd_core.recipes.recipe_job`` gives the teach recipe's)."""
        config.validate()
        data.validate()
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        if name:
            safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40]
            run_id = f"{run_id}-{safe}"
        path = self.runs_dir / run_id
        path.mkdir(parents=True)
        rf.write_config(path, config)
        with self._lock:  # strictly increasing, so the runs list has one order
            self._last_created = max(time.time_ns(), self._last_created + 1)
            created = self._last_created
        rf.write_data(path, dataclasses.asdict(data), created)
        job = _Job(run_id, path, config, data, None, created / 1e9,
                   None if init is None else str(init))
        self._enqueue(job)
        return run_id

    def resume(self, run_id: str) -> str:
        """Continue a stopped, failed or interrupted run from its last checkpoint (same
        folder). Refused while the run is active, here or in another live process."""
        path = self.runs_dir / run_id
        with self._lock:
            live = self._jobs.get(run_id)
            state = live.state if live is not None else None
        if state is None and rf.is_run(path):
            state = rf.current_status(path).state  # a run this process does not hold
        if state in rf.ACTIVE:
            raise ConfigError(f"Run {run_id} is already {state}.")
        ckpt = rf.resume_checkpoint(path)
        if ckpt is None:
            raise ConfigError(f"Run {run_id} has no checkpoint to resume from; start a new run.")
        config = TrainConfig.from_dict(rf.read_config(path))
        data = DataSpec.from_dict(rf.read_data(path))
        self._enqueue(_Job(run_id, path, config, data, ckpt, rf.created_time(path)))
        return run_id

    def stop(self, run_id: str) -> None:
        """A queued job is cancelled; a running one stops after its current step and saves."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                return
            job.stop_requested = True
            if job.state == rf.QUEUED:
                self._queue.remove(run_id)
                job.state, job.message = rf.STOPPED, "cancelled before it started"
                self._write_status(job)
                self._lock.notify_all()
            elif job.state == rf.RUNNING:
                job.state, job.message = rf.STOPPING, "finishing the current step, then saving"
                if job.trainer is not None:
                    job.trainer.stop()

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Block until the job's thread ends; True if it ended."""
        with self._lock:
            job = self._jobs.get(run_id)
        if job is None or job.thread is None:
            return True
        job.thread.join(timeout)
        return not job.thread.is_alive()

    # ---- reading
    def snapshot(self, run_id: str) -> JobSnapshot:
        """The run's state right now: a live job's in-memory records, else what disk holds."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is not None:
                pos = self._queue.index(run_id) + 1 if run_id in self._queue else None
                return JobSnapshot(run_id, job.path, job.state, job.message, pos,
                                   list(job.records), job.config.to_dict(),
                                   dict(job.preview) if job.preview else None,
                                   job.created, list(job.previews), job.error,
                                   job.trainer.init_report if job.trainer else None)
        return self._snapshot_from_disk(self.runs_dir / run_id)

    def list_runs(self) -> list[JobSnapshot]:
        """Every run in the folder, newest first."""
        runs = [self.snapshot(p.name) for p in rf.run_folders(self.runs_dir)]
        return sorted(runs, key=lambda r: (r.created, r.run_id), reverse=True)

    def active(self) -> list[str]:
        with self._lock:
            return [i for i, j in self._jobs.items() if j.state in rf.ACTIVE]

    def _snapshot_from_disk(self, path: Path) -> JobSnapshot:
        """A run this process does not hold: what its folder says (rf.current_status)."""
        if not rf.is_run(path):
            raise ConfigError(f"No run named {path.name!r} in {self.runs_dir}.")
        status = rf.current_status(path)
        return JobSnapshot(path.name, path, status.state, status.message, None,
                           read_metrics(path / rf.METRICS), rf.read_config(path),
                           rf.read_preview(path), rf.created_time(path),
                           read_previews(path / rf.PREVIEWS),
                           status.error if status.state == rf.FAILED else None)

    # ---- internals
    def _write_status(self, job: _Job) -> None:
        """The job's state for readers of the folder (the manager itself keeps it in memory),
        with the trainer's progress once it has one."""
        t = job.trainer
        rf.write_status(job.path, job.state, job.message, error=job.error,
                        step=t.step if t else None, epoch=t.epoch if t else None,
                        total_steps=(t.total_steps or None) if t else None)

    def _enqueue(self, job: _Job) -> None:
        rf.write_owner(job.path)
        with self._lock:
            self._jobs[job.run_id] = job
            self._queue.append(job.run_id)
            self._write_status(job)
            job.thread = threading.Thread(target=self._run, args=(job,), daemon=True,
                                          name=f"ssd-train-{job.run_id}")
            job.thread.start()

    def _run(self, job: _Job) -> None:
        with self._lock:
            while job.state == rf.QUEUED and (
                    self._queue[0] != job.run_id or len(self._running) >= self.max_running):
                self._lock.wait(1.0)
            if job.state != rf.QUEUED:  # cancelled while waiting
                return
            self._queue.remove(job.run_id)
            self._running.add(job.run_id)
            job.state, job.message = rf.RUNNING, "preparing data"
            self._write_status(job)  # readers of the folder (other replicas) see it start
            self._lock.notify_all()
        try:
            self._train(job)
        except Exception as e:  # noqa: BLE001 - the job must end with a message, not kill a UI
            job.error = failure(e)
            self._finish(job, rf.FAILED, job.error["message"])
        else:  # fit() returned: the trainer says how it ended (finished, or stopped)
            trainer = job.trainer
            self._finish(job, trainer.state if trainer.state in rf.ENDED else rf.FINISHED,
                         trainer.message)
        finally:
            with self._lock:
                self._running.discard(job.run_id)
                self._lock.notify_all()

    def _train(self, job: _Job) -> None:
        train, val = job.data.build(job.config.input_size)
        trainer = Trainer(job.config, train, val, run_dir=job.path, resume=job.resume,
                          init=job.init if job.resume is None else None)
        if job.resume is not None:
            job.records = read_metrics(job.path / rf.METRICS)
            job.previews = read_previews(job.path / rf.PREVIEWS)
        with self._lock:
            job.trainer = trainer
            if job.stop_requested:
                trainer.stop()
            job.message = "training"

        def status(text: str) -> None:
            with self._lock:
                job.message = text

        trainer.on_status = status
        preview_data = val if val is not None and len(val) else train
        for rec in trainer.fit():
            with self._lock:
                append_record(job.records, rec)
                if rec.get("kind") == "step":
                    job.message = f"epoch {rec['epoch']}/{rec['epochs']}, step {rec['step']}"
            if rec.get("kind") == "epoch":
                preview = preview_detections(trainer, preview_data, rec, self.preview_score,
                                             self.preview_boxes)
                with self._lock:
                    job.preview = preview
                    append_preview(job.previews, preview)
                rf.write_preview(job.path, preview)

    def _finish(self, job: _Job, state: str, message: str) -> None:
        with self._lock:
            job.state, job.message = state, message
            self._write_status(job)


def preview_detections(trainer: Trainer, data, rec: dict, min_score: float = 0.3,
                       max_boxes: int = 20) -> dict:
    """The current model's detections on the fixed first image of ``data`` (never augmented:
    the same pixels every epoch): at most ``max_boxes`` rows of score >= ``min_score``, with the
    image's ground truth, as the epoch's preview record."""
    model = trainer.model
    device = next(model.parameters()).device
    X, target = plain_item(data, 0)
    was_training = model.training
    model.eval()
    rows = predict_batch(model, X.unsqueeze(0).to(device))[0].cpu()
    if was_training:
        model.train()
    rows = rows[(rows[:, 0] >= 0) & (rows[:, 1] >= min_score)][:max_boxes]
    # Both in normalized corners: rows [class, score, x1, y1, x2, y2], gt [class, x1..y2].
    return {"epoch": rec.get("epoch"), "image_index": 0,
            "detections": rows.tolist(), "class_names": list(trainer.class_names),
            "ground_truth": target[target[:, 0] >= 0].tolist()}
