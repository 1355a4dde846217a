"""The chapter's Problems answered by measurement: each experiment is a matched pair (or small
grid) of short training runs that differ in one setting only, on the same data and seed, queued
through the JobManager like any run. A group file ``runs/experiments/<id>.json`` ties the runs
together, so their curves can be overlaid and their final AP50 and mAP tabulated."""

from __future__ import annotations

import dataclasses
import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ssd_core.config import TrainConfig
from ssd_core.errors import ConfigError
from ssd_core.fileio import read_json, write_json_atomic
from ssd_core.jobs import JobManager
from ssd_core.runfolder import EXPERIMENTS_DIR as GROUPS_DIR  # in the runs folder, not a run
from ssd_core.runs import DataSpec


@dataclass(frozen=True)
class Arm:
    """One run of an experiment: its label and the settings (flat names) it changes."""

    label: str
    changes: dict


@dataclass(frozen=True)
class Experiment:
    key: str
    title: str
    problem: str  # the chapter's question it answers
    arms: tuple[Arm, ...]


EXPERIMENTS = {e.key: e for e in (
    Experiment("box_loss", "L1 vs smooth-L1 box loss",
               "Loss function: replace the L1 norm loss of the offsets with the smooth L1 loss.",
               (Arm("L1 (book)", {"box_loss": "l1"}),
                Arm("smooth-L1, sigma 1", {"box_loss": "smooth_l1", "smooth_l1_sigma": 1.0}))),
    Experiment("cls_loss", "Cross-entropy vs focal loss",
               "Loss function: use the focal loss for the class predictions.",
               (Arm("cross-entropy (book)", {"cls_loss": "ce"}),
                Arm("focal, gamma 2", {"cls_loss": "focal", "focal_gamma": 2.0}))),
    Experiment("mining", "Hard negative mining off vs on",
               "Training: sample the negative anchors (3 per positive) to balance the classes.",
               (Arm("all negatives (book)", {"hard_negative_mining": False}),
                Arm("3:1 hard negatives", {"hard_negative_mining": True, "neg_ratio": 3.0}))),
    Experiment("loss_weights", "Class vs offset loss weights",
               "Training: weight the class loss and the offset loss differently.",
               (Arm("1 : 1 (book)", {"cls_weight": 1.0, "box_weight": 1.0}),
                Arm("1 : 5 (offsets x5)", {"cls_weight": 1.0, "box_weight": 5.0}),
                Arm("5 : 1 (classes x5)", {"cls_weight": 5.0, "box_weight": 1.0}))),
    Experiment("input_size", "A larger input size",
               "Training: objects large compared with the image call for a larger input size.",
               (Arm("256 px (book)", {"input_size": 256}), Arm("320 px", {"input_size": 320}))),
)}


def arm_configs(key: str, base: TrainConfig) -> list[tuple[Arm, TrainConfig]]:
    """Each arm's config: ``base`` with the arm's changes (everything else, seed included, the
    same). Raises ConfigError for an unknown experiment."""
    if key not in EXPERIMENTS:
        raise ConfigError(f"Unknown experiment {key!r}; choose from {sorted(EXPERIMENTS)}.",
                          field="experiment")
    return [(arm, base.replace(**arm.changes)) for arm in EXPERIMENTS[key].arms]


