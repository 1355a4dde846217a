"""A run folder on disk, in one place: the names of its files, the ``status.json`` schema, the
states a run can be in, and the few readers and writers of its small files. The Trainer, the
JobManager, the runs listing, the CLI, the app and the benches all go through these names.

A runs folder holds one folder per run (a folder is a run when it holds ``config.json``) and two
that are not runs: ``experiments/`` (ssd_core.experiments) and ``_uploads/`` (the app). A run::

    config.json      the TrainConfig (TrainConfig.to_dict(); older runs wrote it flat)
    data.json        what it trains on (DataSpec fields) and CREATED_KEY; JobManager runs only
    owner.json       {"pid", "host"} of the process whose JobManager trains it
    status.json      {"state", "message", "step", "epoch", "total_steps", "error", "time"}
    metrics.jsonl    one metrics record a line (ssd_core.engine)
    checkpoint.pt    the latest checkpoint, resumable
    best.pt          the checkpoint of the best validation AP50
    preview.json     the latest epoch's detections on a fixed validation image
    previews.jsonl   every epoch's

Old run folders open: ``read_status`` takes either of the two schemas older versions wrote
(the Trainer's with step/epoch/total_steps, the JobManager's with error), and a missing, torn
or unknown status reads as ``interrupted`` with a message saying why; it never raises.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ssd_core.checkpoint import save_checkpoint
from ssd_core.fileio import append_json_line, read_json, write_json_atomic

# ---- the files of a run
CONFIG = "config.json"
DATA = "data.json"
OWNER = "owner.json"
STATUS = "status.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
PREVIEW = "preview.json"
PREVIEWS = "previews.jsonl"
CREATED_KEY = "created_ns"  # in data.json: when submit made the run (ns since the epoch)

# ---- folders of a runs folder that are not runs
EXPERIMENTS_DIR = "experiments"
UPLOADS_DIR = "_uploads"
DATASETS_DIR = "datasets"  # users' photo sets (ssd_core.userdata), not runs

# ---- the states of a run
QUEUED = "queued"  # waiting for a free training slot
RUNNING = "running"
STOPPING = "stopping"  # asked to stop: finishing the current step, then saving
FINISHED = "finished"
STOPPED = "stopped"  # by a user (resumable from checkpoint.pt when it has one)
FAILED = "failed"
INTERRUPTED = "interrupted"  # its process went away while it was active (or no readable status)
STATES = (QUEUED, RUNNING, STOPPING, FINISHED, STOPPED, FAILED, INTERRUPTED)
ACTIVE = frozenset({QUEUED, RUNNING, STOPPING})  # a thread holds or awaits it: hands off
ENDED = frozenset({FINISHED, STOPPED, FAILED, INTERRUPTED})  # no thread will touch it again
STOPPABLE = frozenset({QUEUED, RUNNING})
RESUMABLE = frozenset({STOPPED, FAILED, INTERRUPTED})  # given a checkpoint.pt

STALE_S = 3600  # another host's active run counts as alive while its status is this fresh


RUNS_ENV = "SSD_RUNS_DIR"
_CHECKOUT = Path(__file__).resolve().parent.parent


def default_runs_dir() -> Path:
    """The runs folder the app and the CLI's ``set`` command share: ``$SSD_RUNS_DIR`` if set;
    else ``runs/`` of the checkout this package runs from (gitignored); an installed package
    (no checkout around it) uses ``runs/`` in the current folder, never its site-packages."""
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV])
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "ssd_core").is_dir():
        return _CHECKOUT / "runs"
    return Path.cwd() / "runs"


def is_run(folder: Path) -> bool:
    return (Path(folder) / CONFIG).is_file()


def run_folders(runs_dir) -> list[Path]:
    """The run folders of a runs folder (any order); none when it does not exist."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return [p for p in runs_dir.iterdir() if p.is_dir() and is_run(p)]


def checkpoint(folder: Path) -> Path | None:
    """The model a run leaves: ``best.pt`` if it has one, else ``checkpoint.pt``, else None."""
    for name in (BEST, CHECKPOINT):
        if (Path(folder) / name).exists():
            return Path(folder) / name
    return None


def resume_checkpoint(folder: Path) -> Path | None:
    """``checkpoint.pt`` (the state to continue from), or None when the run has none."""
    path = Path(folder) / CHECKPOINT
    return path if path.exists() else None


# ---- status.json
@dataclass(frozen=True)
class Status:
    """What ``status.json`` says. ``state`` is always one of STATES."""

    state: str
    message: str = ""
    step: int | None = None
    epoch: int | None = None
    total_steps: int | None = None
    error: dict | None = None  # a failed job's ssd_core.jobs.failure()
    time: float | None = None  # when it was written (time.time())


def write_status(folder: Path, state: str, message: str = "", *, step: int | None = None,
                 epoch: int | None = None, total_steps: int | None = None,
                 error: dict | None = None) -> Status:
    """Write ``status.json`` atomically (the one writer of the schema) -> what it wrote."""
    if state not in STATES:
        raise ValueError(f"unknown run state {state!r}; one of {', '.join(STATES)}")
    status = Status(state, message, step, epoch, total_steps, error, time.time())
    write_json_atomic(Path(folder) / STATUS, asdict(status))
    return status


