"""SSD Explorer: the app shell (navigation, sidebar). Run with ``streamlit run app/main.py``."""

import streamlit as st
import timing

from ssd_core.device import default_device, device_label, tune_cpu_allocator


@st.cache_resource
def _tune_once() -> bool:
    # Once per server process: glibc keeps freed torch buffers instead of trimming them.
    return tune_cpu_allocator()


_tune_once()
st.set_page_config(page_title="SSD Explorer", page_icon=":material/center_focus_strong:",
                   layout="wide")

# One entry per page; part 2 appends Training, Detection, Evaluation here.
PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("views/anchors.py", title="Anchors", icon=":material/grid_on:"),
    st.Page("views/labeling.py", title="Labeling", icon=":material/label:"),
    st.Page("views/losses.py", title="Losses", icon=":material/show_chart:"),
    st.Page("views/model.py", title="Model", icon=":material/account_tree:"),
    st.Page("views/training.py", title="Training", icon=":material/model_training:"),
    st.Page("views/detection.py", title="Detection", icon=":material/center_focus_strong:"),
    st.Page("views/evaluation.py", title="Evaluation", icon=":material/analytics:"),
]

page = st.navigation(PAGES)

with st.sidebar:
    st.caption("Device")
    st.write(f"**{device_label(default_device())}**")
    st.caption("Active checkpoint")
    ckpt = st.session_state.get("active_checkpoint")
    st.write(f"`{ckpt}`" if ckpt else "none yet")
    with st.expander("About"):
        st.markdown(
            "An interactive companion to the *Single Shot MultiBox Detection* chapter of "
            "Dive into Deep Learning: the chapter's TinySSD in PyTorch, its anchors, labels, "
            "losses and model, reproduced and explorable. Everything runs locally, offline."
        )

with timing.timed(f"page {page.title}"):
    page.run()
