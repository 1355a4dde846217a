"""Teach: from an empty photo set to live detection, one step at a time.

Collect photos (camera snapshots, uploads, an imported dataset), label them with the mouse, see
SSD's anchors on them, train the ``teach`` recipe through the job queue, detect live, keep the
set. The set lives in the runs folder (``ssd_core.userdata``); the chosen set, step and photo are
in the URL.
"""

import streamlit as st

from app import present, urlstate
from app.views._teach_collect import collect
from app.views._teach_detect import detect
from app.views._teach_keep import import_set, keep
from app.views._teach_label import label
from app.views._teach_see import see
from app.views._teach_store import all_sets, chosen_set, select_set
from app.views._teach_train import train
from ssd_core.errors import SSDError
from ssd_core.userdata import UserDataset

PICK_KEY = "teach.set_pick"
# the steps in order, each drawn by its view of the chosen set
VIEWS = {"Collect": collect, "Label": label, "See SSD": see, "Train": train,
         "Detect live": detect, "Keep": keep}
STEPS = list(VIEWS)


def new_set() -> None:
    with st.form("teach.new_form", clear_on_submit=True, border=False):
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        name = c1.text_input("Name of a new photo set", key="teach.new_name", max_chars=60,
                             placeholder="e.g. mugs and keys")
        if c2.form_submit_button("Create", icon=":material/add:"):
            try:
                ds = UserDataset.create(jobs_root(), name.strip())
            except (SSDError, ValueError, OSError) as e:
                st.error(f"The set could not be created: {e}")
                return
            select_set(ds.name)
            st.rerun()


def jobs_root():
    from app import job_queue
    return job_queue.runs_dir()


def set_chooser(sets):
    """The set to work on -> UserDataset or None; a new one, or an import."""
    ds = chosen_set(sets)
    names = [s.name for s in sets]
    c1, c2 = st.columns([2, 2])
    with c1:
        if names:
            # The chooser shows the session's set (a new, renamed or imported one included).
            st.session_state[PICK_KEY] = ds.name if ds is not None else None
            st.selectbox("Photo set", names, placeholder="choose a set", key=PICK_KEY,
                         on_change=lambda: select_set(st.session_state[PICK_KEY]))
    with c2:
        new_set()
    if ds is None:
        with st.expander("Or import a dataset as a new set"):
            import_set()
    return ds


present.page_top("Teach", (
    "Teach TinySSD your own objects: **collect** photos, **label** them by dragging boxes, "
    "see how SSD's anchors meet your boxes, **train** a model from the shipped one, and "
    "**detect** your objects live on the camera."))

try:
    sets = all_sets()
except (SSDError, OSError) as e:
    st.error(f"The photo sets could not be listed: {e}")
    sets = []
ds = set_chooser(sets)
if ds is None:
    st.info("Create a photo set (a name for the objects you will teach) or choose one.")
else:
    step = urlstate.bind(st.segmented_control, "teach.step", STEPS[0], "Step", STEPS,
                             valid=lambda v: v in STEPS,
                             fit=lambda v: v if v in STEPS else STEPS[0]) or STEPS[0]
    VIEWS[step](ds)

