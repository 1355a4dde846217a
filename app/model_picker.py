"""The models a page can run: one cached loader (``detector``) for the shipped TinySSD, an
untrained one or any checkpoint, and the selectbox that picks among them."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import job_queue, timing
from ssd_core import runfolder as rf
from ssd_core.config import FIELDS
from ssd_core.data import CLASS_NAMES
from ssd_core.detection import Detector
from ssd_core.errors import CheckpointError
from ssd_core.model import seeded_tinyssd
from ssd_core.resources import shipped_checkpoint

UNTRAINED = "untrained"
SHIPPED = "shipped"
ACTIVE_KEY = "active_checkpoint"  # set by the Training page's "Use for detection"


def active_checkpoint() -> str | None:
    """The checkpoint path the Training page made the active model, or None."""
    path = st.session_state.get(ACTIVE_KEY)
    return str(path) if path else None


def _path(choice: str) -> str | None:
    return None if choice == UNTRAINED else (
        str(shipped_checkpoint()) if choice == SHIPPED else choice)


def _mtime(path: str | None) -> int:
    try:
        return Path(path).stat().st_mtime_ns if path else 0
    except OSError:
        return 0


@st.cache_resource(show_spinner="Loading model ...", max_entries=4)
def _detector(choice: str, mtime: int) -> Detector:
    timing.event("model load", model=choice)
    if choice == UNTRAINED:
        return Detector(seeded_tinyssd(len(CLASS_NAMES), seed=0), list(CLASS_NAMES),
                        FIELDS["input_size"].default, device="cpu")
    return Detector.from_checkpoint(_path(choice))


def detector(choice: str) -> Detector:
    """A cached Detector for a model choice: ``SHIPPED``, ``UNTRAINED`` (random weights, seed
    0) or a checkpoint path. Reloaded when the file changes (a run's checkpoint.pt is rewritten
    while it trains). Raises CheckpointError for a missing or bad checkpoint."""
    return _detector(choice, _mtime(_path(choice)))


def model_key(choice: str) -> str:
    """A string that changes whenever the chosen model's weights do (for st.cache_data keys)."""
    return f"{choice}@{_mtime(_path(choice))}"


def run_class_names(run) -> list[str]:
    """A run's class names (a taught model's own): from its config.json, which every run of
    the Trainer writes (app and CLI alike), else from its latest preview (older app runs)."""
    for names in ((run.config or {}).get("class_names"),
                  (run.preview or {}).get("class_names")):
        if isinstance(names, list) and names:
            return [str(n) for n in names]
    return []


def model_choices() -> dict[str, str]:
    """Model choice -> label: the active checkpoint, the shipped model (when present), every
    run with a checkpoint (newest first), and an untrained TinySSD (always available). A run's
    label ends with its class names (a taught model's own: "run ... : mug, book, ball")."""
    try:
        listed = job_queue.job_manager().list_runs()
    except OSError:
        listed = []
    runs: dict[str, tuple[str, str]] = {}  # checkpoint -> (label, ": class, names" or "")
    for run in listed:
        ckpt = run.checkpoint
        if ckpt is not None and run.state != rf.QUEUED:
            names = run_class_names(run)
            runs.setdefault(str(ckpt), (f"run {run.run_id} ({run.state}, {ckpt.name})",
                                        f": {', '.join(names)}" if names else ""))
    choices: dict[str, str] = {}
    active = active_checkpoint()
    if active and Path(active).exists():
        choices[active] = (f"active: {Path(active).parent.name}/{Path(active).name}"
                           + runs.get(active, ("", ""))[1])
    if shipped_checkpoint().exists():
        choices[SHIPPED] = "shipped TinySSD (trained on synthetic shapes)"
    for ckpt, (label, names) in runs.items():
        choices.setdefault(ckpt, label + names)
    choices[UNTRAINED] = "untrained TinySSD (random weights)"
    return choices


def loaded_choice(key: str, det: Detector) -> str:
    """The choice behind the Detector ``model_picker(key)`` returned: the picker's own, or
    ``UNTRAINED`` when it fell back because the checkpoint could not be loaded."""
    return st.session_state.get(key, UNTRAINED) if det.checkpoint else UNTRAINED


def model_picker(key: str) -> tuple[Detector, str]:
    """A model selectbox -> ``(Detector, label)``. Follows the Training page's active
    checkpoint when it changes; explains a missing shipped model; never raises."""
    choices = model_choices()
    active = active_checkpoint()
    seen = f"{key}.seen_active"
    if st.session_state.get(seen) != active and active in choices:
        st.session_state[key] = active  # "Use for detection" on the Training page wins
    st.session_state[seen] = active
    if st.session_state.get(key) not in choices:
        st.session_state[key] = next(iter(choices))
    choice = st.selectbox("Model", list(choices), key=key, format_func=choices.get)
    if not shipped_checkpoint().exists() and choice == UNTRAINED:
        st.info(f"The shipped model `assets/{shipped_checkpoint().name}` is not installed yet, "
                "so this is an **untrained** TinySSD: its boxes are random. Train one on the "
                "Training page (or choose a finished run) to see real detections.")
    try:
        return detector(choice), choices[choice]
    except CheckpointError as e:
        st.warning(f"That model could not be loaded ({e}); using an untrained TinySSD instead.")
        return detector(UNTRAINED), choices[UNTRAINED]
