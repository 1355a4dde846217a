"""The run folder writer: ``config.json``, ``metrics.jsonl``, ``status.json``,
``checkpoint.pt`` (latest, resumable) and ``best.pt``. Only the main process writes; with no
folder (``path`` None) nothing is written."""

from __future__ import annotations

import time
from pathlib import Path

from ssd_core.checkpoint import save_checkpoint
from ssd_core.config import TrainConfig
from ssd_core.fileio import append_json_line, write_json_atomic


class RunFolder:
    def __init__(self, path, enabled: bool = True):
        self.path = Path(path) if path is not None else None
        self.enabled = enabled and self.path is not None

    @property
    def checkpoint_path(self) -> Path | None:
        return self.path / "checkpoint.pt" if self.path is not None else None

    def write_config(self, config: TrainConfig) -> None:
        if self.enabled:
            self.path.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path / "config.json", config.to_dict())

    def write_status(self, state: str, message: str, step: int, epoch: int,
                     total_steps: int | None) -> None:
        if self.enabled:
            write_json_atomic(self.path / "status.json", {
                "state": state, "message": message, "step": step, "epoch": epoch,
                "total_steps": total_steps, "time": time.time()})

    def append_metrics(self, record: dict) -> None:
        if self.enabled:
            append_json_line(self.path / "metrics.jsonl", record)

    def save(self, name: str, model, config, class_names, metrics, train_state=None) -> None:
        if self.enabled:
            save_checkpoint(self.path / name, model, config, class_names, metrics, train_state)