def submit_experiment(manager: JobManager, key: str, base: TrainConfig, data: DataSpec,
                      seeds: int = 1) -> str:
    """Queue every arm on the same data (one DataSpec, one seed) -> the group id; the group file
    is written before the first run is queued, so a refresh never loses the pairing.
    ``seeds`` > 1 repeats every arm with the next seeds (model and data: seed + 1, ...), so the
    group measures its own run-to-run spread (see :func:`verdict`)."""
    arms = arm_configs(key, base)
    data.validate()
    if seeds > 1:
        arms = [(arm, cfg.replace(seed=cfg.seed + k)) for k in range(seeds) for arm, cfg in arms]
    group = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2) + "-" + key
    path = _groups_dir(manager.runs_dir) / f"{group}.json"
    record = {"group": group, "key": key, "title": EXPERIMENTS[key].title,
              "created": time.time(), "base": base.flat(), "data": dataclasses.asdict(data),
              "runs": []}
    write_json_atomic(path, record)
    for arm, cfg in arms:
        run_id = manager.submit(cfg, dataclasses.replace(data, seed=data.seed + cfg.seed
                                                         - base.seed),
                                name=f"{key}-{len(record['runs'])}")
        record["runs"].append({"label": arm.label, "run_id": run_id, "changes": arm.changes,
                               "seed": cfg.seed})
        write_json_atomic(path, record)
    return group


def list_experiments(runs_dir) -> list[dict]:
    """Every experiment group in a runs folder, newest first (unreadable files skipped)."""
    folder = Path(runs_dir) / GROUPS_DIR
    groups = [read_json(p) for p in folder.glob("*.json")] if folder.is_dir() else []
    groups = [g for g in groups if isinstance(g, dict) and isinstance(g.get("runs"), list)]
    return sorted(groups, key=lambda g: g.get("created", 0), reverse=True)


def experiment_results(manager: JobManager, group: dict) -> list[dict]:
    """One row per arm: label, run_id, state, progress, final val AP50 / mAP (None until a
    validation ran) and their difference from the first arm, and the run's records."""
    rows = []
    for entry in group["runs"]:
        try:
            snap = manager.snapshot(entry["run_id"])
        except (ConfigError, KeyError):
            rows.append({"label": entry.get("label", "?"), "seed": entry.get("seed"),
                         "run_id": entry.get("run_id"),
                         "state": "missing", "progress": 0.0, "ap50": None, "map": None,
                         "records": []})
            continue
        last = next((r for r in reversed(snap.epochs) if "val_ap50" in r), {})
        rows.append({"label": entry["label"], "seed": entry.get("seed"),
                     "run_id": snap.run_id, "state": snap.state,
                     "progress": snap.progress, "ap50": last.get("val_ap50"),
                     "map": last.get("val_map"), "records": snap.records})
    first = rows[0] if rows else {}
    for row in rows:
        for k in ("ap50", "map"):
            a, b = row[k], first.get(k)
            ok = a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
            row[f"d_{k}"] = a - b if ok else None
    return rows


def _groups_dir(runs_dir) -> Path:
    folder = Path(runs_dir) / GROUPS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def verdict(rows: list[dict], spread: float) -> dict:
    """Whether an experiment's arms differ by more than chance.

    rows: :func:`experiment_results` rows (with ``seed`` where the group has several seeds);
    spread: the run-to-run spread of the final AP50 to use when the group has one seed per arm.
    With two or more seeds per arm the group's own spread is used: the largest range of one
    arm's AP50 over its seeds. -> {"means": {label: mean AP50}, "difference": best - worst arm,
    "spread", "measured" (the spread is the group's own), "clear" (difference > spread),
    "best": the best arm's label when clear, else None}."""
    by_arm: dict[str, list[float]] = {}
    for r in rows:
        if r.get("ap50") is not None and math.isfinite(r["ap50"]):
            by_arm.setdefault(r["label"], []).append(float(r["ap50"]))
    means = {k: sum(v) / len(v) for k, v in by_arm.items()}
    ranges = [max(v) - min(v) for v in by_arm.values() if len(v) > 1]
    measured = bool(ranges)
    spread = max(ranges) if measured else float(spread)
    difference = max(means.values()) - min(means.values()) if len(means) > 1 else 0.0
    clear = len(means) > 1 and difference > spread
    best = max(means, key=means.get) if clear else None
    return {"means": means, "difference": difference, "spread": spread, "measured": measured,
            "clear": clear, "best": best}