def read_status(folder: Path) -> Status:
    """What the run's ``status.json`` says, from any version: keys may be missing (the two old
    schemas held either step/epoch/total_steps or error) or of the wrong type (dropped). No
    file, a torn or non-object file, or a state this version does not know -> ``interrupted``
    with a message saying why. Never raises."""
    path = Path(folder) / STATUS
    if not path.exists():
        return Status(INTERRUPTED, f"it has no {STATUS}: it stopped before recording a state")
    raw = read_json(path)
    if not isinstance(raw, dict):
        return Status(INTERRUPTED, f"its {STATUS} could not be read")
    state, message = raw.get("state"), raw.get("message")
    message = message if isinstance(message, str) else ""
    if state not in STATES:
        message = f"its {STATUS} holds an unknown state {state!r}" + (
            f" ({message})" if message else "")
        state = INTERRUPTED

    def whole(key):
        v = raw.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    error, stamp = raw.get("error"), raw.get("time")
    return Status(state, message, whole("step"), whole("epoch"), whole("total_steps"),
                  error if isinstance(error, dict) else None,
                  float(stamp) if isinstance(stamp, (int, float)) else None)


def current_status(folder: Path) -> Status:
    """``read_status``, with an active state whose owning process is gone (a server restarted,
    a machine lost) read as ``interrupted``: for runs this process does not train itself."""
    status = read_status(folder)
    if status.state not in ACTIVE or owner_alive(folder):
        return status
    how = ("; resume it from its last checkpoint" if resume_checkpoint(folder)
           else "; start it again")
    return Status(INTERRUPTED, f"the server stopped while this run was {status.state}{how}",
                  status.step, status.epoch, status.total_steps, None, status.time)


# ---- owner.json
def write_owner(folder: Path) -> None:
    """Record this process as the one training the run."""
    write_json_atomic(Path(folder) / OWNER, {"pid": os.getpid(), "host": socket.gethostname()})


def owner_alive(folder: Path) -> bool:
    """Whether another live process owns the run: on this host its pid runs (and is not ours,
    whose jobs the caller knows in memory); on another host (a replica) its status was
    written within STALE_S."""
    owner = read_json(Path(folder) / OWNER, {})
    owner = owner if isinstance(owner, dict) else {}
    if owner.get("host") != socket.gethostname():
        st = Path(folder) / STATUS
        return st.exists() and time.time() - st.stat().st_mtime < STALE_S
    pid = owner.get("pid")
    return isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- config.json, data.json, preview files
def write_config(folder: Path, config) -> None:
    """``config.json`` of a TrainConfig (the folder made if needed)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(folder) / CONFIG, config.to_dict())


def read_config(folder: Path) -> dict:
    """The run's ``config.json`` as a dict ({} when missing or unreadable)."""
    config = read_json(Path(folder) / CONFIG, {})
    return config if isinstance(config, dict) else {}


def write_data(folder: Path, data: dict, created_ns: int) -> None:
    """``data.json``: the DataSpec's fields and the run's creation stamp."""
    write_json_atomic(Path(folder) / DATA, {**data, CREATED_KEY: created_ns})


def read_data(folder: Path) -> dict:
    """The run's ``data.json`` without its creation stamp ({} when missing or unreadable: a CLI
    run has none)."""
    data = read_json(Path(folder) / DATA, {})
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k != CREATED_KEY}


def created_time(folder: Path) -> float:
    """When the run was made, in seconds: the stamp submit wrote into data.json. (The folder's
    ctime moves with every file written into it, config.json is written again when training
    starts, and file times are coarse: two runs queued in the same millisecond can share one.)
    A run folder without the stamp (made by the CLI or an older version) falls back to its
    data.json's, then its config.json's time."""
    folder = Path(folder)
    data = read_json(folder / DATA, {})
    stamp = data.get(CREATED_KEY) if isinstance(data, dict) else None
    if isinstance(stamp, int):
        return stamp / 1e9
    for name in (DATA, CONFIG):
        try:
            return (folder / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def write_preview(folder: Path, preview: dict) -> None:
    """An epoch's preview: ``preview.json`` replaced, ``previews.jsonl`` appended."""
    write_json_atomic(Path(folder) / PREVIEW, preview)
    append_json_line(Path(folder) / PREVIEWS, preview)


def read_preview(folder: Path) -> dict | None:
    """The latest epoch's preview, or None."""
    preview = read_json(Path(folder) / PREVIEW)
    return preview if isinstance(preview, dict) else None


# ---- the Trainer's writer
class RunFolder:
    """The files a Trainer writes into its run folder (config, metrics, status, checkpoints).
    Only the main process writes; with no folder (``path`` None) nothing is written."""

    def __init__(self, path, enabled: bool = True):
        self.path = Path(path) if path is not None else None
        self.enabled = enabled and self.path is not None

    @property
    def checkpoint_path(self) -> Path | None:
        return self.path / CHECKPOINT if self.path is not None else None

    def write_config(self, config) -> None:
        if self.enabled:
            write_config(self.path, config)

    def write_status(self, state: str, message: str, step: int, epoch: int,
                     total_steps: int | None) -> None:
        if self.enabled:
            write_status(self.path, state, message, step=step, epoch=epoch,
                         total_steps=total_steps)

    def append_metrics(self, record: dict) -> None:
        if self.enabled:
            append_json_line(self.path / METRICS, record)

    def save(self, name: str, model, config, class_names, metrics, train_state=None) -> None:
        if self.enabled:
            save_checkpoint(self.path / name, model, config, class_names, metrics, train_state)

