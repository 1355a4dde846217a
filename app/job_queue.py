"""The runs folder and its one JobManager, shared by every session of the server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from app.sample_images import png_bytes
from ssd_core import DataSpec, JobManager, TrainConfig
from ssd_core import runfolder as rf
from ssd_core.errors import ConfigError
from ssd_core.runfolder import UPLOADS_DIR


def runs_dir() -> Path:
    """The runs folder (ssd_core.runfolder.default_runs_dir, the CLI's too): ``$SSD_RUNS_DIR``
    if set; else ``runs/`` of the checkout the app runs from (gitignored); an installed app
    (``pip install .``, no checkout around it) uses ``runs/`` in the folder it was started
    from, never its site-packages."""
    return rf.default_runs_dir()


@st.cache_resource(show_spinner=False)
def _job_manager(path: str) -> JobManager:
    return JobManager(path)  # reads SSD_MAX_TRAINING_JOBS (1 by default)


def job_manager() -> JobManager:
    """The process-wide JobManager of the current runs folder: every session and every browser
    refresh sees the same jobs (the worker threads live as long as the server)."""
    return _job_manager(str(runs_dir()))


def live_snapshot(run_id: str, was_live: bool):
    """The run's JobSnapshot for a panel polled while the job is live, or None (with a warning
    on the page) for a run that is gone. A job that ended since the last poll reruns the whole
    page once, which stops the polling and refreshes the lists."""
    try:
        snap = job_manager().snapshot(run_id)
    except ConfigError as e:
        st.warning(str(e))
        return None
    if was_live and snap.state not in rf.ACTIVE:
        st.rerun()
    return snap


@st.cache_data(show_spinner=False, max_entries=16)
def preview_image(run_path: str) -> bytes:
    """PNG bytes of the fixed validation image a run's preview detections refer to (the first
    image of its validation set, else of its training set, never augmented)."""
    root = Path(run_path)
    spec = DataSpec.from_dict(rf.read_data(root))
    cfg = TrainConfig.from_dict(rf.read_config(root))
    train, val = spec.build(cfg.input_size)
    data = val if val is not None and len(val) else train
    return png_bytes(data.sample(0)[0])


def save_upload(data: bytes) -> Path:
    """Keep an uploaded dataset zip where a job can read it, once per content:
    ``<runs>/_uploads/<sha1>.zip`` (the Training and Evaluation pages share it)."""
    path = runs_dir() / UPLOADS_DIR / f"{hashlib.sha1(data).hexdigest()[:16]}.zip"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path

