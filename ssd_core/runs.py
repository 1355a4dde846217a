"""What a run trains on (DataSpec), a snapshot of a run's state (JobSnapshot) and its metrics
and preview timelines. The run folder's layout, file names, status schema and states belong to
ssd_core.runfolder; this module reads the timelines out of those files."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from ssd_core import runfolder
from ssd_core.data import SyntheticDetection, load_dataset, resolve_augment, split_holdout
from ssd_core.errors import ConfigError
from ssd_core.fileio import read_json_lines


@dataclass
class DataSpec:
    """Where a job's images come from: generated (``kind="synthetic"``) or a dataset folder/zip.

    A dataset on disk is split: the last ``val_fraction`` of its images (at least one, when it
    has two or more) validate, the rest train; with ``holdout`` > 0 a share of that size chosen
    by ``seed`` instead (ssd_core.data.split_holdout: every class held out where possible);
    with ``val_path`` that dataset validates and every image trains. Synthetic validation uses
    its own seed. ``augment``: False, True or "strong" (resolve_augment).
    """

    kind: str = "synthetic"
    n: int = 512
    seed: int = 0
    preset: str = "default"
    path: str | None = None
    fmt: str | None = None
    val_n: int = 64
    val_seed: int = 10_000
    val_fraction: float = 0.1
    augment: bool | str = False
    holdout: float = 0.0
    val_path: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        """A run's data.json -> DataSpec (the run's creation stamp stored beside it, and any key
        this version does not know, dropped)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def validate(self) -> DataSpec:
        if self.kind not in ("synthetic", "path"):
            raise ConfigError(f"data kind must be 'synthetic' or 'path', got {self.kind!r}.")
        if self.kind == "synthetic" and int(self.n) < 1:
            raise ConfigError(f"The synthetic dataset needs at least 1 image, got n={self.n}.")
        if self.kind == "path" and not self.path:
            raise ConfigError("A dataset path is needed for data kind 'path'.")
        if not 0 <= float(self.val_fraction) < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}.")
        if not 0 <= float(self.holdout) < 1:
            raise ConfigError(f"holdout must be in [0, 1), got {self.holdout}.")
        resolve_augment(self.augment)  # a ConfigError for a value it does not understand
        return self

    def build(self, image_size: int):
        """-> (train dataset, validation dataset or None), both at ``image_size``."""

        self.validate()
        if self.kind == "synthetic":
            train = SyntheticDetection(int(self.n), seed=int(self.seed), image_size=image_size,
                                       preset=self.preset)
            val = None
            if self.val_n > 0:
                val = SyntheticDetection(int(self.val_n), seed=int(self.val_seed),
                                         image_size=image_size, preset=self.preset)
        else:
            full = load_dataset(self.path, fmt=self.fmt, image_size=image_size)
            if len(full) == 0:
                raise ConfigError(f"The dataset {Path(self.path).name!r} holds no images.")
            if self.val_path:
                train = full
                val = load_dataset(self.val_path, image_size=image_size)
            elif self.holdout > 0:
                train, val = split_holdout(full, float(self.holdout), int(self.seed))
            else:
                n_val = int(len(full) * self.val_fraction)
                if len(full) >= 2 and self.val_fraction > 0:
                    n_val = max(1, n_val)
                train, val = Split(full, 0, len(full) - n_val), None
                if n_val:
                    val = Split(full, len(full) - n_val, len(full))
        if self.augment:
            train.set_augment(self.augment)
        return train, val


class Split(torch.utils.data.Dataset):
    """Images ``start <= i < stop`` of a detection dataset, with the same interface."""

    def __init__(self, base, start: int, stop: int):
        self.base, self.start, self.stop = base, start, stop
        self.class_names = base.class_names
        self.image_size = base.image_size

    def __len__(self) -> int:
        return self.stop - self.start

    def _at(self, i: int) -> int:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for a split of {len(self)} images")
        return self.start + i

    def sample(self, i: int):
        return self.base.sample(self._at(i))

    def __getitem__(self, i: int):
        return self.base[self._at(i)]

    def set_augment(self, augment) -> None:
        self.base.set_augment(augment)


@dataclass
class JobSnapshot:
    """A copy of one run's state, safe to read from any thread."""

    run_id: str
    path: Path
    state: str  # one of runfolder.STATES
    message: str
    queue_position: int | None
    records: list
    config: dict
    preview: dict | None
    created: float
    previews: list = field(default_factory=list)  # one per epoch, oldest first
    error: dict | None = None  # a failed run's jobs.failure(): type, message, path, bad_image
    init_report: str | None = None  # what an init checkpoint gave (engine.init_weights)

    @property
    def last_step(self) -> dict | None:
        return next((r for r in reversed(self.records) if r.get("kind") == "step"), None)

    @property
    def epochs(self) -> list[dict]:
        return [r for r in self.records if r.get("kind") == "epoch"]

    @property
    def progress(self) -> float:
        """Fraction of the planned steps done, in [0, 1]."""
        last = self.records[-1] if self.records else None
        if not last or not last.get("total_steps"):
            return 1.0 if self.state == runfolder.FINISHED else 0.0
        return min(1.0, last["step"] / last["total_steps"])

    @property
    def checkpoint(self) -> Path | None:
        """The model the run leaves (best.pt, else checkpoint.pt), or None."""
        return runfolder.checkpoint(self.path)

    @property
    def resumable(self) -> bool:
        return self.state in runfolder.RESUMABLE and runfolder.resume_checkpoint(
            self.path) is not None


def read_metrics(path: Path) -> list[dict]:
    """``metrics.jsonl`` -> list of records; a torn last line (crash mid-write) is skipped.

    A run that crashed and resumed from its last checkpoint logs some steps twice: the ones
    after the checkpoint that died with the process, then the same steps again. Only the
    timeline that led to the model is kept: a record drops the earlier ones it rewinds over
    (a larger step, or the same step and kind)."""
    return _replay(path, append_record)


def _replay(path: Path, append) -> list[dict]:
    """The entries of a JSON-lines timeline, each added with ``append(entries, entry)``."""
    entries: list[dict] = []
    for entry in read_json_lines(path):
        append(entries, entry)
    return entries


def append_record(records: list[dict], rec: dict) -> None:
    """Append ``rec`` to a run's timeline, first dropping the records it rewinds over (see
    read_metrics): the live list of a resumed job and the file on disk stay the same."""
    step = rec.get("step")
    if isinstance(step, (int, float)):
        while records and _rewound(records[-1], step, rec.get("kind")):
            records.pop()
    records.append(rec)


def _rewound(old: dict, step, kind) -> bool:
    s = old.get("step")
    return isinstance(s, (int, float)) and (s > step or (s == step and old.get("kind") == kind))


def read_previews(path: Path) -> list[dict]:
    """``previews.jsonl`` -> one preview per epoch, oldest first (torn lines skipped; a resumed
    run's re-done epochs replace the ones lost with the crash, as in read_metrics)."""
    return _replay(path, append_preview)


def append_preview(previews: list[dict], preview: dict) -> None:
    """Append an epoch's preview, first dropping any of the same or a later epoch."""
    epoch = preview.get("epoch")
    if isinstance(epoch, (int, float)):
        while previews and isinstance(previews[-1].get("epoch"), (int, float)) \
                and previews[-1]["epoch"] >= epoch:
            previews.pop()
    previews.append(preview)
