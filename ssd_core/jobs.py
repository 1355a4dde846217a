"""Background training jobs and the runs folder, for the app (and anyone else).

A :class:`JobManager` owns one runs folder. ``submit`` creates the run's folder at once
(``config.json``, ``data.json``, ``status.json`` = queued) and queues the job; at most
``max_running`` jobs train at the same time (1 by default: a CPU server trains one model at a time),
the others wait in FIFO order with their position reported. Each job trains in its own thread
through :class:`ssd_core.engine.Trainer`, which writes ``metrics.jsonl``, ``checkpoint.pt``,
``best.pt`` and ``status.json``. The worker never touches a UI: readers take a :meth:`snapshot`
(a copy made under a lock) whenever they like, e.g. from ``st.fragment(run_every=...)``.

Runs survive the process: :meth:`list_runs` reads every run folder from disk; a run whose status
says running or queued but whose owning process is gone is reported as ``interrupted`` and can be
resumed from its last checkpoint with :meth:`resume`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import socket
import threading
import time
from pathlib import Path

from ssd_core.config import TrainConfig
from ssd_core.detection import predict_batch
from ssd_core.engine import Trainer
from ssd_core.errors import ConfigError, SSDError
from ssd_core.fileio import append_json_line, write_json_atomic
from ssd_core.images import ACCEPTED_MARK

# DataSpec, JobSnapshot and read_metrics are part of this module's interface too.
from ssd_core.runs import (  # noqa: F401
    ACTIVE_STATES,
    CREATED_KEY,
    PREVIEW_FILE,
    PREVIEWS_FILE,
    DataSpec,
    JobSnapshot,
    append_preview,
    append_record,
    created_time,
    read_json,
    read_metrics,
    read_previews,
)


class _Job:
    def __init__(self, run_id: str, path: Path, config: TrainConfig, data: DataSpec,
                 resume: Path | None, created: float):
        self.run_id, self.path, self.config, self.data, self.resume = (
            run_id, path, config, data, resume)
        self.created = created  # as created_time(path) reads it, kept: snapshots are polled
        self.state, self.message = "queued", "waiting for a free training slot"
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobManager:
    """Queue and run training jobs in background threads; see the module docstring."""

    def __init__(self, runs_dir: str | os.PathLike, max_running: int | None = None):
        self.runs_dir = Path(runs_dir)
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
    def submit(self, config: TrainConfig, data: DataSpec, name: str | None = None) -> str:
        """Validate, create the run folder, queue the job -> run id. Raises ConfigError."""
        config.validate()
        data.validate()
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        if name:
            safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40]
            run_id = f"{run_id}-{safe}"
        path = self.runs_dir / run_id
        path.mkdir(parents=True)
        write_json_atomic(path / "config.json", config.to_dict())
        with self._lock:  # strictly increasing, so the runs list has one order
            self._last_created = max(time.time_ns(), self._last_created + 1)
            created = self._last_created
        write_json_atomic(path / "data.json", {**dataclasses.asdict(data), CREATED_KEY: created})
        job = _Job(run_id, path, config, data, None, created / 1e9)
        self._enqueue(job)
        return run_id

    def resume(self, run_id: str) -> str:
        """Continue a stopped, failed or interrupted run from its checkpoint.pt (same folder)."""
        path = self.runs_dir / run_id
        ckpt = path / "checkpoint.pt"
        with self._lock:
            live = self._jobs.get(run_id)
            if live is not None and live.state in ACTIVE_STATES:
                raise ConfigError(f"Run {run_id} is already {live.state}.")
        if not ckpt.exists():
            raise ConfigError(f"Run {run_id} has no checkpoint to resume from; start a new run.")
        config = TrainConfig.from_dict(read_json(path / "config.json", {}))
        data = DataSpec.from_dict(read_json(path / "data.json", {}) or {})
        self._enqueue(_Job(run_id, path, config, data, ckpt, created_time(path)))
        return run_id

    def stop(self, run_id: str) -> None:
        """A queued job is cancelled; a running one stops after its current step and saves."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                return
            job.stop_requested = True
            if job.state == "queued":
                self._queue.remove(run_id)
                job.state, job.message = "stopped", "cancelled before it started"
                self._write_status(job)
                self._lock.notify_all()
            elif job.state == "running":
                job.state, job.message = "stopping", "finishing the current step, then saving"
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
                                   job.created, list(job.previews), job.error)
        return self._snapshot_from_disk(self.runs_dir / run_id)

    def list_runs(self) -> list[JobSnapshot]:
        """Every run in the folder, newest first."""
        if not self.runs_dir.exists():
            return []
        runs = [self.snapshot(p.name) for p in self.runs_dir.iterdir()
                if p.is_dir() and (p / "config.json").exists()]
        return sorted(runs, key=lambda r: (r.created, r.run_id), reverse=True)

    def active(self) -> list[str]:
        with self._lock:
            return [i for i, j in self._jobs.items() if j.state in ACTIVE_STATES + ("stopping",)]

    def _snapshot_from_disk(self, path: Path) -> JobSnapshot:
        if not (path / "config.json").exists():
            raise ConfigError(f"No run named {path.name!r} in {self.runs_dir}.")
        status = read_json(path / "status.json", {}) or {}
        state = status.get("state", "interrupted")
        message = status.get("message", "")
        if state in ACTIVE_STATES + ("stopping",) and not self._owner_alive(path):
            state = "interrupted"
            message = ("the server stopped while this run was " + status.get("state", "active")
                       + ("; resume it from its last checkpoint"
                          if (path / "checkpoint.pt").exists() else "; start it again"))
        return JobSnapshot(path.name, path, state, message, None,
                           read_metrics(path / "metrics.jsonl"),
                           read_json(path / "config.json", {}) or {},
                           read_json(path / PREVIEW_FILE), created_time(path),
                           read_previews(path / PREVIEWS_FILE),
                           status.get("error") if state == "failed" else None)

    @staticmethod
    def _owner_alive(path: Path) -> bool:
        owner = read_json(path / "owner.json", {}) or {}
        if owner.get("host") != socket.gethostname():
            # Another machine (a replica): trust it while its status is fresh (1 hour).
            st = path / "status.json"
            return st.exists() and time.time() - st.stat().st_mtime < 3600
        pid = owner.get("pid")
        return isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid)

    # ---- internals
    def _write_status(self, job: _Job) -> None:
        write_json_atomic(job.path / "status.json", {
            "state": job.state, "message": job.message, "time": time.time(),
            **({"error": job.error} if job.error else {})})

    def _enqueue(self, job: _Job) -> None:
        write_json_atomic(job.path / "owner.json",
                          {"pid": os.getpid(), "host": socket.gethostname()})
        with self._lock:
            self._jobs[job.run_id] = job
            self._queue.append(job.run_id)
            self._write_status(job)
            job.thread = threading.Thread(target=self._run, args=(job,), daemon=True,
                                          name=f"ssd-train-{job.run_id}")
            job.thread.start()

    def _run(self, job: _Job) -> None:
        with self._lock:
            while job.state == "queued" and (
                    self._queue[0] != job.run_id or len(self._running) >= self.max_running):
                self._lock.wait(1.0)
            if job.state != "queued":  # cancelled while waiting
                return
            self._queue.remove(job.run_id)
            self._running.add(job.run_id)
            job.state, job.message = "running", "preparing data"
            self._write_status(job)  # readers of the folder (other replicas) see it start
            self._lock.notify_all()
        try:
            self._train(job)
        except Exception as e:  # noqa: BLE001 - the job must end with a message, not kill a UI
            job.error = failure(e)
            self._finish(job, "failed", job.error["message"])
        else:
            status = read_json(job.path / "status.json", {}) or {}
            state = status.get("state", "finished")
            self._finish(job, "finished" if state == "running" else state,
                         status.get("message", ""))
        finally:
            with self._lock:
                self._running.discard(job.run_id)
                self._lock.notify_all()

    def _train(self, job: _Job) -> None:
        train, val = job.data.build(job.config.input_size)
        trainer = Trainer(job.config, train, val, run_dir=job.path, resume=job.resume)
        if job.resume is not None:
            job.records = read_metrics(job.path / "metrics.jsonl")
            job.previews = read_previews(job.path / PREVIEWS_FILE)
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
                preview = self._preview(trainer, preview_data, rec)
                with self._lock:
                    job.preview = preview
                    append_preview(job.previews, preview)
                write_json_atomic(job.path / PREVIEW_FILE, preview)
                append_json_line(job.path / PREVIEWS_FILE, preview)

    @staticmethod
    def _preview(trainer: Trainer, data, rec: dict) -> dict:
        """The current model's detections on the fixed first validation image."""
        model = trainer.model
        device = next(model.parameters()).device
        X, target = data[0]
        was_training = model.training
        model.eval()
        rows = predict_batch(model, X.unsqueeze(0).to(device))[0].cpu()
        if was_training:
            model.train()
        rows = rows[(rows[:, 0] >= 0) & (rows[:, 1] >= 0.3)][:20]
        # Both in normalized corners: rows [class, score, x1, y1, x2, y2], gt [class, x1..y2].
        return {"epoch": rec.get("epoch"), "image_index": 0,
                "detections": rows.tolist(), "class_names": list(trainer.class_names),
                "ground_truth": target[target[:, 0] >= 0].tolist()}

    def _finish(self, job: _Job, state: str, message: str) -> None:
        with self._lock:
            job.state, job.message = state, message
            self._write_status(job)
